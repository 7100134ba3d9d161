"""Pieces several update rules share, written once (the optax way: small functions, one job)."""

import keras
from keras import ops


def update_moment(optimizer, moment, value, decay):
    """Exponential moving average in place: ``moment <- decay * moment + (1 - decay) * value``.

    Written as ``moment += (1 - decay) * (value - moment)``, Keras's form, so the parity tests
    against Keras's built-ins hold to the last bits.
    """
    optimizer.assign_add(moment, ops.multiply(ops.subtract(value, moment), 1 - decay))


def scalar_dtype(dtype):
    """Precision for per-step scalars (step count, bias corrections): at least float32.

    In bfloat16, 0.999 rounds to 1.0 and step 257 to 256; Adam's ``1 - beta_2**t`` would be 0
    and a bfloat16 model would never move.
    """
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def bias_correction(decay, step):
    """``1 - decay**step``: the weight an EMA started at zero has gathered after ``step`` steps,
    in ``step``'s dtype (``decay`` as given: see ``Optimizer.hyperparameter``)."""
    return 1 - ops.power(ops.convert_to_tensor(decay, step.dtype), step)


def local_step(optimizer, dtype):
    """The 1-based index of the update being applied, in ``scalar_dtype(dtype)``."""
    return ops.cast(optimizer.iterations + 1, scalar_dtype(dtype))


def rms_denominator(second_moment, epsilon, epsilon_inside_sqrt):
    """``sqrt(v + eps)`` (Keras, TF1) or ``sqrt(v) + eps`` (PyTorch, the papers)."""
    if epsilon_inside_sqrt:
        return ops.sqrt(ops.add(second_moment, epsilon))
    return ops.add(ops.sqrt(second_moment), epsilon)


def constant(value):
    """Slot initializer filling ``value`` as given in the slot's dtype (``Optimizer.hyperparameter``
    decides whether it was rounded through float32, as ``keras.initializers.Constant`` does)."""

    def initializer(shape, dtype=None):
        return ops.full(shape, value, dtype=dtype)

    return initializer


def rectification(beta_2, step):
    """RAdam's variance rectification at ``step``: ``(rho, r)``.

    ``rho = rho_inf - 2 t beta_2**t / (1 - beta_2**t)`` with ``rho_inf = 2 / (1 - beta_2) - 1`` is
    the length of the simple moving average the EMA ``v`` approximates; ``r`` rescales the
    adaptive step so its variance matches that of ``rho_inf`` samples. ``r`` needs ``rho >= 4``;
    it is clamped to 0 below, where the callers do not use it.
    """
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    beta_2_power = ops.power(ops.convert_to_tensor(beta_2, step.dtype), step)
    rho = rho_inf - 2.0 * step * beta_2_power / (1.0 - beta_2_power)
    ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    return rho, ops.sqrt(ops.maximum(ratio, 0.0))


def warmup_learning_rate(optimizer, learning_rate):
    """TensorFlow Addons' warm-up of ``RectifiedAdam``/``AdaBelief`` applied to ``learning_rate``.

    With ``w = total_steps * warmup_proportion``, at update ``t = 1, 2, ...``: ``lr * t / w``
    while ``t <= w``, then linear from ``lr`` down to ``min_learning_rate`` at ``total_steps``,
    ``min_learning_rate`` after. Reads ``optimizer.total_steps``, ``warmup_proportion`` and
    ``min_learning_rate``.
    """
    learning_rate = ops.convert_to_tensor(learning_rate)
    dtype = scalar_dtype(learning_rate.dtype)
    learning_rate = ops.cast(learning_rate, dtype)
    step = ops.cast(optimizer.iterations + 1, dtype)
    total_steps = optimizer.hyperparameter(optimizer.total_steps)
    warmup_steps = total_steps * optimizer.hyperparameter(optimizer.warmup_proportion)
    decay_steps = max(total_steps - warmup_steps, 1.0)
    decay_rate = (optimizer.hyperparameter(optimizer.min_learning_rate) - learning_rate) / decay_steps
    decayed = learning_rate + decay_rate * ops.minimum(step - warmup_steps, decay_steps)
    if not warmup_steps:
        return decayed
    return ops.where(step <= warmup_steps, learning_rate * (step / warmup_steps), decayed)


def statistics_dtype(variables):
    """Dtype of a rule's sums over all its variables and of the global state fed by them
    (D-Adaptation's and Prodigy's ``d``): float64 when any variable is, else float32."""
    return "float64" if any(scalar_dtype(v.dtype) == "float64" for v in variables) else "float32"


def total(x, dtype):
    """Sum of every entry of ``x``, accumulated in ``dtype`` (a bfloat16 sum keeps ~3 digits)."""
    return ops.sum(ops.cast(x, dtype))


def decay_and_add(optimizer, slot, decay, value, coefficient, active=True):
    """``slot <- slot * decay + value * coefficient`` in place: PyTorch's
    ``slot.mul_(decay).add_(value, alpha=coefficient)``, for averages whose weight is not
    ``1 - decay`` (D-Adaptation's and Prodigy's carry ``d``). Where ``active`` is False the slot
    keeps its value: the factors become exactly 1 and 0.

    ``decay`` and ``coefficient``: Python floats (kept exact) or scalar tensors."""
    dtype = slot.dtype

    def factor(x, inactive):
        x = ops.cast(x, dtype) if ops.is_tensor(x) else ops.convert_to_tensor(x, dtype)
        return ops.where(active, x, ops.convert_to_tensor(inactive, dtype))

    optimizer.assign(
        slot,
        ops.add(
            ops.multiply(slot, factor(decay, 1.0)), ops.multiply(value, factor(coefficient, 0.0))
        ),
    )
