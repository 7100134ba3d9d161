"""Adan follows ``pytorch_optimizer.Adan`` (4.1.0), which steps as sail-sg/Adan's official
``_single_tensor_adan`` (checked to 1e-15 when the fixtures were recorded).

References recorded once by ``tests/fixtures/record_modern_a.py`` (float64, 200 steps of
``tests/reference_problem.py``): the defaults, other betas and epsilon, and both weight-decay
forms (the proximal default and ``no_prox``).
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from trajectory import assert_fast_path_follows_slow_path, floatx

RECORDED = Recorded("modern_a")
# Same formulas in another order (torch's lerp_ and addcdiv_): float64 rounding over 200 steps
# stays below 3e-15 relative.
RTOL = 1e-12


def from_reference(kwargs):
    """``pytorch_optimizer.Adan`` arguments as tfoptim's."""
    names = {"lr": "learning_rate", "eps": "epsilon", "weight_decay": "weight_decay",
             "weight_decouple": "no_prox"}
    ours = {names[k]: v for k, v in kwargs.items() if k != "betas"}
    if "betas" in kwargs:
        ours.update(zip(("beta_1", "beta_2", "beta_3"), kwargs["betas"]))
    return ours


@pytest.mark.parametrize("config_id", RECORDED.config_ids("Adan"))
def test_matches_reference(config_id):
    kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
    make = lambda: to.Adan(exact_hyperparameters=True, **kwargs)  # noqa: E731
    assert RECORDED.relative_difference(config_id, make) <= RTOL


def test_first_step_has_no_gradient_difference():
    """With ``g_prev = g_1`` the difference momentum stays 0 at step 1, then holds
    ``(1 - beta_2) (g_2 - g_1)``."""
    with floatx("float64"):
        variable = keras.Variable(np.array([1.0, -2.0]))
        optimizer = to.Adan(0.1, beta_2=0.5, exact_hyperparameters=True)
        optimizer.apply([np.array([3.0, 1.0])], [variable])
        (difference,) = [v for v in optimizer.variables if v.path.endswith("difference_momentum")]
        np.testing.assert_array_equal(difference.numpy(), [0.0, 0.0])
        optimizer.apply([np.array([1.0, 2.0])], [variable])
        np.testing.assert_allclose(difference.numpy(), [-1.0, 0.5], rtol=1e-15)


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize("no_prox", [False, True])
def test_fast_path_follows_the_slow_path(no_prox):
    assert_fast_path_follows_slow_path(lambda fast: to.Adan(0.01, weight_decay=0.1, no_prox=no_prox, fast_path=fast), 200, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(beta_3=1.5), "beta_3"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(weight_decay=-0.1), "weight_decay"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.Adan(**kwargs)
