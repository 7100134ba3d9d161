"""DynamicGradientDescent against the NumPy reference: gradient descent at the rate
``alpha * decay_rate**t`` (``t`` = updates already applied).

The decay is Keras's ``ExponentialDecay``, which evaluates ``alpha * decay_rate**t`` in float32
whatever the model's precision (up to ~(t + 3) * 2**-24 relative from the exact rate: the
rounding of ``decay_rate``, compounded t times, plus the power and product). A float32
``powf`` is not correctly rounded: NumPy's (libm's, or SVML's on AVX-512 machines) and
TensorFlow's can differ by an ulp on some steps, which moves the trajectory by 1e-11 to 1e-8,
far above the float64 tolerance. So the two checks are separate. The trajectory is compared
with NumPy driven by the rates the optimizer itself evaluates (its schedule at each
``iterations``), at the usual float64 tolerance: that checks the update rule. Those rates are
checked against ``alpha * decay_rate**t`` computed in float64 from the float32-rounded ``alpha``
and ``decay_rate`` (exact to ~1e-16), within what float32 evaluation allows: the power within
one ulp and the product's rounding, an ulp being at most 2**-23 of the value.
"""

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import STEPS
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


def applied_rates(alpha, decay_rate, steps=STEPS):
    """The rate DynamicGradientDescent applies after ``t`` updates, for ``t < steps``, as
    TensorFlow evaluates it (the optimizer's schedule at its own ``iterations``)."""
    with floatx("float64"):
        optimizer = to.DynamicGradientDescent(alpha, decay_rate=decay_rate)
    rates = []
    for t in range(steps):
        optimizer.iterations.assign(t)
        rates.append(float(optimizer.learning_rate))
    return np.array(rates)


@pytest.mark.parametrize("alpha, decay_rate, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(alpha, decay_rate, flags):
    rates = applied_rates(alpha, decay_rate)
    t = np.arange(STEPS)
    float32_inputs = float(np.float32(alpha)) * float(np.float32(decay_rate)) ** t
    np.testing.assert_array_less(np.abs(rates - float32_inputs), 3 * 2.0**-24 * float32_inputs)
    nr.compare(
        to.DynamicGradientDescent,
        lambda decay_rate: nr.gradient_descent(),
        alpha,
        nr.RTOL,
        numpy_lr=rates,
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
