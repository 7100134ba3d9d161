"""RMSprop against the NumPy reference (Tieleman & Hinton 2012; centered per Graves 2013).

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200: plain and
centered, without momentum and with momentum on the step (Graves, Keras) or on the scaled
gradient (PyTorch), epsilon inside and outside the root, each under a constant rate and a
schedule (the momentum forms coincide under a constant rate); then TF1's accumulator start,
another ``rho`` and both kinds of weight decay.
"""

import itertools

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from trajectory import floatx, run

SCHEDULE = ((40, 120), (0.01, 0.004, 0.001))
RATES = {"constant": 0.01, "schedule": SCHEDULE}
NAMES = dict(momentum_buffer="form")
MOMENTUM = {
    "no_momentum": dict(),
    "step": dict(momentum=0.9),
    "gradient": dict(momentum=0.9, momentum_buffer="gradient"),
}
# RMSprop is unstable at an optimum once its average has decayed: a coordinate whose gradient
# vanishes sees its denominator d shrink towards sqrt(eps) (or eps), and when lr * curvature / d
# exceeds 2 it oscillates with growing amplitude, turning the 1e-16 rounding differences of two
# correct implementations into 1e-3 within 30 steps (with the defaults, lr=0.01, rho=0.9). The
# epsilons below keep d >= ~lr (curvatures here are <= ~2.3), so the comparison stays exact;
# being large, they also make their placement move the trajectory by ~1e-3.
EPSILON = {True: 1e-3, False: 1e-2}
CASES = {
    f"{name}-centered={centered}-inside_sqrt={inside}-{rate}": (
        RATES[rate],
        dict(
            MOMENTUM[name], centered=centered, epsilon_inside_sqrt=inside, epsilon=EPSILON[inside]
        ),
    )
    for name, centered, inside, rate in itertools.product(
        MOMENTUM, (False, True), (True, False), RATES
    )
}
# With the default epsilon, a slow average (rho=0.99) and a smaller rate keep d above lr instead.
SLOW = dict(rho=0.99, epsilon=1e-7)
CASES.update(
    {
        "default_epsilon": (0.003, dict(SLOW)),
        "default_epsilon_centered_outside": (
            0.003,
            dict(SLOW, centered=True, epsilon_inside_sqrt=False, momentum=0.5),
        ),
        "tf1_accumulator": (0.003, dict(SLOW, initial_accumulator_value=1.0, momentum=0.5)),
        "centered_accumulator_schedule": (
            SCHEDULE,
            dict(initial_accumulator_value=0.5, rho=0.75, centered=True, epsilon=1e-3),
        ),
        "coupled_weight_decay": (0.003, dict(SLOW, coupled_weight_decay=0.05, momentum=0.9)),
        "weight_decay_schedule": (
            SCHEDULE,
            dict(weight_decay=0.1, centered=True, epsilon=1e-3, momentum=0.5),
        ),
        # Keras's float32 rounding of the start value (the default) is a no-op for 0.5.
        "keras_precision": (
            SCHEDULE,
            dict(initial_accumulator_value=0.5, epsilon=1e-3, exact_hyperparameters=False),
        ),
    }
)


@pytest.mark.parametrize("lr, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(lr, flags):
    nr.compare(to.RMSprop, nr.rmsprop, lr, nr.RTOL, numpy_names=NAMES, **flags)


@pytest.mark.parametrize("centered", [False, True])
def test_first_step_is_lr_over_root_of_the_first_average(centered):
    """From zero state, ``n = (1 - rho) g**2`` and, centered, ``gbar = (1 - rho) g`` so
    ``n - gbar**2 = rho (1 - rho) g**2``: every coordinate moves by ``lr / sqrt(1 - rho)``
    (``lr / sqrt(rho (1 - rho))`` centered) in the direction of ``-g``, whatever ``|g|``.
    (Epsilon 1e-14 shifts this by < 1e-8 for the smallest gradients here.)"""
    lr, rho = 0.01, 0.75
    with floatx("float64"):
        optimizer = to.RMSprop(lr, rho=rho, centered=centered, epsilon=1e-14)
        (moved,) = run(optimizer, (1,)).values()
    expected = lr / np.sqrt(rho * (1 - rho) if centered else 1 - rho)
    for p0, p1, y, c in zip(*initial_problem()[:1], moved, *initial_problem()[1:]):
        np.testing.assert_allclose((p0 - p1) * np.sign(gradient(p0, y, c)), expected, 1e-7)
