"""SGD against the NumPy reference: momentum as a buffer of steps (Sutskever et al., Keras) or
of gradients (Polyak's heavy ball as in PyTorch, with dampening), plain and Nesterov.

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200. Every
momentum variant runs under a constant rate and under a piecewise-constant schedule: the two
buffer forms coincide while the rate is constant, so only the schedule tells them apart.
"""

import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from trajectory import assert_close, floatx, run

SCHEDULE = ((40, 120), (0.02, 0.008, 0.002))
RATES = {"constant": 0.02, "schedule": SCHEDULE}
NAMES = dict(momentum_buffer="form")

VARIANTS = {
    "no_momentum": dict(),
    "step": dict(momentum=0.9),
    "step_nesterov": dict(momentum=0.9, nesterov=True),
    "gradient": dict(momentum=0.9, momentum_buffer="gradient"),
    "gradient_nesterov": dict(momentum=0.9, nesterov=True, momentum_buffer="gradient"),
    "gradient_dampening": dict(momentum=0.9, dampening=0.25, momentum_buffer="gradient"),
}
# Weight decay and precision, on momentum rules.
OTHER = {
    "coupled_weight_decay": (0.02, dict(momentum=0.9, coupled_weight_decay=0.05)),
    "weight_decay_schedule": (SCHEDULE, dict(momentum=0.9, weight_decay=0.1)),
    "both_weight_decays": (
        SCHEDULE,
        dict(momentum=0.9, momentum_buffer="gradient", coupled_weight_decay=0.05, weight_decay=0.1),
    ),
    # Keras's float32 rounding of the momentum (the default) is a no-op for 0.875.
    "keras_precision": (
        SCHEDULE,
        dict(momentum=0.875, nesterov=True, weight_decay=0.0625, exact_hyperparameters=False),
    ),
}


@pytest.mark.parametrize("lr", RATES.values(), ids=RATES.keys())
@pytest.mark.parametrize("flags", VARIANTS.values(), ids=VARIANTS.keys())
def test_matches_reference(flags, lr):
    nr.compare(to.SGD, nr.sgd, lr, nr.RTOL, numpy_names=NAMES, **flags)


@pytest.mark.parametrize("lr, flags", OTHER.values(), ids=OTHER.keys())
def test_other_cases_match_reference(lr, flags):
    nr.compare(to.SGD, nr.sgd, lr, nr.RTOL, numpy_names=NAMES, **flags)


def test_buffer_forms_differ_only_under_a_schedule():
    """``v = -lr * b`` holds while the rate is constant; after the rate drops, the "step"
    buffer still carries steps taken at the old rate, the "gradient" buffer is rescaled."""

    def final(lr, form):
        with floatx("float64"):
            keras_lr, _ = nr.rate_pair(lr)
            return run(to.SGD(keras_lr, momentum=0.9, momentum_buffer=form))[200]

    assert_close(final(0.02, "step"), final(0.02, "gradient"), nr.RTOL)
    with pytest.raises(AssertionError):
        assert_close(final(SCHEDULE, "step"), final(SCHEDULE, "gradient"), 1e-6)


def test_dampening_spares_the_first_gradient():
    """PyTorch seeds the buffer with the undampened gradient: step 1 moves by ``lr * g0``,
    step 2 by ``lr * (momentum * g0 + (1 - dampening) * g1)``. (Differences of parameters
    carry their rounding relative to one small step, hence 1e-9.)"""
    lr, momentum, dampening = 0.02, 0.9, 0.5
    with floatx("float64"):
        optimizer = to.SGD(
            lr,
            momentum=momentum,
            dampening=dampening,
            momentum_buffer="gradient",
            exact_hyperparameters=True,
        )
        states = run(optimizer, checkpoints=(1, 2))
    params, targets, curvatures = initial_problem()
    for p0, p1, p2, y, c in zip(params, states[1], states[2], targets, curvatures):
        g0, g1 = gradient(p0, y, c), gradient(p1, y, c)
        np.testing.assert_allclose(p0 - p1, lr * g0, 1e-9)
        np.testing.assert_allclose(p1 - p2, lr * (momentum * g0 + (1 - dampening) * g1), 1e-9)
