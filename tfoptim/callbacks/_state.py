"""What the callbacks share: reaching the learning rate through optimizer wrappers, taking and
restoring in-memory snapshots of everything a training step changes, and the small things
(messages, a monitored quantity's value and direction) they would otherwise repeat. Argument
checks are the package's own, in ``tfoptim._validation``.

Wrappers are recognised by shape, not by class, so Keras's ``LossScaleOptimizer`` (which
exposes ``inner_optimizer``) and ``MultiOptimizer`` (which exposes ``optimizers``), and any
wrapper written the same way, are all looked through.
"""

import logging
import sys
import warnings

import keras
import numpy as np

from tfoptim.callbacks.scaled_schedule import ScaledSchedule


class SerializableCallback(keras.callbacks.Callback):
    """Base of tfoptim's callbacks, whose ``get_config`` returns their constructor arguments:
    ``from_config`` rebuilds them, so ``keras.saving.serialize_keras_object`` and
    ``deserialize_keras_object`` round-trip them (Keras's ``Callback`` has no ``from_config``).
    """

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def print_message(message):
    """Prints like Keras's own callbacks: to stdout, or to the log when Keras's interactive
    logging is off (``keras.config.disable_interactive_logging()``)."""
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    else:
        logging.getLogger("tfoptim").info(message)


def leaf_optimizers(optimizer):
    """The optimizers that own a learning rate, in order, looking through wrappers."""
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return leaf_optimizers(inner)
    subs = getattr(optimizer, "optimizers", None)
    if isinstance(subs, (list, tuple)):
        leaves = []
        for sub in subs:
            for leaf in leaf_optimizers(sub):
                if not any(leaf is seen for seen in leaves):
                    leaves.append(leaf)
        return leaves
    return [optimizer]


def learning_rate_value(leaf):
    """The learning rate ``leaf`` applies at its current iteration, as a Python float."""
    return float(keras.ops.convert_to_numpy(leaf.learning_rate))


def learning_rate_logs(optimizer):
    """``{"learning_rate": lr}``, or one ``learning_rate_<name>`` entry per optimizer when a
    wrapper holds several (the keys Keras's own ``TensorBoard`` and ``ReduceLROnPlateau`` use)."""
    leaves = leaf_optimizers(optimizer)
    if len(leaves) == 1:
        return {"learning_rate": learning_rate_value(leaves[0])}
    logs = {}
    for leaf in leaves:
        key = f"learning_rate_{leaf.name}"
        suffix = 1
        while key in logs:
            key = f"learning_rate_{leaf.name}_{suffix}"
            suffix += 1
        logs[key] = learning_rate_value(leaf)
    return logs


def has_variable_learning_rate(leaf):
    """True when the learning rate is a plain float held in a variable (settable in place)."""
    return isinstance(leaf._learning_rate, keras.Variable)


def scale_learning_rate(model, factor, min_learning_rate=0.0):
    """Multiplies the learning rate of every optimizer of ``model`` by ``factor``.

    A float learning rate is scaled in place, exactly as Keras's ``ReduceLROnPlateau`` does. A
    schedule (or callable) is wrapped, the first time, in a :class:`ScaledSchedule` whose factor
    is then scaled; the step function is re-traced once for that first wrap because the traced
    step holds the old schedule. The result never drops below ``min_learning_rate`` (at the
    current step) because of this call; a schedule's own decay may still take it lower.

    Returns ``[(leaf, old_lr, new_lr), ...]`` for the optimizers whose rate changed.
    """
    changes = []
    retrace = False
    with model.distribute_strategy.scope():
        for leaf in leaf_optimizers(model.optimizer):
            old = learning_rate_value(leaf)
            if old <= min_learning_rate:
                continue
            new = max(old * factor, min_learning_rate)
            if has_variable_learning_rate(leaf):
                leaf.learning_rate = new
            else:
                schedule = leaf._learning_rate
                if not isinstance(schedule, ScaledSchedule):
                    schedule = ScaledSchedule(schedule)
                    leaf.learning_rate = schedule
                    retrace = True
                ratio = factor if old * factor >= min_learning_rate else new / old
                schedule.factor = schedule.factor * ratio
            changes.append((leaf, old, learning_rate_value(leaf)))
    if retrace:
        model.make_train_function(force=True)
    return changes


def build_optimizer(model):
    """Builds ``model``'s optimizer if it is not yet; returns False when the model itself is not
    built, so neither can be.

    Without a distribution strategy, Keras builds both inside the first traced step, after
    ``on_train_begin``; building the optimizer early (as Keras does itself under a strategy)
    makes its slots exist, at their initial values, before anything snapshots them.
    """
    if not model.built:
        return False
    if not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
    return True


def _unique(variables):
    seen = set()
    unique = []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


class TrainingSnapshot:
    """A host-memory copy of a model's variables (weights, seeds), its optimizer's variables
    (iteration counters, slots, float learning rates, loss scale) and its metrics' running
    state, so that the epoch's metrics match restored weights. :meth:`restore` writes the copy
    back bit for bit.

    Call :func:`build_optimizer` first: variables that do not exist yet cannot be copied.
    """

    def __init__(self, model):
        variables = (
            list(model.variables) + list(model.optimizer.variables) + list(model.metrics_variables)
        )
        self._variables = _unique(variables)
        self._values = [np.array(v.numpy(), copy=True) for v in self._variables]

    def restore(self):
        for variable, value in zip(self._variables, self._values):
            variable.assign(value)


def resolve_mode(monitor, mode, model):
    """``"min"`` or ``"max"`` for ``monitor``; ``"auto"`` follows the metric's declared
    direction when Keras knows it, and treats losses and errors as minimised."""
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("loss") or "error" in name:
        return "min"
    for metric in _flat_metrics(model):
        if metric.name == name and getattr(metric, "_direction", None) in ("up", "down"):
            return "max" if metric._direction == "up" else "min"
    if "acc" in name or name in ("auc", "precision", "recall", "f1_score"):
        return "max"
    raise ValueError(
        f"Cannot tell whether `monitor={monitor!r}` should be minimised or maximised; "
        "pass `mode='min'` or `mode='max'`."
    )


def _flat_metrics(model):
    metrics = []
    for metric in getattr(model, "metrics", []) or []:
        inner = getattr(metric, "metrics", None)
        metrics.extend(inner if isinstance(inner, (list, tuple)) else [metric])
    return metrics


def monitored_value(callback, logs):
    """``logs[callback.monitor]`` as a float, or None, with a warning, when it is not there.

    Not an error, as in Keras's ``EarlyStopping``: validation metrics are absent on the epochs
    that ``validation_freq`` skips.
    """
    value = (logs or {}).get(callback.monitor)
    if value is None:
        warnings.warn(
            f"{type(callback).__name__} monitors `{callback.monitor}`, which is not in the "
            f"logs. Available: {', '.join(sorted(logs or {}))}.",
            stacklevel=3,
        )
        return None
    return float(value)
