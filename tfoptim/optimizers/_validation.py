"""Construction-time argument checks shared by every optimizer.

Each check raises a ``ValueError`` that names the argument, the allowed range and the value
received, so a typo fails where it was made rather than as a NaN a thousand steps later.
"""

import math

import keras


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Checks ``low <(=) value <(=) high``; ``None`` bounds are unbounded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"`{name}` must be in {left}{lo}, {hi}{right}. Received: {name}={value!r}")
    return value


def check_unit_interval(name, value):
    """Decay rates (``beta_*``, ``rho``, ``momentum``): [0, 1)."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_positive(name, value):
    return check_range(name, value, 0.0, low_open=True)


def check_non_negative(name, value):
    return check_range(name, value, 0.0)


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
