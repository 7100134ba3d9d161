"""MADGRAD follows the authors' ``madgrad`` package (1.3, facebookresearch).

References recorded once by ``tests/fixtures/record_modern_a.py`` (float64, 200 steps of
``tests/reference_problem.py``): the defaults, no momentum (``x0`` recomputed each step), other
momentum and epsilon, and both weight decays: the official ``weight_decay`` is tfoptim's
``coupled_weight_decay``, the official ``decouple_decay=True`` tfoptim's ``weight_decay``.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from trajectory import assert_fast_path_follows_slow_path

RECORDED = Recorded("modern_a")
# Same formulas in another order: float64 rounding over 200 steps stays below 1e-12 relative...
RTOL = 1e-12
# ...except without momentum: the iterate oscillates about param1's optimum from step ~50 and
# the 1e-16 differences of ``v**(1/3)`` (TF's and torch's pow) grow to ~5e-10 by step 100.
LOOSER = {"madgrad_no_momentum": 1e-9, "madgrad_no_momentum_decoupled_wd": 1e-9}


def from_reference(kwargs):
    """``madgrad.MADGRAD`` arguments as tfoptim's."""
    kwargs = dict(kwargs)
    decay = "weight_decay" if kwargs.pop("decouple_decay", False) else "coupled_weight_decay"
    names = {"lr": "learning_rate", "eps": "epsilon", "momentum": "momentum", "weight_decay": decay}
    return {names[k]: v for k, v in kwargs.items()}


@pytest.mark.parametrize("config_id", RECORDED.config_ids("MADGRAD"))
def test_matches_reference(config_id):
    kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
    make = lambda: to.MADGRAD(exact_hyperparameters=True, **kwargs)  # noqa: E731
    assert RECORDED.relative_difference(config_id, make) <= LOOSER.get(config_id, RTOL)


@pytest.mark.parametrize("momentum, slots", [(0.9, 3), (0.0, 2)])
def test_initial_point_slot_only_with_momentum(momentum, slots):
    variable = keras.Variable(np.ones(4))
    optimizer = to.MADGRAD(momentum=momentum)
    optimizer.build([variable])
    assert sum(tuple(v.shape) == (4,) for v in optimizer.variables) == slots


def test_zero_epsilon_and_zero_gradient_give_a_zero_step():
    """With ``epsilon=0`` a coordinate that has seen only zero gradients has ``v = 0``: the
    official code makes its step 0 (not 0/0)."""
    variable = keras.Variable(np.array([1.0, 2.0]))
    optimizer = to.MADGRAD(0.1, momentum=0.0, epsilon=0.0)
    for _ in range(3):
        optimizer.apply([np.array([0.0, 1.0])], [variable])
    assert variable.numpy()[0] == 1.0 and np.isfinite(variable.numpy()[1])


# Without momentum MADGRAD's effective step grows like sqrt(t) and, among the 50,000
# coordinates, some orbit their optimum chaotically from step ~20: XLA's reassociation (1e-16)
# grows to 1e-2 by step 100. Ten steps still compare every operation of the rule. With momentum
# the orbits start later but grow too: any last-bit difference (XLA's on another CPU, or a rate
# moved by 1-8 ulps) reaches ~1e-13 at step 100 and 5e-12 to 6e-11 at step 200, so the
# comparison stops at 100. 1e-10: XLA's float64 pow differs from TF's kernel in the last bit,
# and ``x0 - s / v**(1/3)`` cancels.
# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize("momentum, steps", [(0.9, 100), (0.0, 10)])
def test_fast_path_follows_the_slow_path(momentum, steps):
    kwargs = dict(learning_rate=0.01, momentum=momentum, weight_decay=0.05)
    assert_fast_path_follows_slow_path(lambda fast: to.MADGRAD(fast_path=fast, **kwargs), steps, 1e-10)


INVALID = [
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(epsilon=-1e-6), "epsilon"),
    (dict(learning_rate=-0.01), "learning_rate"),
    (dict(weight_decay=-0.1), "weight_decay"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.MADGRAD(**kwargs)
