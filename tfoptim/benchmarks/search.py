"""Quality of search: what tuning the optimizer buys, and at what cost in epochs.

Four ways to choose how a model is trained, each run as a KerasTuner search so all are scored
alike (the best trial's best-epoch validation figure of the problem's metric, and the model of
that trial and epoch evaluated on a held-out test split that no search sees):

- ``default``: ``Adam(1e-3)``, one run;
- ``grid``: KerasTuner's ``HyperResNet``-style choice, ``adam``/``rmsprop``/``sgd`` x learning
  rate in {0.1, 0.01, 0.001}, all 9 (``GridSearch``);
- ``sample_optimizer``: :func:`tfoptim.tuning.sample_optimizer`'s defaults (its optimizers,
  their learning rates, the weight decay AdamW needs, constant or cosine schedule),
  ``RandomSearch`` with as many trials as the grid;
- ``autotune``: :func:`tfoptim.tuning.autotune` with the grid's epochs as its budget, its
  finder's sweeps included.

A trial of ``default``, ``grid`` and ``sample_optimizer`` trains ``epochs`` epochs, ``autotune``
runs up to ``epochs``; the compute each method used is reported as epochs trained, the finder's
sweeps counted in epochs of the same length. Each seed repeats the whole comparison (split,
initial weights, tuner seed). Problems are looked up by name in :data:`PROBLEMS`: adding one
there adds it to the benchmark and to ``tfoptim autotune``.

- ``digits_mlp``, ``digits_cnn``: scikit-learn's digits split 60/20/20 (train/validation/test),
  stratified; batch size 32, an epoch is one pass over the training split; metric: accuracy.
- ``gpt``, ``resnet``: the realistic workloads (:mod:`tfoptim.benchmarks.workloads`), their
  ``"sweep"`` model, batch size and training pipeline (the ``"quick"`` size is the full model on
  a few batches, a smoke run with nothing to search on). An epoch is a fixed number of steps of
  the workload's shuffled training stream (:data:`GPT_STEPS_PER_EPOCH` for ``gpt``, one pass
  for ``resnet``), so ``epochs`` means the same compute for every method. The test split is the
  workload's own validation split (its documents for ``gpt``, its held-out digits for
  ``resnet``); the search's validation split is carved from the workload's training split
  (``gpt``: a tenth of the training documents, by a hash of their names salted with the seed;
  ``resnet``: 256 training images, stratified). Metrics: validation bits per byte (``gpt``,
  minimised) and validation accuracy (``resnet``).
"""

import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

METHODS = ("default", "grid", "sample_optimizer", "autotune")
#: Run only when named (``--methods``): ``autotune`` without its range tests, searching each
#: family's fixed learning-rate range, to measure what centring the ranges buys; and
#: ``sample_optimizer`` tuning every argument it has a prior for (moment coefficients, epsilon,
#: Nesterov; ``tune_arguments=True``), to measure what tuning only the rate, the schedule and
#: the weight decay buys; and ``autotune`` training every configuration for the whole run
#: (``min_epochs=max_epochs``: no successive halving), to measure what judging on short
#: rungs buys; and ``autotune`` drawing its first configuration at random like the others
#: (``suggestion_first=False``), to measure what starting from the range test's suggestion buys;
#: and ``Adam(1e-3)`` trained as many times as the grid has points, to measure how far runs of
#: one configuration fall apart (its trials' scores), and what the best of several runs of it
#: reaches with no search at all; and ``autotune`` choosing among SGD with momentum too
#: (``sample_optimizer``'s default families), to measure what leaving it out costs or buys; and
#: ``autotune`` without its refinement (``refine=False``: random draws in its place), to
#: measure what the refinement buys; and ``autotune`` with every suggestion at a constant rate
#: (``decay_peak=None``: no decaying suggestion), to measure what the decaying one buys; and
#: ``autotune`` with the refinement taking a third of what the suggestions leave (``refine=1/3``,
#: its share before it was half), to measure the share.
ABLATIONS = ("autotune_fixed_ranges", "sample_optimizer_all_arguments", "autotune_full_length",
             "autotune_random_first", "default_repeated", "autotune_with_momentum", "autotune_no_refine",
             "autotune_constant_suggestions", "autotune_refine_third")
GRID_SIZE = 9
#: Batch size of the problems given as arrays (the digits); the workload problems keep theirs.
BATCH_SIZE = 32
#: Training steps that make an epoch of ``gpt``: with ``--epochs 3`` a full-length trial trains
#: 75 steps, near the realistic suite's 100-step budget for the ``"sweep"`` size.
GPT_STEPS_PER_EPOCH = 25
#: Training images ``resnet``'s search validates on (four of the workload's batches of 64).
RESNET_VALIDATION_EXAMPLES = 256


def _loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@dataclasses.dataclass(frozen=True)
class SearchProblem:
    """A problem of the search benchmark.

    ``split(seed)`` gives ``(train, validation, test)``, each an ``(x, y)`` pair of arrays
    (trained at :data:`BATCH_SIZE`, an epoch one pass) or a finite ``tf.data`` dataset of
    batches (an epoch one pass of it); ``model()`` a fresh, uncompiled model; ``metrics()``
    fresh metric objects (or names) for ``compile``. ``metric`` names the figure that judges a
    run as ``fit`` logs it (the search's objective is ``"val_" + metric``) and ``goal`` whether
    smaller (``"min"``) or larger (``"max"``) is better.
    """

    name: str
    description: str
    split: Callable
    model: Callable
    metric: str = "accuracy"
    goal: str = "max"
    metrics: Callable = lambda: ["accuracy"]
    loss: Callable = _loss

    def __post_init__(self):
        if self.goal not in ("min", "max"):
            raise ValueError(f"`goal` must be 'min' or 'max'. Received: goal={self.goal!r}")

    @property
    def objective(self):
        """The search's ``keras_tuner.Objective``: the validation metric and its direction."""
        import keras_tuner

        return keras_tuner.Objective(f"val_{self.metric}", direction=self.goal)

    def compiled(self, optimizer=None):
        """A fresh model compiled with the problem's loss and metrics (and ``optimizer``)."""
        model = self.model()
        model.compile(optimizer=optimizer, loss=self.loss(), metrics=self.metrics())
        return model


def split_digits(seed=0, image=False):
    """scikit-learn's digits split 60/20/20, stratified; ``image`` shapes them 8 x 8 x 1."""
    from sklearn.model_selection import train_test_split

    from tfoptim.callbacks.cli import digits_data

    x, y = digits_data()
    if image:
        x = x.reshape(-1, 8, 8, 1)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def mlp(activation="relu"):
    import keras

    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation=activation), keras.layers.Dense(10)]
    )


def cnn():
    import keras

    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])


def _pipelines(x_train, y_train, validation, test, batch_size, seed, steps_per_epoch, augment=None):
    """``(train, validation, test)`` datasets: ``steps_per_epoch`` batches of the workload's
    training pipeline (:meth:`Data.train`: reshuffled at every epoch, augmented) and whole
    batches of the ``(x, y)`` pairs ``validation`` and ``test``."""
    from tfoptim.benchmarks.workloads import Data

    data = Data(x_train, y_train, *validation, batch_size, seed, augment=augment)
    steps = min(steps_per_epoch, data.steps_per_epoch)
    return (data.train().take(steps), data.validation(),
            dataclasses.replace(data, x_validation=test[0], y_validation=test[1]).validation())


def held_out_document(name, seed, fraction):
    """Whether the training document ``name`` is in the search's validation split of ``seed``
    (a hash of the name salted with the seed below ``fraction``, as the workload splits)."""
    import hashlib

    digest = hashlib.blake2b(f"search/{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def split_gpt(seed=0, context=None, batch_size=None, steps_per_epoch=GPT_STEPS_PER_EPOCH,
              evaluation_windows=None):
    """``gpt``'s documents split by document: test, the workload's validation documents;
    validation, a tenth of its training documents (by :func:`held_out_document`); training, the
    rest. Windows are cut as the workload cuts them (:func:`gpt.windows`: training from a
    seeded offset, in a seeded order; validation and test ``evaluation_windows`` evenly spaced
    from offset 0). ``context``, ``batch_size`` and ``evaluation_windows`` default to the
    ``"sweep"`` size's. Returns datasets (see :func:`_pipelines`)."""
    import numpy as np

    from tfoptim.benchmarks.workloads import gpt

    sweep = gpt.WORKLOAD.sizes["sweep"].data
    context = context or sweep["context"]
    batch_size = batch_size or sweep["batch_size"]
    evaluation_windows = evaluation_windows or sweep["validation_windows"]
    parts = {"train": [], "validation": [], "test": []}
    for name, text in gpt.documents():
        if gpt.in_validation(name):
            part = "test"
        elif held_out_document(name, seed, gpt.VALIDATION_FRACTION):
            part = "validation"
        else:
            part = "train"
        parts[part].append(text.encode("utf-8") + gpt.END_OF_DOCUMENT)
    stream = {k: np.frombuffer(b"".join(v), np.uint8) for k, v in parts.items()}
    rng = np.random.default_rng(seed)
    train = gpt.windows(stream["train"], context, offset=int(rng.integers(context))).astype(np.int32)

    def evaluation(part):
        windows = gpt.windows(stream[part], context)
        windows = windows[np.linspace(0, len(windows) - 1, evaluation_windows).astype(int)]
        return windows[:, :-1].astype(np.int32), windows[:, 1:].astype(np.int32)

    return _pipelines(train[:, :-1], train[:, 1:], evaluation("validation"), evaluation("test"),
                      batch_size, seed, steps_per_epoch)


def split_resnet(seed=0, validation_examples=RESNET_VALIDATION_EXAMPLES):
    """``resnet``'s digits at 32 x 32, at the ``"sweep"`` size's batch size: test, the
    workload's validation split; validation, ``validation_examples`` of its training images
    (stratified, drawn from the seed); training, the rest, one pass an epoch, augmented as the
    workload augments them."""
    from sklearn.model_selection import train_test_split

    from tfoptim.benchmarks.workloads import resnet

    data = resnet.WORKLOAD.data("sweep", seed)
    batch_size = data.batch_size
    x_train, x_val, y_train, y_val = train_test_split(
        data.x_train, data.y_train, test_size=validation_examples, random_state=seed,
        stratify=data.y_train,
    )
    return _pipelines(x_train, y_train, (x_val, y_val), (data.x_validation, data.y_validation),
                      batch_size, seed, len(y_train) // batch_size, augment=data.augment)


def workload_problem(name, description, metric, goal, split, model=None):
    """The :class:`SearchProblem` of the workload ``name`` on ``split``: its ``"sweep"`` model (or
    one of the ``model`` hyperparameters given), its loss and metrics. ``metric`` and ``goal``
    are the workload's (checked by the tests), given here so that naming the problems imports
    no Keras."""

    def workload():
        from tfoptim.benchmarks.workloads import get_workload

        return get_workload(name)

    def build():
        known = workload()
        return known.make_model(**(known.sizes["sweep"].model if model is None else model))

    return SearchProblem(name, description, split, build, metric=metric, goal=goal,
                         metrics=lambda: workload().metrics(), loss=lambda: workload().loss())


#: The problems by name.
PROBLEMS = {
    "digits_mlp": SearchProblem("digits_mlp", "64-64-10 MLP (ReLU) on scikit-learn's 8x8 digits, "
                                "batch 32", split_digits, mlp),
    "digits_cnn": SearchProblem("digits_cnn", "two 3x3 convolutions (16, 32), max-pooling, "
                                "a 64-unit dense layer, on the 8x8 digits, batch 32",
                                lambda seed=0: split_digits(seed, image=True), cnn),
    "gpt": workload_problem(
        "gpt", "the gpt workload's sweep model (2 pre-LayerNorm blocks x 128 wide, 4 heads, "
        "context 64) on Python's help topics and docstrings, split by document, batch 16",
        "bits_per_byte", "min", split_gpt),
    "resnet": workload_problem(
        "resnet", "the resnet workload's sweep model (ResNet-8, 8 to 32 channels) on the digits "
        "upscaled to 32x32 and augmented, batch 64",
        "accuracy", "max", split_resnet),
}


def fit_arguments(part):
    """``(x, y)`` for ``fit``/``evaluate`` from an ``(x, y)`` pair or a dataset of batches."""
    return tuple(part) if isinstance(part, (tuple, list)) else (part, None)


def _steps_per_epoch(train):
    x, _ = fit_arguments(train)
    if hasattr(x, "cardinality"):
        return int(x.cardinality())
    return math.ceil(len(x) / BATCH_SIZE)


def _fixed_batch(build, batch_size):
    """A ``HyperModel`` around ``build(hp)`` that trains arrays at ``batch_size`` (``None``:
    the data are batched already)."""
    import keras_tuner

    class FixedBatch(keras_tuner.HyperModel):
        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, *args, **kwargs):
            if batch_size is not None:
                kwargs["batch_size"] = batch_size
            return model.fit(*args, **kwargs)

    return FixedBatch()


def _build(method, problem, total_steps):
    """``build(hp)`` of ``default``, ``grid``, ``sample_optimizer`` and their ablations."""
    import keras

    import tfoptim.tuning

    def build(hp):
        if method.startswith("default"):
            if method == "default_repeated":
                hp.Choice("repeat", list(range(GRID_SIZE)))  # the same configuration each time
            optimizer = keras.optimizers.Adam(1e-3)
        elif method == "grid":
            # As keras_tuner.applications.HyperResNet chooses its optimizer.
            optimizer = keras.optimizers.get(
                hp.Choice("optimizer", ["adam", "rmsprop", "sgd"], default="adam"))
            optimizer.learning_rate = hp.Choice("learning_rate", [0.1, 0.01, 0.001], default=0.01)
        else:
            optimizer = tfoptim.tuning.sample_optimizer(
                hp, total_steps=total_steps,
                tune_arguments=True if method == "sample_optimizer_all_arguments" else "needed")
        return problem.compiled(optimizer)

    return build


def _tuner(method, problem, directory, seed, epochs, steps_per_epoch, batch_size):
    import keras_tuner

    # KerasTuner's random oracle draws trial k from seed + k: seeds 1 and 2 would share all
    # but one trial. Spacing them keeps repeats independent.
    common = dict(objective=problem.objective, directory=directory, project_name=method,
                  seed=1000 * seed, overwrite=True)
    hypermodel = _fixed_batch(_build(method, problem, epochs * steps_per_epoch), batch_size)
    if method.startswith("sample_optimizer"):
        return keras_tuner.RandomSearch(hypermodel, max_trials=GRID_SIZE, **common)
    return keras_tuner.GridSearch(hypermodel, max_trials=1 if method == "default" else GRID_SIZE,
                                  **common)


def _counter(totals):
    """Counts epochs and optimizer steps into ``totals``, across all trials of a search
    (KerasTuner deep-copies callbacks per trial; the dict they close over is shared)."""
    import keras

    class Counter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            totals["steps"] += 1

        def on_epoch_end(self, epoch, logs=None):
            totals["epochs"] += 1

    return Counter()


def best_so_far(scores, goal):
    """The best score among the first 1, 2, ... trials (``nan`` scores, of failed trials,
    skipped), best meaning the smallest for ``goal="min"`` and the largest for ``"max"``."""
    import numpy as np

    running = (np.fmin if goal == "min" else np.fmax).accumulate(np.asarray(scores, dtype=float))
    return [float(s) for s in running]


def run_method(method, seed, problem="digits_mlp", epochs=10, directory=None):
    """One search of ``method`` on ``problem`` (a name in :data:`PROBLEMS` or a
    :class:`SearchProblem`); returns a dict of results."""
    import keras

    import tfoptim.tuning
    from tfoptim.tuning import space

    problem = PROBLEMS[problem] if isinstance(problem, str) else problem
    # get_best_models rebuilds each model with a fresh optimizer: the saved optimizer state
    # is not needed to evaluate it, and Keras warns about every one.
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    # fit's default shuffle=True cannot apply to a dataset, which the workloads' reshuffles itself.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    keras.utils.set_random_seed(seed)
    train, validation, test = problem.split(seed)
    x_train, y_train = fit_arguments(train)
    batch_size = None if y_train is None else BATCH_SIZE
    steps_per_epoch = _steps_per_epoch(train)
    totals = {"epochs": 0, "steps": 0}
    finder_epochs, suggestions = 0.0, {}
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        start, cpu_start = time.perf_counter(), time.process_time()
        if method.startswith("autotune"):
            result = tfoptim.tuning.autotune(
                problem.compiled, x_train, y_train, validation_data=validation,
                budget_epochs=GRID_SIZE * epochs, max_epochs=epochs, objective=problem.objective,
                # autotune's batch size applies to arrays only; a dataset keeps its batches.
                batch_size=batch_size or BATCH_SIZE, directory=folder, seed=1000 * seed,
                callbacks=[_counter(totals)], verbose=0, range_test=method != "autotune_fixed_ranges",
                min_epochs=epochs if method == "autotune_full_length" else 1,
                suggestion_first=method != "autotune_random_first",
                refine={"autotune_no_refine": False, "autotune_refine_third": 1 / 3}.get(method, True),
                decay_peak=None if method == "autotune_constant_suggestions" else tfoptim.tuning.DECAY_PEAK,
                optimizers=(space.DEFAULT_OPTIMIZERS if method == "autotune_with_momentum"
                            else tfoptim.tuning.AUTOTUNE_OPTIMIZERS),
            )
            tuner, finder_epochs = result.tuner, result.finder_epochs
            suggestions = result.ranges.suggestions
        else:
            tuner = _tuner(method, problem, folder, seed, epochs, steps_per_epoch, batch_size)
            tuner.search(x_train, y_train, validation_data=validation, epochs=epochs,
                         callbacks=[_counter(totals)], verbose=0)
        seconds = time.perf_counter() - start
        best_trial = tuner.oracle.get_best_trials(1)[0]
        model = tuner.get_best_models(1)[0]
        x_test, y_test = fit_arguments(test)
        test_value = float(model.evaluate(x_test, y_test, verbose=0, return_dict=True)[problem.metric])
        cpu_seconds = time.process_time() - cpu_start
        order = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
        config = dict(best_trial.hyperparameters.values)
    scores = [t.score if t.score is not None else math.nan for t in order]
    spent = [t.hyperparameters.values.get("tuner/epochs", epochs) for t in order]
    return {
        "problem": problem.name,
        "method": method,
        "seed": seed,
        "metric": problem.metric,
        "goal": problem.goal,
        "trials": len(order),
        # Epochs trained, counted by a callback; autotune's finder sweeps in epochs on top.
        "epochs_trained": totals["epochs"] + finder_epochs,
        "finder_epochs": finder_epochs,
        # autotune's range tests: the rate each optimizer family's sweep suggested.
        "finder_suggestions": suggestions,
        "steps_per_epoch": steps_per_epoch,
        "steps_trained": totals["steps"],
        "seconds": seconds,
        # Of this process, every thread: what the search cost on a shared machine.
        "cpu_seconds": cpu_seconds,
        "best_val": float(best_trial.score),
        "test_of_best": test_value,
        "best_so_far": best_so_far(scores, problem.goal),
        "epochs_so_far": [finder_epochs + sum(spent[: i + 1]) for i in range(len(spent))],
        "best_config": config,
        # Every trial in order: what it tried, for how many epochs, and its score (None for a
        # trial that failed), so a search can be read trial by trial.
        "trial_records": [
            {"epochs": spent[i], "score": t.score,
             "values": {k: v for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/")}}
            for i, t in enumerate(order)
        ],
    }


def run_search_benchmark(problems=("digits_mlp", "digits_cnn"), seeds=(0, 1, 2), epochs=10,
                         methods=METHODS, progress=True):
    from tqdm import tqdm

    for name in problems:
        if name not in PROBLEMS:
            raise ValueError(f"Unknown problem {name!r}. Choose from: {', '.join(PROBLEMS)}.")
    for method in methods:
        if method not in METHODS + ABLATIONS:
            raise ValueError(f"Unknown method {method!r}. Choose from: {', '.join(METHODS + ABLATIONS)}.")
    jobs = [(p, s, m) for p in problems for s in seeds for m in methods]
    results = []
    bar = tqdm(jobs, desc="bench search", disable=not progress)
    for problem, seed, method in bar:
        bar.set_postfix_str(f"{problem} {method} seed {seed}")
        results.append(run_method(method, seed, problem=problem, epochs=epochs))
    return results


def summarize(results):
    """``{problem: {method: means and ranges over the seeds}}``, each with the problem's
    ``metric`` and ``goal``."""
    import numpy as np

    summary = {}
    for problem in dict.fromkeys(r["problem"] for r in results):
        summary[problem] = {}
        for method in METHODS + ABLATIONS:
            mine = [r for r in results if r["problem"] == problem and r["method"] == method]
            if not mine:
                continue
            val = np.array([r["best_val"] for r in mine])
            test = np.array([r["test_of_best"] for r in mine])
            summary[problem][method] = {
                "metric": mine[0]["metric"],
                "goal": mine[0]["goal"],
                "runs": len(mine),
                "best_val_mean": float(val.mean()),
                "best_val_min": float(val.min()),
                "best_val_max": float(val.max()),
                "test_mean": float(test.mean()),
                "test_min": float(test.min()),
                "test_max": float(test.max()),
                "epochs_trained": float(np.mean([r["epochs_trained"] for r in mine])),
                "trials": float(np.mean([r["trials"] for r in mine])),
                "seconds": float(np.mean([r["seconds"] for r in mine])),
                "cpu_seconds": float(np.mean([r["cpu_seconds"] for r in mine])),
            }
    return summary


LABELS = {
    "default": "Adam(1e-3)",
    "grid": "grid {adam, rmsprop, sgd} x {0.1, 0.01, 0.001}",
    "sample_optimizer": "sample_optimizer defaults, random search",
    "autotune": "autotune (grid's epochs as budget)",
    "autotune_fixed_ranges": "autotune without range tests (fixed family ranges)",
    "sample_optimizer_all_arguments": "sample_optimizer tuning every argument, random search",
    "autotune_full_length": "autotune without successive halving (every trial full length)",
    "autotune_random_first": "autotune without the suggestions first (random draws instead)",
    "default_repeated": f"Adam(1e-3) run {GRID_SIZE} times, the best run",
    "autotune_with_momentum": "autotune among SGD with momentum too",
    "autotune_no_refine": "autotune without the refinement (random draws instead)",
    "autotune_constant_suggestions": "autotune without the decaying suggestion (constant ones only)",
    "autotune_refine_third": "autotune with the refinement a third of the rest (not half)",
}


def metric_label(metric, goal):
    """``"accuracy (higher is better)"``, ``"bits per byte (lower is better)"``."""
    return f"{metric.replace('_', ' ')} ({'lower' if goal == 'min' else 'higher'} is better)"


#: Relative difference under which two means count as level. Keras reports metrics in float32,
#: so the means of two sets of accuracies with the same count of correct answers differ in the
#: eighth digit (357/359 + 353/359 against 355/359 + 355/359, rounded to float32 first).
LEVEL = 1e-6


def at_least_as_good(value, reference, goal):
    """Whether ``value`` is as good as ``reference`` or better, for the metric's ``goal``; within
    :data:`LEVEL` (relative) of it counts as level, and so as good."""
    if math.isclose(value, reference, rel_tol=LEVEL):
        return True
    return value < reference if goal == "min" else value > reference


def verdict(summary):
    """Per problem: whether autotune reached the grid's mean best validation and test figure
    (at or below it for a metric to minimise) at no more than the grid's epochs."""
    out = {}
    for problem, methods in summary.items():
        if "autotune" in methods and "grid" in methods:
            a, g = methods["autotune"], methods["grid"]
            out[problem] = {
                "validation": at_least_as_good(a["best_val_mean"], g["best_val_mean"], a["goal"]),
                "test": at_least_as_good(a["test_mean"], g["test_mean"], a["goal"]),
                "epochs_within_grid": a["epochs_trained"] <= g["epochs_trained"] + 1e-9,
            }
    return out


def format_table(summary, markdown=False):
    header = ("problem", "metric", "method", "runs", "best val, mean (min-max)",
              "test, mean (min-max)", "epochs", "trials")
    rows = []
    for problem, methods in summary.items():
        for method, s in methods.items():
            rows.append((
                problem, metric_label(s["metric"], s["goal"]), LABELS[method], str(s["runs"]),
                f"{s['best_val_mean']:.4f} ({s['best_val_min']:.4f}-{s['best_val_max']:.4f})",
                f"{s['test_mean']:.4f} ({s['test_min']:.4f}-{s['test_max']:.4f})",
                f"{s['epochs_trained']:.1f}", f"{s['trials']:.0f}",
            ))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def best_so_far_band(runs):
    """``(epochs, mean, low, high)``: the best figure so far of each run, read at every epoch
    count any of them reached (a run counts from its first finished trial), and its mean,
    minimum and maximum over the runs that have one there."""
    import numpy as np

    epochs = np.unique(np.concatenate([r["epochs_so_far"] for r in runs]))
    values = np.full((len(runs), len(epochs)), np.nan)
    for k, r in enumerate(runs):
        index = np.searchsorted(r["epochs_so_far"], epochs, side="right") - 1
        values[k] = np.where(index >= 0, np.asarray(r["best_so_far"])[np.maximum(index, 0)], np.nan)
    started = ~np.isnan(values).all(axis=0)
    values = values[:, started]
    return (epochs[started], np.nanmean(values, axis=0), np.nanmin(values, axis=0),
            np.nanmax(values, axis=0))


#: The ranking's names for the methods, short enough for an axis.
SHORT_LABELS = {
    "default": "Adam(1e-3)",
    "grid": "grid, 9 points",
    "sample_optimizer": "sample_optimizer, random",
    "autotune": "autotune",
    "autotune_fixed_ranges": "autotune, no range tests",
    "sample_optimizer_all_arguments": "sample_optimizer, every argument",
    "autotune_full_length": "autotune, no halving",
    "autotune_random_first": "autotune, no suggestions first",
    "default_repeated": f"Adam(1e-3), best of {GRID_SIZE} runs",
    "autotune_with_momentum": "autotune, SGD with momentum too",
    "autotune_no_refine": "autotune, no refinement",
    "autotune_constant_suggestions": "autotune, constant suggestions",
    "autotune_refine_third": "autotune, refinement a third",
}


def ranking(results, problem):
    """``[(method, runs, val, test)]`` for every method run on ``problem``, the best first (by
    the mean of ``val``, the smallest where the problem's goal is ``"min"``).

    ``val`` and ``test`` are the method's best validation figure and its test figure, seed by
    seed, less the grid's on the same seed where the grid ran on ``problem`` (and ``runs`` its
    runs on those seeds only), else the figures themselves. Seeds differ more than methods do
    (a problem's split changes with the seed), so a method run on three seeds would otherwise
    rank by how easy those seeds were against one run on ten."""
    import numpy as np

    runs = [r for r in results if r["problem"] == problem]
    grid = {r["seed"]: r for r in runs if r["method"] == "grid"}
    ranked = []
    for method in METHODS + ABLATIONS:
        mine = [r for r in runs if r["method"] == method and (not grid or r["seed"] in grid)]
        if mine:
            val = [r["best_val"] - (grid[r["seed"]]["best_val"] if grid else 0.0) for r in mine]
            test = [r["test_of_best"] - (grid[r["seed"]]["test_of_best"] if grid else 0.0) for r in mine]
            ranked.append((method, mine, val, test))
    sign = 1 if runs[0]["goal"] == "min" else -1
    return sorted(ranked, key=lambda item: sign * np.mean(item[2]))


def plot(results, path, caption=None):
    """Per problem, two panels: the best validation figure so far against the epochs spent,
    for the four methods (mean over the seeds, their range shaded); and every method run,
    ablations included, ranked by its mean best validation figure less the grid's on the same
    seeds (:func:`ranking`; its range over the seeds a line) with the mean test figure of its
    best models, less the grid's, beside it. Axes say the metric and whether lower or higher
    is better; ``caption`` below (the command, the date and the versions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    problems = list(dict.fromkeys(r["problem"] for r in results))
    rows = max(len(ranking(results, p)) for p in problems)
    height = max(3.6, 1.6 + 0.3 * rows)
    fig, axes = plt.subplots(len(problems), 2, figsize=(12, height * len(problems)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.15, 1]})
    # Curves for every method where there are no more than four, else for the four methods
    # (more curves cannot be read apart). A method's colour is its place among the four (an
    # ablation's, after them), the same in every panel; the methods without a curve are grey
    # in the ranking.
    shown = [m for m in METHODS + ABLATIONS if any(r["method"] == m for r in results)]
    curves = shown if len(shown) <= len(METHODS) else [m for m in shown if m in METHODS] or shown[:len(METHODS)]
    colour = {m: f"C{i}" for i, m in enumerate(METHODS)}
    colour.update({m: f"C{len(METHODS) + i}" for i, m in enumerate(m for m in curves if m not in METHODS)})
    for (left, right), problem in zip(axes, problems):
        first = next(r for r in results if r["problem"] == problem)
        label = metric_label(first["metric"], first["goal"])
        for method in curves:
            mine = [r for r in results if r["problem"] == problem and r["method"] == method]
            if not mine:
                continue
            epochs, mean, low, high = best_so_far_band(mine)
            front = {"zorder": 3, "linewidth": 2.2} if method == "autotune" else {}
            left.step(epochs, mean, where="post", color=colour[method], marker="o", markersize=3,
                      label=f"{LABELS[method]} ({len(mine)} seeds)", **front)
            left.fill_between(epochs, low, high, step="post", color=colour[method], alpha=0.15)
        left.set_xlabel("epochs trained (cumulative)")
        left.set_ylabel(f"best validation {label}\nso far: mean over seeds, range shaded", fontsize="small")
        left.set_title(problem)
        left.grid(alpha=0.3)

        ranked = ranking(results, problem)
        paired = any(method == "grid" for method, *_ in ranked)
        if paired:
            right.axvline(0.0, color="0.5", linewidth=0.8)
        for y, (method, mine, val, test) in enumerate(ranked):
            c = colour.get(method, "0.4")
            right.plot([min(val), max(val)], [y, y], color=c, linewidth=2, alpha=0.45)
            right.plot(np.mean(val), y, "o", color=c)
            right.plot(np.mean(test), y, "D", color=c, markerfacecolor="none")
        names = [f"{SHORT_LABELS[m]} ({len(mine)} seeds, {np.mean([r['epochs_trained'] for r in mine]):.3g} ep)"
                 for m, mine, *_ in ranked]
        right.set_yticks(range(len(ranked)), names, fontsize="small")
        for tick, (method, *_) in zip(right.get_yticklabels(), ranked):
            tick.set_color(colour.get(method, "0.2"))
        right.set_ylim(len(ranked) - 0.5, -0.5)  # the best on top
        less = ", less the grid's on the same seed" if paired else ""
        right.set_xlabel(f"{label}{less}\n\u25cf best validation: mean, range over seeds;  "
                         "\u25c7 test: mean", fontsize="small")
        right.set_title(f"{problem}: every method, the best first")
        right.grid(alpha=0.3, axis="x")
    # One legend for the curves, above the panels, where it covers no data.
    labelled = {}
    for axis in axes[:, 0]:
        for handle, text in zip(*axis.get_legend_handles_labels()):
            labelled.setdefault(text, handle)
    fig.legend(list(labelled.values()), list(labelled), loc="upper center", ncol=2, fontsize="small",
               frameon=False)
    top = 1 - (0.1 + 0.22 * math.ceil(len(labelled) / 2)) / fig.get_figheight()
    bottom = 0.0
    if caption:
        import textwrap

        # Wrapped here so the space kept below the axes fits the caption's lines (7-point
        # text, about 195 characters across the 12-inch figure, 0.13 inch a line).
        lines = textwrap.wrap(caption, width=195)
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, va="bottom", ha="left")
        bottom = (0.05 + 0.13 * len(lines)) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results, machine, output, command=None):
    """Writes ``search.json``, ``search.md`` and ``search.png`` to ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    command = command or "tfoptim " + " ".join(sys.argv[1:])
    date = datetime.date.today().isoformat()
    verdicts = verdict(summary)
    with open(output / "search.json", "w") as f:
        json.dump({"command": command, "date": date, "machine": machine, "summary": summary,
                   "autotune_vs_grid": verdicts, "runs": results}, f, indent=2,
                  default=lambda v: v.item() if hasattr(v, "item") else str(v))
    versions = ", ".join(f"{k} {v}" for k, v in machine.items())
    lines = [
        "# Search benchmark",
        "",
        f"`{command}`, {date}; {versions}.",
        "",
        "Problems (an epoch is the steps given, the same for every method):",
        "",
        *(f"- {name}: {PROBLEMS[name].description if name in PROBLEMS else name}; "
          f"{metric_label(r['metric'], r['goal'])}; an epoch is {r['steps_per_epoch']} steps."
          for name, r in {r["problem"]: r for r in results}.items()),
        "",
        format_table(summary, markdown=True),
    ]
    if verdicts:
        lines += [
            "",
            "Autotune against the grid (means over the seeds; as good or better in the problem's "
            "metric, level within a millionth counting as good, at no more than the grid's "
            "epochs):",
            "",
        ]
    for problem, v in verdicts.items():
        lines.append(
            f"- {problem}: validation {'reached' if v['validation'] else 'not reached'}, test "
            f"{'reached' if v['test'] else 'not reached'}, epochs "
            f"{'within' if v['epochs_within_grid'] else 'over'} the grid's."
        )
    (output / "search.md").write_text("\n".join(lines) + "\n")
    plot(results, output / "search.png", caption=f"{command}; {date}; {versions}")
    return summary


def machine_info():
    import platform

    import keras
    import keras_tuner
    import tensorflow as tf

    import tfoptim

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tfoptim": tfoptim.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": keras_tuner.__version__,
    }
