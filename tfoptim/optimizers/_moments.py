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
