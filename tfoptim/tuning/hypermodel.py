"""``OptimizerHyperModel``: a model-building function plus the optimizer, batch size, epochs
and activation as hyperparameters."""

import inspect
import math

import keras
import keras_tuner

from tfoptim.callbacks.evaluation_weights import EvaluationWeights
from tfoptim.tuning import finder, sampler, space

#: Steps per epoch assumed when ``build`` runs before any ``fit`` has seen the data; ``fit``
#: rebuilds the optimizer with the exact count.
_PROVISIONAL_STEPS_PER_EPOCH = 100


def _choices(argument, values, kind):
    if values is None:
        return None
    if isinstance(values, (str, int)) and not isinstance(values, bool):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"`{argument}` must not be empty; pass None not to tune it.")
    for value in values:
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"`{argument}` must hold ints >= 1. Received: {argument}={values!r}")
        if kind is str and not isinstance(value, str):
            raise ValueError(f"`{argument}` must hold names. Received: {argument}={values!r}")
    return values


class OptimizerHyperModel(keras_tuner.HyperModel):
    """A ``keras_tuner.HyperModel`` that tunes how a model is trained.

    ``build_model(hp)`` (or ``build_model(hp, activation)``) returns an uncompiled model; it may
    sample hyperparameters of its own. ``build`` compiles it with an optimizer from
    :func:`sample_optimizer`; ``fit`` trains with the sampled batch size (and epochs, when
    tuned). Under ``Hyperband``, the tuner owns ``epochs`` and ``initial_epoch`` and they are
    left alone.

    ```python
    hypermodel = tfoptim.tuning.OptimizerHyperModel(
        build_model, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=20)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=10)
    optimizer = tfoptim.tuning.best_optimizer(tuner)
    ```

    Args:
        build_model: ``build_model(hp)`` or ``build_model(hp, activation)``, returning a Keras
            model. A compiled model keeps its loss and metrics unless given here.
        optimizers, learning_rate, schedules, warmup, tune_arguments, priors, wrappers: as
            in :func:`sample_optimizer`; the run's length is always known here, so
            ``schedules="auto"`` chooses between a constant rate and cosine decay. A trial
            whose optimizer evaluates with other weights than it trains (SAM, Lookahead,
            schedule-free, an EMA) is validated and checkpointed with those
            (:class:`tfoptim.callbacks.EvaluationWeights` is added to its callbacks).
        batch_sizes: batch sizes to choose from (hyperparameter ``batch_size``); ``None``
            leaves ``batch_size`` to ``search``'s arguments.
        epochs: ``None`` (``search``'s ``epochs``), an int (fixed) or a list to choose from
            (hyperparameter ``epochs``; ignored under Hyperband, which schedules epochs).
        activation: activation names to choose from (hyperparameter ``activation``), passed to
            ``build_model(hp, activation)``. ``None``: ``("relu", "gelu", "silu", "tanh")``
            when ``build_model`` takes it, nothing otherwise.
        loss, metrics: for ``model.compile``.
        name, tunable: as in ``keras_tuner.HyperModel``.
    """

    DEFAULT_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")

    def __init__(
        self,
        build_model,
        optimizers=space.DEFAULT_OPTIMIZERS,
        batch_sizes=(32, 64, 128, 256),
        epochs=None,
        activation=None,
        loss=None,
        metrics=None,
        learning_rate=(1e-5, 1e-1),
        schedules="auto",
        warmup=None,
        tune_arguments="needed",
        priors=None,
        wrappers=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        if not callable(build_model):
            raise ValueError(f"`build_model` must be callable. Received: {build_model!r}")
        parameters = [
            p for p in inspect.signature(build_model).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._takes_activation = len(parameters) >= 2
        if activation is not None and not self._takes_activation:
            raise ValueError(
                "`activation` is tuned, but `build_model` takes only `hp`: define it as "
                "`build_model(hp, activation)`."
            )
        if activation is None and self._takes_activation:
            activation = self.DEFAULT_ACTIVATIONS
        self.build_model = build_model
        self.activation = _choices("activation", activation, str)
        self.batch_sizes = _choices("batch_sizes", batch_sizes, int)
        if isinstance(epochs, int) and not isinstance(epochs, bool):
            self.epochs = _choices("epochs", epochs, int)[0]
        else:
            self.epochs = _choices("epochs", epochs, int)
        self.loss = loss
        self.metrics = metrics
        self.optimizer_args = dict(
            optimizers=optimizers,
            learning_rate=learning_rate,
            schedules=schedules,
            warmup=warmup,
            tune_arguments=tune_arguments,
            priors=priors,
            wrappers=wrappers,
        )
        # Validate the optimizer space now rather than in the first trial.
        sampler.sample_optimizer(keras_tuner.HyperParameters(), total_steps=1, **self.optimizer_args)
        # What fit learned about the data, for the optimizer build() compiles in later calls
        # (get_best_models) and for best_optimizer.
        self.train_examples = None
        self.fit_epochs = None

    # -- build -------------------------------------------------------------------------------

    def build(self, hp):
        if self.activation is not None:
            activation = hp.Choice("activation", self.activation)
            model = self.build_model(hp, activation)
        else:
            model = self.build_model(hp)
        if self.batch_sizes is not None:
            hp.Choice("batch_size", self.batch_sizes)
        self._compile(model, hp, self.total_steps(hp.values))
        return model

    def _compile(self, model, hp, total_steps):
        optimizer = sampler.sample_optimizer(hp, total_steps=total_steps, **self.optimizer_args)
        loss, metrics = finder.compile_config(model, self.loss, self.metrics)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    def total_steps(self, values, steps_per_epoch=None):
        """Training steps for the configuration ``values``, from what ``fit`` saw."""
        batch_size = values.get("batch_size")
        if steps_per_epoch is None:
            if self.train_examples is None or batch_size is None:
                steps_per_epoch = _PROVISIONAL_STEPS_PER_EPOCH
            else:
                steps_per_epoch = math.ceil(self.train_examples / batch_size)
        epochs = values.get("tuner/epochs") or values.get("epochs") or self._fixed_epochs()
        return max(1, steps_per_epoch * epochs)

    def _fixed_epochs(self):
        if isinstance(self.epochs, int):
            return self.epochs
        return self.fit_epochs or 1

    # -- fit ---------------------------------------------------------------------------------

    def fit(self, hp, model, *args, **kwargs):
        import tensorflow as tf

        args = list(args)
        x = args[0] if args else kwargs.get("x")
        steps_per_epoch = kwargs.get("steps_per_epoch")
        if self.batch_sizes is not None:
            batch_size = hp.get("batch_size")
            if kwargs.get("batch_size") is not None:
                raise ValueError(
                    "The batch size is tuned (`batch_sizes`); do not pass `batch_size` to "
                    "`search`, or build the OptimizerHyperModel with `batch_sizes=None`."
                )
            if isinstance(x, tf.data.Dataset):
                x = x.rebatch(batch_size)
                if args:
                    args[0] = x
                else:
                    kwargs["x"] = x
            elif x is not None and not _is_array_like(x):
                raise ValueError(
                    "Tuning the batch size needs arrays or a batched tf.data.Dataset; got "
                    f"{type(x).__name__}. Pass `batch_sizes=None` to tune without it."
                )
            else:
                kwargs["batch_size"] = batch_size
        if "tuner/epochs" not in hp.values and self.epochs is not None:
            if "epochs" in kwargs:
                raise ValueError(
                    "The epochs are set by the OptimizerHyperModel (`epochs`); do not pass "
                    "`epochs` to `search`, or build it with `epochs=None`."
                )
            # Declared here, not in build: KerasTuner declares the space by calling build
            # before any trial, when it cannot yet tell Hyperband (which owns the epochs) apart.
            if isinstance(self.epochs, list):
                kwargs["epochs"] = hp.Choice("epochs", self.epochs)
            else:
                kwargs["epochs"] = self.epochs
        self.fit_epochs = kwargs.get("epochs", 1)
        if steps_per_epoch is None:
            examples = _examples(x, kwargs.get("validation_split") or 0.0)
            if examples is not None:
                self.train_examples = examples
        if sampler.needs_total_steps(hp.values):
            if steps_per_epoch is None and isinstance(x, tf.data.Dataset):
                steps_per_epoch = int(x.cardinality())
                if steps_per_epoch < 0:
                    raise ValueError(
                        "The schedule needs the number of steps: pass `steps_per_epoch` to "
                        "`search` for a dataset of unknown length."
                    )
            epochs = kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0)
            per_epoch = steps_per_epoch or math.ceil(
                self.train_examples / (kwargs.get("batch_size") or 32)  # Keras's default
            )
            # The schedule spans this run exactly; build() only guessed.
            with model.distribute_strategy.scope():
                self._compile(model, hp, max(1, per_epoch * epochs))
        callbacks = list(kwargs.get("callbacks") or [])
        if _keeps_evaluation_weights(model.optimizer) and not any(
            isinstance(c, EvaluationWeights) for c in callbacks
        ):
            # Judge (and checkpoint) a trial by the weights it would be deployed with:
            # schedule-free's x, Lookahead's slow weights, SAM's unperturbed w, an EMA.
            kwargs["callbacks"] = callbacks + [EvaluationWeights()]
        return model.fit(*args, **kwargs)


def _keeps_evaluation_weights(optimizer):
    """Whether ``optimizer`` evaluates with weights other than the trained ones."""
    if optimizer is None:
        return False
    if hasattr(optimizer, "evaluation_values") or getattr(optimizer, "use_ema", False):
        return True
    if isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW):
        return True
    inner = getattr(optimizer, "inner_optimizer", None)
    return inner is not None and _keeps_evaluation_weights(inner)


def _is_array_like(x):
    import keras

    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "__len__") for leaf in leaves)


def _examples(x, validation_split):
    import keras

    if x is None or not _is_array_like(x):
        return None
    n = len(keras.tree.flatten(x)[0])
    # Keras keeps the first ceil(n * (1 - split)) samples for training.
    return int(math.ceil(n * (1.0 - validation_split)))
