"""Pieces several update rules share, written once (the optax way: small functions, one job)."""

import math

import keras
from keras import ops


def _same_dtype(a, b):
    return keras.backend.standardize_dtype(a.dtype) == keras.backend.standardize_dtype(b.dtype)


def read(slot, dtype):
    """``slot``'s value for arithmetic in ``dtype``: the slot itself when it has that dtype,
    else its value cast (a bfloat16 moment of a float32 variable, see ``moment_dtype``)."""
    if keras.backend.standardize_dtype(slot.dtype) == keras.backend.standardize_dtype(dtype):
        return slot
    return ops.cast(slot, dtype)


def store(optimizer, slot, value):
    """``slot <- value``, rounded to the slot's dtype; returns what was stored, as ``value``'s
    dtype (what a later read of the slot gives: the rule steps with the stored moments)."""
    dtype = value.dtype
    if _same_dtype(slot, value):
        optimizer.assign(slot, value)
        return slot
    if keras.backend.standardize_dtype(value.dtype) == "float64":
        # Through float32, as TensorFlow's float64-to-bfloat16 cast rounds (eager and XLA):
        # the same two roundings whatever the backend.
        value = ops.cast(value, "float32")
    rounded = ops.cast(value, slot.dtype)
    optimizer.assign(slot, rounded)
    return ops.cast(rounded, dtype)


def add_to(optimizer, slot, increment):
    """``slot <- slot + increment`` in place; returns the new value (see :func:`store`). In the
    slot's own dtype an ``assign_add``; a narrower slot is read in ``increment``'s dtype and the
    sum rounded once."""
    if _same_dtype(slot, increment):
        optimizer.assign_add(slot, increment)
        return slot
    return store(optimizer, slot, ops.add(read(slot, increment.dtype), increment))


def update_moment(optimizer, moment, value, decay):
    """Exponential moving average in place: ``moment <- decay * moment + (1 - decay) * value``;
    returns the new moment (see :func:`store`).

    Written as ``moment += (1 - decay) * (value - moment)``, Keras's form, so the parity tests
    against Keras's built-ins hold to the last bits. A moment stored in a narrower dtype than
    ``value`` (``moment_dtype="bfloat16"``) is computed in ``value``'s dtype and rounded once.
    """
    if _same_dtype(moment, value):
        optimizer.assign_add(moment, ops.multiply(ops.subtract(value, moment), 1 - decay))
        return moment
    old = ops.cast(moment, value.dtype)
    return store(optimizer, moment, ops.add(old, ops.multiply(ops.subtract(value, old), 1 - decay)))


def cautious(update, gradient):
    """The cautious mask (Liang et al. 2024, "Cautious Optimizers: Improving Training with One
    Line of Code", arXiv:2411.16085): ``update`` where it agrees in sign with ``gradient``,
    0 elsewhere, rescaled by the share of the variable's elements kept::

        mask = (update * gradient > 0)
        update * mask / max(mean(mask), 1e-3)

    The rescaling of timm's ``caution=True`` and of the authors' current ``c_adamw.py``; their
    first code (and ``pytorch_optimizer``'s ``cautious=True``) divides by
    ``(sum(mask) + 1) / size`` instead, a step larger by ``(sum(mask) + 1) / sum(mask)``. The
    mean is over the whole variable: a cautious rule is not element-wise.
    """
    mask = ops.cast(ops.greater(ops.multiply(update, gradient), 0), update.dtype)
    return ops.multiply(update, ops.divide(mask, ops.maximum(mean_of_all(mask), 1e-3)))


def mean_of_all(x):
    """The mean of every entry of ``x``, as a sum over the (static) count, accumulated in float64
    for float64 ``x`` and float32 otherwise: Keras's ``ops.mean`` on JAX rounds a float64 mean
    through float32."""
    dtype = "float64" if keras.backend.standardize_dtype(x.dtype) == "float64" else "float32"
    mean = ops.divide(total(x, dtype), ops.convert_to_tensor(math.prod(x.shape), dtype))
    return ops.cast(mean, x.dtype)


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


def keep_maximum(optimizer, maximum, value):
    """AMSGrad's running maximum in place, ``maximum <- max(maximum, value)``; returns the new
    maximum (see :func:`store`)."""
    return store(optimizer, maximum, ops.maximum(read(maximum, value.dtype), value))


def adam_step(m, v, epsilon, learning_rate, correction_1, correction_2, bias_corrected_epsilon):
    """Adam's bias-corrected step ``lr * m_hat / (sqrt(v_hat) + eps)``, in one of its two forms.

    ``bias_corrected_epsilon=False`` (Keras, TF1, the paper's "more efficient" order, the
    corrections folded into the rate): ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    True (PyTorch): ``lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. The two differ only
    in how much ``eps`` weighs. ``learning_rate`` and the corrections are scalars of the step's
    precision (``scalar_dtype``); the result has ``m``'s dtype.
    """
    dtype = m.dtype
    if bias_corrected_epsilon:
        root_2 = ops.cast(ops.sqrt(correction_2), dtype)
        denominator = ops.add(ops.divide(ops.sqrt(v), root_2), epsilon)
        step_size = ops.divide(learning_rate, correction_1)
    else:
        denominator = ops.add(ops.sqrt(v), epsilon)
        step_size = ops.divide(ops.multiply(learning_rate, ops.sqrt(correction_2)), correction_1)
    return ops.divide(ops.multiply(m, ops.cast(step_size, dtype)), denominator)


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


def rectified_step(optimizer, m, v, learning_rate, step):
    """RAdam's step, shared by ``RAdam`` and ``AdaBelief`` (``v``: its belief ``s``).

    Where ``rho_t >= sma_threshold``, Adam's step (``adam_step``) scaled by ``r_t``; below it,
    ``lr * m / (1 - b1^t)`` (momentum SGD) with ``degenerated_to_sgd``, else no move. Reads the
    optimizer's ``beta_1``, ``beta_2``, ``epsilon``, ``sma_threshold``, ``degenerated_to_sgd`` and
    ``bias_corrected_epsilon``.
    """
    beta_2 = optimizer.hyperparameter(optimizer.beta_2)
    correction_1 = bias_correction(optimizer.hyperparameter(optimizer.beta_1), step)
    correction_2 = bias_correction(beta_2, step)
    rho, r = rectification(beta_2, step)
    adaptive = adam_step(
        m,
        v,
        optimizer.epsilon,
        learning_rate * r,
        correction_1,
        correction_2,
        optimizer.bias_corrected_epsilon,
    )
    if optimizer.degenerated_to_sgd:
        plain_rate = learning_rate / correction_1
    else:
        plain_rate = ops.zeros_like(learning_rate)
    return ops.where(
        rho >= optimizer.sma_threshold, adaptive, ops.multiply(m, ops.cast(plain_rate, m.dtype))
    )


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


def distance_adapted_rate(optimizer, learning_rate):
    """``(d, rate, runs)`` of the D-Adaptation rules (``DAdaptAdam``, ``Prodigy``) at this step.

    ``d``: the current distance estimate; ``rate = d * lr``, times Adam's bias correction
    ``sqrt(1 - b2^k) / (1 - b1^k)`` with ``use_bias_correction`` (``k``: the updates applied so
    far plus one, ``optimizer._updates + 1``); ``runs``: ``lr > 0``, whether the step moves at all.
    """
    d = ops.convert_to_tensor(optimizer._d)
    learning_rate = ops.cast(learning_rate, d.dtype)
    rate = d * learning_rate
    if optimizer.use_bias_correction:
        k = ops.cast(optimizer._updates + 1, d.dtype)
        beta_1 = optimizer.hyperparameter(optimizer.beta_1)
        beta_2 = optimizer.hyperparameter(optimizer.beta_2)
        rate = rate * (ops.sqrt(bias_correction(beta_2, k)) / bias_correction(beta_1, k))
    return d, rate, learning_rate > 0


def proximal_step(value, rate, l1, l2):
    """The proximal map of ``l1 * |x| + l2 / 2 * x^2`` at per-coordinate step ``rate`` (FOBOS,
    Duchi & Singer 2009): soft-threshold by ``rate * l1``, then shrink by ``1 + rate * l2``.
    A zero ``l1`` (a Python number) skips the threshold. The shrink always runs, as in
    TensorFlow's ``ResourceApplyProximalAdagrad``: skipping it at ``l2 = 0`` (a division by
    one) made ``ProximalAdagrad``'s graph part from that kernel by an ulp (float32, measured;
    the kernel is only bit for bit with the division in place)."""
    if l1:
        shrunk = ops.maximum(ops.subtract(ops.abs(value), ops.multiply(rate, l1)), 0.0)
        value = ops.multiply(ops.sign(value), shrunk)
    return ops.divide(value, ops.add(ops.multiply(rate, l2), 1.0))
