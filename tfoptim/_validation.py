"""Construction-time argument checks shared by every optimizer, schedule and callback.

Each check raises a ``ValueError`` that names the argument, the allowed range and the value
received, so a typo fails where it was made rather than as a NaN a thousand steps later.
"""

import math
import numbers

import keras
import numpy as np


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Returns ``float(value)`` after checking ``low <(=) value <(=) high`` (None: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"`{name}` must be in {left}{lo}, {hi}{right}. Received: {name}={value!r}")
    return float(value)


def check_unit_interval(name, value):
    """Decay rates (``beta_*``, ``rho``, ``momentum``): [0, 1)."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_positive(name, value):
    return check_range(name, value, 0.0, low_open=True)


def check_non_negative(name, value):
    return check_range(name, value, 0.0)


def check_steps(name, value, minimum=0):
    """Returns ``int(value)`` for an integer (or integral float) ``>= minimum``."""
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool) or not integral or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_increasing(name, values, minimum=0):
    """Returns ``values`` as a list of ints, strictly increasing, each ``>= minimum``."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"`{name}` must be a list of integers. Received: {name}={values!r}")
    steps = [check_steps(f"{name}[{i}]", v, minimum) for i, v in enumerate(values)]
    for i in range(1, len(steps)):
        if steps[i] <= steps[i - 1]:
            raise ValueError(
                f"`{name}` must be strictly increasing; {name}[{i}]={steps[i]} follows "
                f"{name}[{i - 1}]={steps[i - 1]}. Received: {name}={values!r}"
            )
    return steps


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_string(name, value, allow_empty=True):
    """Returns ``value`` after checking it is a ``str`` (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str) or not (allow_empty or value):
        kind = "a string" if allow_empty else "a non-empty string"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return value


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def check_learning_rate(learning_rate):
    """Accepts a finite float >= 0 (ints are promoted), a schedule, or a callable."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or callable(
        learning_rate
    ):
        return learning_rate
    return float(check_non_negative("learning_rate", learning_rate))
