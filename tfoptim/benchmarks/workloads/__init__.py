"""Training workloads the size of real models, for timing and comparing optimizers with ``model.fit``.

Three workloads, each a Keras model, its data, its loss and its metric, with the data built
offline and deterministically from what every installation already has:

* ``gpt`` (:mod:`.gpt`): a decoder-only transformer on English text that ships with Python
  (the ``pydoc_data`` help topics and the standard library's docstrings); metric: validation
  bits per byte.
* ``resnet`` (:mod:`.resnet`): ResNet-20 on scikit-learn's digits upscaled to 32 x 32, with
  random translation, rotation and zoom; metric: validation accuracy.
* ``recsys`` (:mod:`.recsys`): a two-tower recommender with a 1,000,000 x 32 item embedding
  (sparse gradients) on Zipf-distributed items and labels from a planted low-rank preference;
  metric: validation log-loss (and AUC).

and, by name only (:func:`extra_workloads`), ``resnet_nobn``: the ResNet without BatchNorm
(SkipInit's zero-initialised residual gains instead).

Each comes in three sizes (:data:`SIZES`):

* ``"full"``: the model as described, on all of its data.
* ``"sweep"``: a reduced model of the same kind (``gpt``: 2 blocks x 128 wide, context 64;
  ``resnet``: ResNet-8, 8 to 32 channels; ``recsys``: 100,000 items), sized for the many short
  runs of a learning-rate sweep on a two-core CPU.
* ``"quick"``: the full model's shape (the same layers, parameters and variables) on a few
  small batches: a smoke run, and what ``tfoptim bench speed --e2e --quick`` times.

``workload.data(size, seed)`` is a pure function of its arguments. The *definition* of a
workload (the train/validation split, the planted preference) is fixed by
:data:`DEFINITION_SEED`, so every run is judged on the same validation set; ``seed`` draws what
a run's randomness should draw: the order of the training examples (and, for ``gpt``, where the
training windows start; for ``recsys``, which interactions are sampled; for ``resnet``, the
augmentation). ``workload.build_model(size, seed)`` seeds Keras's global generator with
``keras.utils.set_random_seed(seed)`` before building, so the initial weights follow ``seed``.

Usage::

    from tfoptim.benchmarks.workloads import get_workload
    from tfoptim.optimizers import Adam

    workload = get_workload("gpt")
    data = workload.data("sweep", seed=0)
    model = workload.compile(workload.build_model("sweep", seed=0), Adam(3e-3))
    model.fit(data.train().take(300), epochs=1, shuffle=False)
    workload.evaluate(model, data)  # {"val_bits_per_byte": ..., "val_loss": ...}

**Step budgets and targets.** The ``"full"`` and ``"sweep"`` sizes carry the step budget
(``steps``) of ``tfoptim bench convergence --suite realistic`` (:mod:`tfoptim.benchmarks.realistic`),
sized from step times measured on two CPU cores, and its ``target``: what the tuned baseline
(AdamW with warm-up and cosine decay) reached at the end of that budget in the suite's run of
2026-12-07 (its median final metric over the seeds, rounded to two digits in the direction
that keeps it reachable: ``gpt`` 4.313 and 4.682 bits per byte became 4.32 and 4.69, ``resnet``
0.821 and 0.998 accuracy 0.82 and 0.99, ``recsys`` 0.629 and 0.656 log-loss 0.63 and 0.66). A
size without one (``"quick"``, or a new size) takes as a tier's target the baseline's median
final metric in the same run, which the baseline reaches at the end of its budget by
construction.
"""

import dataclasses
from typing import Callable, Mapping, Optional

import numpy as np

#: The sizes every workload has, largest first.
SIZES = ("full", "sweep", "quick")

#: Seeds the workloads' definitions (the train/validation split, the planted preference), which
#: stay the same in every run; the ``seed`` of :meth:`Workload.data` draws the rest.
DEFINITION_SEED = 0


@dataclasses.dataclass(frozen=True)
class Size:
    """One size of a workload: the hyperparameters of its model and of its data.

    ``steps`` is the step budget of the realistic convergence suite (``None`` where the size has
    none: ``"quick"``); ``target`` is the metric value that counts as converged (``None``: the
    suite takes its baseline's final value, see the module's docstring).
    """

    model: Mapping
    data: Mapping
    target: Optional[float] = None
    steps: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Data:
    """A workload's examples at one size and seed: NumPy arrays, and ``tf.data`` pipelines over them.

    ``x_*`` is an array, or a dict of arrays for a model with named inputs. Both splits hold a
    whole number of batches, so every batch has the same shape (one XLA compilation).
    ``augment`` (``resnet``) maps a batch of inputs to a randomly transformed one, in the
    training pipeline only. ``info`` describes the data (sizes, sources, reference values).
    """

    x_train: object
    y_train: np.ndarray
    x_validation: object
    y_validation: np.ndarray
    batch_size: int
    seed: int
    augment: Optional[Callable] = None
    info: Mapping = dataclasses.field(default_factory=dict)

    @property
    def steps_per_epoch(self):
        return len(self.y_train) // self.batch_size

    def train(self):
        """One epoch of training batches; each iteration (each ``model.fit`` epoch) reshuffles
        the examples, in an order fixed by ``seed``."""
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        dataset = dataset.shuffle(len(self.y_train), seed=self.seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(self.batch_size, drop_remainder=True)
        if self.augment is not None:
            dataset = dataset.map(lambda x, y: (self.augment(x), y))
        return dataset.prefetch(2)

    def validation(self):
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((self.x_validation, self.y_validation))
        return dataset.batch(self.batch_size, drop_remainder=True).prefetch(2)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A model, its data, loss and metrics, at each of :data:`SIZES`.

    ``metric`` names the figure that judges a run, as ``model.evaluate(..., return_dict=True)``
    reports it on the validation data, and ``goal`` says whether smaller (``"min"``) or larger
    (``"max"``) is better.
    """

    name: str
    description: str
    metric: str
    goal: str
    sizes: Mapping[str, Size]
    make_model: Callable
    make_data: Callable
    make_loss: Callable
    make_metrics: Callable

    def _size(self, size):
        if size not in self.sizes:
            raise ValueError(f"`size` must be one of {SIZES}. Received: size={size!r}")
        return self.sizes[size]

    def build_model(self, size="full", seed=0):
        """A fresh, uncompiled ``keras.Model``, its weights drawn from ``seed``."""
        import keras

        spec = self._size(size)
        keras.utils.set_random_seed(seed)
        return self.make_model(**spec.model)

    def data(self, size="full", seed=0):
        """The :class:`Data` of ``size``; the same arrays for the same ``(size, seed)``."""
        return self.make_data(seed=seed, **self._size(size).data)

    def loss(self):
        return self.make_loss()

    def metrics(self):
        """Fresh metric objects for ``model.compile`` (their names are those ``metric`` uses)."""
        return self.make_metrics()

    def compile(self, model, optimizer, jit_compile="auto"):
        """``model.compile`` with the workload's loss and metrics; returns ``model``."""
        model.compile(optimizer=optimizer, loss=self.loss(), metrics=self.metrics(), jit_compile=jit_compile)
        return model

    def evaluate(self, model, data):
        """The validation figures of a compiled ``model`` on ``data``, keyed like ``metric``."""
        figures = model.evaluate(data.validation(), verbose=0, return_dict=True)
        return {f"val_{name}": float(value) for name, value in figures.items()}

    def reached(self, value, size="full"):
        """Whether ``value`` of the metric meets the size's target (``None`` while unset)."""
        target = self._size(size).target
        if target is None:
            return None
        return value <= target if self.goal == "min" else value >= target


def workloads():
    """``name -> Workload`` for every workload, in a fixed order."""
    from tfoptim.benchmarks.workloads import gpt, recsys, resnet

    return {w.name: w for w in (gpt.WORKLOAD, resnet.WORKLOAD, recsys.WORKLOAD)}


def extra_workloads():
    """``name -> Workload`` for the variants :func:`workloads` leaves out (so no suite runs them
    by default), which :func:`get_workload` and ``--workloads`` take by name: ``resnet_nobn``
    (:data:`.resnet.WORKLOAD_NO_BN`, the ResNet without BatchNorm)."""
    from tfoptim.benchmarks.workloads import resnet

    return {resnet.WORKLOAD_NO_BN.name: resnet.WORKLOAD_NO_BN}


def get_workload(name):
    known = {**workloads(), **extra_workloads()}
    if name not in known:
        raise ValueError(f"`name` must be one of {list(known)}. Received: name={name!r}")
    return known[name]
