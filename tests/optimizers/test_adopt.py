"""ADOPT follows the official code's clipped version (iShohei220/adopt, Nov. 2024).

References recorded once by ``tests/fixtures/record_modern_a.py`` (float64, 200 steps of
``tests/reference_problem.py``) from a transcription of the official ``_single_tensor_adopt``,
which the recorder checks against ``pytorch_optimizer.ADOPT`` (4.1.0) given the official clip
index: the defaults, no clip, other betas and epsilon, and both weight decays (the official
``decouple=False`` is tfoptim's ``coupled_weight_decay``, ``decouple=True`` its ``weight_decay``).
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from trajectory import assert_fast_path_follows_slow_path

RECORDED = Recorded("modern_a")
# Same formulas in another order (torch's lerp_): float64 rounding over 200 steps stays below
# 1e-15 relative.
RTOL = 1e-12


def from_reference(kwargs):
    """Official ``ADOPT`` arguments as tfoptim's."""
    kwargs = dict(kwargs)
    decay = "weight_decay" if kwargs.pop("decouple", False) else "coupled_weight_decay"
    ours = {}
    if "betas" in kwargs:
        ours.update(zip(("beta_1", "beta_2"), kwargs.pop("betas")))
    if "clip_lambda" in kwargs:
        assert kwargs.pop("clip_lambda") is None
        ours["clip_exponent"] = None
    names = {"lr": "learning_rate", "eps": "epsilon", "weight_decay": decay}
    ours.update({names[k]: v for k, v in kwargs.items()})
    return ours


@pytest.mark.parametrize("config_id", RECORDED.config_ids("ADOPT"))
def test_matches_reference(config_id):
    kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
    make = lambda: to.ADOPT(exact_hyperparameters=True, **kwargs)  # noqa: E731
    assert RECORDED.relative_difference(config_id, make) <= RTOL


def test_first_step_only_initialises_the_second_moment():
    """Step 1 sets ``v = g**2`` and leaves the weights, decoupled decay included; step 2 moves
    each coordinate by ``lr * (1 - beta_1) * clip(g / |g_1|, 1)``."""
    variable = keras.Variable(np.array([1.0, -2.0]))
    optimizer = to.ADOPT(0.1, beta_1=0.5, weight_decay=0.5)
    optimizer.apply([np.array([0.5, 4.0])], [variable])
    np.testing.assert_array_equal(variable.numpy(), [1.0, -2.0])
    (v,) = [s for s in optimizer.variables if s.path.endswith("velocity")]
    np.testing.assert_allclose(v.numpy(), [0.25, 16.0])
    optimizer.apply([np.array([2.0, 1.0])], [variable])
    decayed = np.array([1.0, -2.0]) * (1 - 0.1 * 0.5)
    np.testing.assert_allclose(variable.numpy(), decayed - 0.1 * 0.5 * np.array([1.0, 0.25]), rtol=1e-6)


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize("clip_exponent", [0.25, None])
def test_fast_path_follows_the_slow_path(clip_exponent):
    """Same rule, fused by XLA or not, to rounding. ``beta_2=0.99``: with the default 0.9999 and
    weight decay some of the 50,000 coordinates orbit their optimum chaotically after ~100 steps
    and XLA's reassociation (1e-16) grows to 1e-3 there. ``epsilon=1e-3``: with the default 1e-6,
    coordinates that settle at their optimum have ``sqrt(v) < epsilon``, where ``g / epsilon``
    turns a last-bit difference into a clipped step within a few steps; the result then depends
    on where the two paths round (a rate moved by 5 ulps moves the trajectory by 3e-6 at step
    100). With 1e-3 a rate moved by 1-8 ulps moves it by 2e-14 at most."""
    kwargs = dict(learning_rate=0.01, beta_2=0.99, clip_exponent=clip_exponent, weight_decay=0.05,
                  epsilon=1e-3)
    assert_fast_path_follows_slow_path(lambda fast: to.ADOPT(fast_path=fast, **kwargs), 200, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(clip_exponent=0.0), "clip_exponent"),
    (dict(clip_exponent="sqrt"), "clip_exponent"),
    (dict(weight_decay=-0.1), "weight_decay"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.ADOPT(**kwargs)
