"""COCOB-Backprop against TFA's ``COCOB`` (0.23.0 on TF 2.15.1), recorded by
tests/fixtures/record_tfa_successors_b.py: float64, 200 steps of the reference problem."""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import initial_problem
from trajectory import assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("tfa_successors_b")


@pytest.mark.parametrize("config_id", RECORDED.config_ids("COCOB"))
def test_matches_tfa(config_id):
    """With tfoptim's defaults (learning_rate=1.0): the same arithmetic in another order
    (``theta + (x' - x)`` for TFA's ``theta - x + x'``), 1e-16 per step."""
    kwargs = RECORDED.manifest["configs"][config_id]["kwargs"]
    assert RECORDED.relative_difference(config_id, lambda: to.COCOB(**kwargs)) <= 1e-14


def test_learning_rate_scales_the_moves():
    """From the same start, the first move at rate 0.25 is a quarter of the rule's."""
    params = initial_problem()[0]
    with floatx("float64"):
        full = run(to.COCOB(), (1,))[1]
        quarter = run(to.COCOB(0.25), (1,))[1]
    for p, f, q in zip(params, full, quarter):
        np.testing.assert_allclose(q - p, 0.25 * (f - p), rtol=1e-12)


def test_zero_gradients_leave_coordinates_in_place():
    variable = keras.Variable(np.array([1.0, -2.0]))
    optimizer = to.COCOB()
    for _ in range(3):
        optimizer.apply([np.zeros(2, "float32")], [variable])
    np.testing.assert_array_equal(variable.numpy(), [1.0, -2.0])


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
def test_fast_path_follows_the_slow_path():
    assert_fast_path_follows_slow_path(lambda fast: to.COCOB(0.5, alpha=10.0, fast_path=fast), 200, 1e-10)


@pytest.mark.parametrize(
    "kwargs, argument",
    [(dict(alpha=0.5), "alpha"), (dict(epsilon=0.0), "epsilon"), (dict(learning_rate=-1.0), "learning_rate")],
)
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.COCOB(**kwargs)
