"""Pieces every tfoptim schedule shares: argument checks, step handling, interpolation.

Numerics: schedules compute in float32 (float64 does not run on TPUs), yet the tests hold
them to float64 references at a relative 1e-6. Two habits make that possible:

* Constants (phase ends, the rounding error of ``gamma``, value tables) are computed in float64
  once and rounded to float32 once, instead of being derived in float32 inside the graph.
* Interpolations are written as a weighted sum of the two end values with *both* weights
  computed from exact step differences (``elapsed / length`` and ``remaining / length``).
  The usual ``end + (start - end) * w`` cancels when the result is much smaller than the
  operands (the tail of a cosine to zero, the bottom of a one-cycle warm-up), losing most of
  float32's digits; the weighted sum of two non-negative terms does not.
"""

import inspect
import math
import numbers

import keras
import numpy as np
from keras import ops

from tfoptim._validation import check_range

FLOAT = "float32"


# -- construction-time checks (the shared ones live in tfoptim._validation) ---------------------


def check_schedule(name, value):
    """A wrapped learning rate: a ``LearningRateSchedule`` or a float >= 0 (a constant)."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_range(name, value, 0.0)
    raise ValueError(
        f"`{name}` must be a keras.optimizers.schedules.LearningRateSchedule or a float >= 0 "
        f"(plain callables cannot be saved with a model). Received: {name}={value!r}"
    )


# -- serialization of wrapped schedules --------------------------------------------------------


def serialize_schedule(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return keras.optimizers.schedules.serialize(value)
    return value


def deserialize_schedule(value):
    if isinstance(value, dict):
        return keras.optimizers.schedules.deserialize(value)
    return value


# -- graph pieces --------------------------------------------------------------------------------


def as_step(step):
    """The step as a tensor of its own dtype (int32, int64 or float), clamped at 0.

    A concrete negative step (Python or NumPy) is a caller's bug and raises. A negative
    tensor cannot be checked inside a compiled graph without breaking XLA, so it is clamped
    to 0 and the schedule returns its step-0 value.
    """
    if isinstance(step, (numbers.Real, np.ndarray, np.generic, list, tuple)):
        if np.any(np.asarray(step) < 0):
            raise ValueError(f"Schedules are defined for steps >= 0. Received: step={step!r}")
    step = ops.convert_to_tensor(step)
    return ops.maximum(step, ops.zeros((), step.dtype))


def to_float(x):
    return ops.cast(x, FLOAT)


def elapsed_and_remaining(step, start, length):
    """``(elapsed, remaining)`` of a phase of ``length`` steps starting at ``start``, as floats.

    ``elapsed`` is clipped to ``[0, length]``. For integer ``start`` and ``length`` the
    subtraction happens in the step's integer dtype, so both parts are exact whatever the
    step; for fractional ones (OneCycle's phase ends) it happens in float32.
    """
    if isinstance(start, int) and isinstance(length, int):
        elapsed = ops.clip(step - ops.cast(start, step.dtype), 0, length)
        return to_float(elapsed), to_float(length - elapsed)
    elapsed = ops.clip(to_float(step) - start, 0.0, length)
    return elapsed, length - elapsed


def interpolate(start_value, end_value, elapsed, remaining, length, kind="linear"):
    """Goes from ``start_value`` (``elapsed == 0``) to ``end_value`` (``remaining == 0``).

    ``kind``: ``"linear"``; ``"cos"``, the half cosine ``end + (start - end) * (1 + cos(pi*p))
    / 2`` of PyTorch's ``OneCycleLR`` / SGDR, written as ``start * sin^2(pi/2 * (1 - p)) + end *
    sin^2(pi/2 * p)``; or ``"1-sqrt"``, ``end + (start - end) * (1 - sqrt(p))`` with ``1 -
    sqrt(p)`` written as ``(1 - p) / (1 + sqrt(p))``. Here ``p = elapsed / length``.
    """
    done = elapsed / length
    left = remaining / length
    if kind == "linear":
        start_weight, end_weight = left, done
    elif kind == "cos":
        half_pi = math.pi / 2
        start_weight = ops.square(ops.sin(half_pi * left))
        end_weight = ops.square(ops.sin(half_pi * done))
    else:  # "1-sqrt"
        end_weight = ops.sqrt(done)
        start_weight = left / (1.0 + end_weight)
    return start_value * start_weight + end_value * end_weight


def power(base, exponent):
    """``base ** exponent`` for a Python float ``base`` and a float tensor ``exponent``.

    ``float32(base) ** n`` is off by ``n`` times the rounding of ``base`` (``0.9`` -> 2.6e-8,
    so 1.6e-6 after 60 decays); the factor ``exp(n * log(base / float32(base)))``, with the
    logarithm taken in float64, takes that rounding back out.
    """
    rounded = float(np.float32(base))
    correction = math.log(base / rounded)
    result = ops.power(ops.cast(rounded, FLOAT), exponent)
    if correction:
        result = result * ops.exp(exponent * correction)
    return result


def evaluate(schedule, step):
    """A wrapped schedule (or constant) at ``step``, as float32 with the step's shape."""
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        value = to_float(schedule(step))
    else:
        value = ops.cast(schedule, FLOAT)
    # Constants, and schedules that ignore the step's shape, still broadcast to it.
    return value + ops.zeros_like(to_float(step))


def describe(value):
    """``repr`` for schedules, Keras's included (whose own ``repr`` is only an address)."""
    if isinstance(value, Schedule):
        return repr(value)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        config = value.get_config()
        arguments = ", ".join(f"{key}={describe(item)}" for key, item in config.items())
        return f"{type(value).__name__}({arguments})"
    if isinstance(value, list):
        return "[" + ", ".join(describe(item) for item in value) + "]"
    return repr(value)


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Base of tfoptim's schedules: each keeps its constructor arguments as attributes of the
    same names, which gives a ``repr`` that reads like the call that built it."""

    def __repr__(self):
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        arguments = ", ".join(f"{name}={describe(getattr(self, name))}" for name in names)
        return f"{type(self).__name__}({arguments})"
