"""Adagrad against the NumPy reference (Duchi, Hazan & Singer 2011, diagonal form).

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200: epsilon inside
(Keras) and outside (the paper's delta, PyTorch) the root, with and without an initial
accumulator, TF1's epsilon-free form, a schedule and both kinds of weight decay.
"""

import itertools

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from trajectory import floatx, run

SCHEDULE = ((40, 120), (0.1, 0.04, 0.01))
# epsilon=1e-3 so that where it sits moves the trajectory well above the tolerance.
START = {
    "accumulator": dict(initial_accumulator_value=0.1, epsilon=1e-3),
    "no_accumulator": dict(initial_accumulator_value=0.0, epsilon=1e-3),
}
CASES = {
    f"{start}-inside_sqrt={inside}-{'schedule' if schedule else 'constant'}": (
        SCHEDULE if schedule else 0.1,
        dict(START[start], epsilon_inside_sqrt=inside),
    )
    for start, inside, schedule in itertools.product(START, (True, False), (False, True))
}
CASES.update(
    {
        "defaults": (0.1, {}),
        "tf1_no_epsilon": (0.1, dict(epsilon=0.0, initial_accumulator_value=0.25)),
        "coupled_weight_decay": (0.1, dict(coupled_weight_decay=0.05)),
        "weight_decay_schedule": (SCHEDULE, dict(weight_decay=0.1, epsilon_inside_sqrt=False)),
        # Keras's float32 rounding of the start value (the default) is a no-op for 0.125.
        "keras_precision": (
            SCHEDULE,
            dict(initial_accumulator_value=0.125, weight_decay=0.0625, exact_hyperparameters=False),
        ),
    }
)


@pytest.mark.parametrize("lr, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(lr, flags):
    nr.compare(to.Adagrad, nr.adagrad, lr, nr.RTOL, **flags)


def test_effective_rate_shrinks_as_squared_gradients_accumulate():
    """Per coordinate, step ``t`` moves by ``g_t * lr / sqrt(a0 + g_0**2 + ... + g_t**2)``
    (epsilon 0): the effective rate starts at ``lr / sqrt(a0 + g_0**2)`` and decreases
    strictly while gradients are non-zero. (Ratios of parameter differences to one small step
    carry ``theta``'s rounding, hence 1e-9.)"""
    lr, a0, steps = 0.1, 0.25, 20
    with floatx("float64"):
        states = run(to.Adagrad(lr, initial_accumulator_value=a0, epsilon=0.0), range(1, steps))
    params, targets, curvatures = initial_problem()
    states[0] = params
    for i, (y, c) in enumerate(zip(targets, curvatures)):
        grads = [gradient(states[t][i], y, c) for t in range(steps - 1)]
        rates = [(states[t][i] - states[t + 1][i]) / grads[t] for t in range(steps - 1)]
        np.testing.assert_allclose(rates[0], lr / np.sqrt(a0 + grads[0] ** 2), 1e-9)
        np.testing.assert_allclose(rates, lr / np.sqrt(a0 + np.cumsum(np.square(grads), 0)), 1e-9)
        assert np.all(np.diff(rates, axis=0) < 1e-9 * np.abs(rates[1:]))
