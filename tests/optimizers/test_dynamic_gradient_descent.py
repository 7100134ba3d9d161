"""DynamicGradientDescent against the NumPy reference: gradient descent at the rate
``alpha * decay_rate**t`` (``t`` = updates already applied).

The decay is Keras's ``ExponentialDecay``, which evaluates ``alpha * decay_rate**t`` in float32
whatever the model's precision (up to ~(t + 3) * 2**-24 relative from the exact rate: the
rounding of ``decay_rate``, compounded t times, plus the power and product). So the trajectory
is compared with NumPy driven by the same float32-evaluated rates, at the usual float64
tolerance, and the rates themselves against the exact float64 ``alpha * decay_rate**t`` within
that float32 bound. (NumPy's float32 ``power`` reproduces TensorFlow's bit for bit here; a
platform whose ``powf`` differed by an ulp would move the trajectory by ~1e-8.)
"""

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from trajectory import floatx, run

CASES = {
    "default": (0.1, 0.99, {}),
    "fast_decay": (0.05, 0.97, {}),
    "float32_exact_decay": (0.125, 0.96875, {}),
    "coupled_weight_decay": (0.1, 0.99, dict(coupled_weight_decay=0.1)),
    # Keras's decoupled decay is scaled by the decayed rate.
    "weight_decay": (0.1, 0.99, dict(weight_decay=0.1)),
    # Keras's float32 rounding of the decay (the default) is a no-op for 2**-4.
    "keras_precision": (0.1, 0.99, dict(weight_decay=0.0625, exact_hyperparameters=False)),
}


def float32_rate(alpha, decay_rate):
    """``alpha * decay_rate**t`` evaluated in float32, as ``ExponentialDecay`` does."""
    return lambda t: float(np.float32(alpha) * np.power(np.float32(decay_rate), np.float32(t)))


@pytest.mark.parametrize("alpha, decay_rate, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(alpha, decay_rate, flags):
    nr.compare(
        to.DynamicGradientDescent,
        lambda decay_rate: nr.gradient_descent(),
        alpha,
        nr.RTOL,
        numpy_lr=float32_rate(alpha, decay_rate),
        decay_rate=decay_rate,
        **flags,
    )


@pytest.mark.parametrize("steps", [0, 1, 37, 200])
def test_rate_after_t_steps_is_alpha_times_decay_to_the_t(steps):
    alpha, decay_rate = 0.1, 0.99
    with floatx("float64"):
        optimizer = to.DynamicGradientDescent(alpha, decay_rate=decay_rate)
        if steps:
            run(optimizer, (steps,))
        rate = float(optimizer.learning_rate)
    assert int(optimizer.iterations) == steps
    exact = nr.exponential(alpha, decay_rate)(steps)
    assert abs(rate - exact) <= (steps + 3) * 2.0**-24 * exact
    # ...and not the rate one step early or late.
    assert abs(rate - exact) < abs(exact - exact * decay_rate) / 100
