"""One switch to the weights an optimizer wants evaluated: schedule-free ``x``, SWA's average,
Lookahead's slow weights, Keras's EMA.

The protocol: an optimizer that keeps evaluation weights apart from the weights it trains
defines ``evaluation_values(variables)``, returning one value per variable (the variable's own
value where it keeps none). tfoptim's ``ScheduleFreeSGD``, ``Lookahead`` and ``SWA`` do.
:func:`evaluation_values` adds, for optimizers that predate the protocol, Keras's
``ScheduleFreeAdamW`` (``x = (y - (1 - beta_1) z) / beta_1``, the relation its update step
uses) and any Keras optimizer built with ``use_ema=True`` (the moving averages), and looks
through ``LossScaleOptimizer``, any wrapper that exposes ``inner_optimizer`` and
``MultiOptimizer`` (each variable from the sub-optimizer that steps it).

On top of it: :func:`evaluation_weights`, a context manager that swaps the evaluation weights
into a model and puts the training weights back exactly afterwards; the
:class:`EvaluationWeights` callback, which does that around validation, ``evaluate``,
``predict`` and checkpoint saving during ``fit``, and leaves the evaluation weights in the model
at the end; and :func:`update_batch_norm`, which recomputes batch-normalisation statistics for
the weights the model now holds.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from tfoptim._validation import check_bool, check_steps
from tfoptim.callbacks._state import SerializableCallback


def evaluation_values(optimizer, variables):
    """The values ``optimizer`` wants ``variables`` evaluated with, or None when it keeps no
    evaluation weights apart from the trained ones (or is not built yet)."""
    if optimizer is None or not getattr(optimizer, "built", False):
        return None
    if hasattr(optimizer, "evaluation_values"):
        return list(optimizer.evaluation_values(variables))
    if isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW):
        beta_1 = optimizer.beta_1
        values = []
        for variable in variables:
            z = optimizer._momentums[optimizer._get_variable_index(variable)]
            y = ops.convert_to_tensor(variable)
            values.append(ops.divide(ops.subtract(y, ops.multiply(z, 1 - beta_1)), beta_1))
        return values
    if getattr(optimizer, "use_ema", False):
        averages = optimizer._model_variables_moving_average
        return [ops.convert_to_tensor(averages[optimizer._get_variable_index(v)]) for v in variables]
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return evaluation_values(inner, variables)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        return _multi_optimizer_values(optimizer, variables)
    return None


def _multi_optimizer_values(optimizer, variables):
    """A ``MultiOptimizer``'s evaluation values: each variable's from the sub-optimizer that
    steps it, its current value where that one keeps none; None when none of them keeps any."""
    by_optimizer = {}
    for position, variable in enumerate(variables):
        index = optimizer._var_to_optimizer_idx[optimizer._var_key(variable)]
        by_optimizer.setdefault(index, []).append(position)
    values, found = [ops.convert_to_tensor(v) for v in variables], False
    for index, positions in by_optimizer.items():
        sub_values = evaluation_values(optimizer.optimizers[index], [variables[i] for i in positions])
        if sub_values is not None:
            found = True
            for position, value in zip(positions, sub_values):
                values[position] = value
    return values if found else None


def _trained_variables(model):
    return list(model.trainable_variables)


@contextlib.contextmanager
def evaluation_weights(model):
    """Within the block, ``model`` holds its optimizer's evaluation weights; afterwards the
    training weights are back, bit for bit (kept as a copy, not recomputed). Does nothing for an
    optimizer without evaluation weights. Yields True when the weights were swapped."""
    variables = _trained_variables(model)
    values = evaluation_values(getattr(model, "optimizer", None), variables)
    if values is None:
        yield False
        return
    backup = [ops.copy(ops.convert_to_tensor(v)) for v in variables]
    _assign_copies(variables, values)
    try:
        yield True
    finally:
        for variable, value in zip(variables, backup):
            variable.assign(value)


def assign_evaluation_weights(model):
    """Copies the evaluation weights into ``model`` for good (the end of training). Returns
    False, changing nothing, when the optimizer has none."""
    variables = _trained_variables(model)
    values = evaluation_values(getattr(model, "optimizer", None), variables)
    if values is None:
        return False
    _assign_copies(variables, values)
    return True


def _assign_copies(variables, values):
    # Copies: a value may be an optimizer variable's own buffer (Lookahead's slow weights), and
    # on JAX two variables sharing one buffer break the next training step, which donates both.
    for variable, value in zip(variables, values):
        variable.assign(ops.copy(value))


def _batch_norm_layers(model):
    return [
        layer for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def update_batch_norm(model, data, batch_size=32, steps=None):
    """Recomputes every ``BatchNormalization`` layer's moving mean and variance for the weights
    ``model`` holds now, from one pass over ``data`` in training mode (``torch.optim.swa_utils.
    update_bn``): the statistics restart from the layer's initial values and become the equal-
    weight average of the batch statistics (momentum ``1 - 1/i`` at batch ``i``). Run it after
    copying averaged weights in: statistics collected along the training trajectory do not
    describe the average. The layers' momentum is put back afterwards.

    Args:
        model: a built Keras model.
        data: an array (or a tuple/list of arrays: the inputs), or an iterable of batches such
            as a ``tf.data.Dataset``, whose elements are inputs or ``(inputs, targets, ...)``.
        batch_size: batch size when ``data`` is an array. Defaults to 32.
        steps: at most this many batches (integer >= 1); all of them by default.

    Returns the number of batches used (0, doing nothing, when there is no such layer).
    """
    batch_size = check_steps("batch_size", batch_size, 1)
    if steps is not None:
        steps = check_steps("steps", steps, 1)
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momentums = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(ops.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(ops.ones_like(layer.moving_variance))
    if isinstance(data, np.ndarray) or (
        isinstance(data, (tuple, list)) and data and isinstance(data[0], np.ndarray)
    ):
        arrays = data
        size = len(arrays) if isinstance(arrays, np.ndarray) else len(arrays[0])

        def batches():
            for start in range(0, size, batch_size):
                if isinstance(arrays, np.ndarray):
                    yield arrays[start : start + batch_size]
                else:
                    yield type(arrays)(a[start : start + batch_size] for a in arrays)

        data = batches()
    count = 0
    try:
        for batch in data:
            if steps is not None and count >= steps:
                break
            inputs = batch[0] if isinstance(batch, tuple) and len(batch) > 1 else batch
            count += 1
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / count
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(layers, momentums):
            layer.momentum = momentum
    return count


@keras.saving.register_keras_serializable(package="tfoptim")
class EvaluationWeights(SerializableCallback):
    """Evaluates, checkpoints and finishes with the weights the optimizer wants evaluated.

    Some optimizers train one set of weights and should be evaluated with another:
    schedule-free methods (``tfoptim.optimizers.ScheduleFreeSGD``, Keras's
    ``ScheduleFreeAdamW``: the averaged ``x`` sequence, not the ``y`` the gradients are taken
    at), ``tfoptim.optimizers.SWA`` (the average), ``tfoptim.optimizers.Lookahead`` (the slow
    weights), any Keras optimizer with ``use_ema=True`` (the moving average). This callback
    gives all of them the official schedule-free ``eval()``/``train()`` switch:

    * around every validation pass of ``fit``, and around ``evaluate``/``predict`` when passed
      to them, the model holds the evaluation weights, so ``val_*`` metrics are theirs;
    * with ``checkpoints=True``, every ``model.save``/``save_weights`` during ``fit`` (what
      ``keras.callbacks.ModelCheckpoint`` calls, whatever its place in the callback list)
      writes the evaluation weights, as the official recommendation to save in eval mode.
      Such a file is for evaluating and deploying; to resume training exactly, save the
      training weights (``checkpoints=False``, or ``model.save`` outside ``fit``);
    * afterwards the training weights are put back bit for bit, so training continues exactly
      as without the callback;
    * with ``final=True``, the evaluation weights stay in the model when ``fit`` ends (then
      call :func:`update_batch_norm` if the model has batch normalisation).

    With an optimizer that keeps no evaluation weights it does nothing. The switch itself is
    :func:`evaluation_weights` (a context manager) for custom loops.

    Args:
        checkpoints: swap the evaluation weights in for saves made during ``fit``. Defaults
            to True.
        final: leave the evaluation weights in the model at the end of ``fit``. Defaults to
            True.

    Example:

    ```python
    import keras
    import numpy as np
    import tfoptim

    x, y = np.random.rand(256, 8), np.random.rand(256, 1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=tfoptim.optimizers.ScheduleFreeSGD(0.1), loss="mse")
    model.fit(x, y, validation_split=0.25, epochs=3, verbose=0,
              callbacks=[tfoptim.callbacks.EvaluationWeights()])
    ```
    """

    def __init__(self, checkpoints=True, final=True):
        super().__init__()
        self.checkpoints = check_bool("checkpoints", checkpoints)
        self.final = check_bool("final", final)
        self._swap = None
        self._saves = None

    def get_config(self):
        return {"checkpoints": self.checkpoints, "final": self.final}

    def _swap_in(self):
        if self._swap is None:
            self._swap = evaluation_weights(self.model)
            self._swap.__enter__()

    def _swap_out(self):
        if self._swap is not None:
            swap, self._swap = self._swap, None
            swap.__exit__(None, None, None)

    def on_test_begin(self, logs=None):
        self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()

    def on_predict_begin(self, logs=None):
        self._swap_in()

    def on_predict_end(self, logs=None):
        self._swap_out()

    def on_train_begin(self, logs=None):
        if not self.checkpoints:
            return
        model = self.model
        self._saves = {name: vars(model).get(name) for name in ("save", "save_weights")}
        for name in self._saves:
            original = getattr(model, name)

            def save(*args, _original=original, **kwargs):
                with evaluation_weights(model):
                    return _original(*args, **kwargs)

            # An instance attribute shadows the method for this model only, until train end.
            object.__setattr__(model, name, save)

    def on_train_end(self, logs=None):
        self._swap_out()
        if self._saves is not None:
            for name, shadowed in self._saves.items():
                if shadowed is None:
                    object.__delattr__(self.model, name)
                else:
                    object.__setattr__(self.model, name, shadowed)
            self._saves = None
        if self.final:
            assign_evaluation_weights(self.model)
