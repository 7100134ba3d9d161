"""GradientDescent against the NumPy reference (``theta <- theta - lr * g``).

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200 with a constant
rate, a piecewise-constant schedule, and both kinds of weight decay, alone and together.
"""

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from trajectory import floatx, run

# Boundaries on either side of the 50-step checkpoint, so a shifted switch shows at step 50.
SCHEDULE = ((40, 120), (0.05, 0.02, 0.005))

CASES = {
    "constant": (0.05, {}),
    "schedule": (SCHEDULE, {}),
    "coupled_weight_decay": (0.05, dict(coupled_weight_decay=0.1)),
    "weight_decay": (0.05, dict(weight_decay=0.1)),
    # Keras's decoupled decay is scaled by the scheduled rate.
    "weight_decay_schedule": (SCHEDULE, dict(weight_decay=0.1)),
    # The L2 term reads the weights the gradient was taken at, not the decayed ones (which
    # would move this trajectory by up to 2e-4).
    "both_weight_decays": (SCHEDULE, dict(coupled_weight_decay=0.1, weight_decay=0.1)),
    # Keras's float32 rounding of the decay (the default) is a no-op for 2**-4.
    "keras_precision": (
        SCHEDULE,
        dict(weight_decay=0.0625, coupled_weight_decay=0.125, exact_hyperparameters=False),
    ),
}


@pytest.mark.parametrize("lr, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(lr, flags):
    nr.compare(to.GradientDescent, nr.gradient_descent, lr, nr.RTOL, **flags)


def test_each_step_uses_the_rate_scheduled_for_it():
    """Step ``t + 1`` (``t`` updates applied) moves by exactly ``lr_t * g``: the rate switches
    after ``iterations`` passes a boundary, not one step early or late. (The ratio carries the
    rounding of ``theta`` relative to the step, hence 1e-9; the rates differ by 2x.)"""
    boundaries, values = (2, 4), (0.125, 0.0625, 0.03125)
    steps = range(7)
    with floatx("float64"):
        keras_lr, _ = nr.rate_pair((boundaries, values))
        states = run(to.GradientDescent(keras_lr), checkpoints=steps[1:])
    params, targets, curvatures = initial_problem()
    states[0] = params
    for t in steps[:-1]:
        expected = values[int(np.sum(t > np.asarray(boundaries)))]
        for before, after, y, c in zip(states[t], states[t + 1], targets, curvatures):
            np.testing.assert_allclose((before - after) / gradient(before, y, c), expected, 1e-9)
