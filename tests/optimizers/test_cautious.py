"""``cautious=True`` (Liang et al. 2024, "Cautious Optimizers", arXiv:2411.16085) for Adam,
AdamW and Lion, against timm 1.0.31's ``caution=True`` (recorded once by
``tests/fixtures/record_cautious.py``: 200 float64 steps of ``tests/reference_problem.py`` on
four shapes, the last 16x8).

The mask is discontinuous where ``m * g`` (Adam) or ``sign(c) * g`` (Lion) crosses zero. Once
a coordinate has converged to rounding level its gradient's sign, and the mask with it, is
decided by rounding: at a rate of 0.05 the AMSGrad case got there by step 100 and parted from
timm by 7e-5 (measured). The rates below keep every coordinate short of that within 200 steps
(measured largest difference 9.5e-15), so a flipped component shows as a jump far above the
tolerance.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import initial_problem
from trajectory import assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("cautious")
SHAPES = tuple(tuple(s) for s in RECORDED.manifest["shapes"])
# Both sides compute the same float64 formulas in a different operation order (timm: lerp,
# mask applied before the division, decay as ``theta * (1 - lr wd)``): a few ulps per step on
# a contracting problem. Measured largest relative difference over the cases: 9.5e-15.
RTOL = 1e-12

# config id -> (tfoptim class, kwargs): timm's arguments in tfoptim's names. timm adds epsilon
# to the bias-corrected root (bias_corrected_epsilon=True) and keeps every hyperparameter
# exact.
CASES = {
    "adamw_cautious": (
        to.AdamW,
        dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.01),
    ),
    "adam_cautious_amsgrad": (
        to.Adam,
        dict(learning_rate=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-6, amsgrad=True),
    ),
    "lion_cautious": (to.Lion, dict(learning_rate=0.003, beta_1=0.9, beta_2=0.99, weight_decay=0.1)),
    "lion_cautious_betas": (to.Lion, dict(learning_rate=0.001, beta_1=0.95, beta_2=0.98)),
}


def make(config_id, cautious=True, **overrides):
    klass, kwargs = CASES[config_id]
    extra = dict(bias_corrected_epsilon=True) if klass is not to.Lion else {}
    return klass(cautious=cautious, exact_hyperparameters=True, **extra, **kwargs, **overrides)


def relative_difference(actual, expected):
    return max(np.max(np.abs(a - e)) / np.max(np.abs(e)) for a, e in zip(actual, expected))


def test_fixture_problem_regenerates():
    params, targets, curvatures = initial_problem(seed=RECORDED.manifest["problem_seed"], shapes=SHAPES)
    for i, (p, t, c) in enumerate(zip(params, targets, curvatures)):
        np.testing.assert_array_equal(RECORDED.arrays[f"problem/param{i}"], p)
        np.testing.assert_array_equal(RECORDED.arrays[f"problem/target{i}"], t)
        np.testing.assert_array_equal(RECORDED.arrays[f"problem/curvature{i}"], c)


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_follows_timm(config_id):
    with floatx("float64"):
        ours = run(make(config_id), RECORDED.steps, shapes=SHAPES)
        plain = run(make(config_id, cautious=False), RECORDED.steps, shapes=SHAPES)
    for step in RECORDED.steps:
        expected = RECORDED.expected(config_id, step)
        assert relative_difference(ours[step], expected) <= RTOL, step
    # The mask matters on this problem: without it the trajectory is elsewhere.
    final = RECORDED.steps[-1]
    assert relative_difference(plain[final], RECORDED.expected(config_id, final)) > 1e-3


@pytest.mark.parametrize("config_id", ["adamw_cautious", "lion_cautious"])
def test_fast_path_follows_slow_path(config_id):
    """The fused XLA call computes the mask's mean per variable, and cautious rules keep their
    small variables out of the flat groups (the mean would run over the group)."""
    optimizer = assert_fast_path_follows_slow_path(lambda fast: make(config_id, fast_path=fast), 20, 1e-12)
    assert not optimizer.elementwise and optimizer._groups == []


def test_mask_and_rescaling_on_one_step():
    """One step from zero moments: Adam's first ``m`` is ``(1 - beta_1) g``, which agrees with
    ``g`` everywhere but where ``g = 0``: there the mask is 0 and the others are scaled by
    ``1 / mean(mask)``. Lion's first direction is ``sign(g)``, the same mask."""
    g = np.array([1.0, -2.0, 0.0, 0.5])
    for klass in (to.Adam, to.Lion):
        steps = {}
        for cautious in (False, True):
            variable = keras.Variable(np.zeros(4), dtype="float64")
            klass(learning_rate=0.1, cautious=cautious).apply([g], [variable])
            steps[cautious] = variable.numpy()
        np.testing.assert_allclose(steps[True], steps[False] * 4 / 3, rtol=1e-15)


def test_lazy_adam_refuses_cautious():
    with pytest.raises(ValueError, match="cautious"):
        to.LazyAdam(cautious=True)


@pytest.mark.parametrize("klass", [to.Adam, to.AdamW, to.Lion])
def test_config_round_trip(klass):
    optimizer = klass(cautious=True)
    assert optimizer.get_config()["cautious"] is True
    assert klass.from_config(optimizer.get_config()).cautious is True
