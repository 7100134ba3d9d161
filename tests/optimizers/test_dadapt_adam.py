"""DAdaptAdam follows the authors' ``dadaptation`` 3.2 ``DAdaptAdam`` (Defazio & Mishchenko).

The references were recorded once by ``tests/fixtures/record_lr_free.py`` (float64, 200 steps of
the reference problem, checkpoints 1, 2, 10, 50, 100, 200); torch is not needed here. Each
config maps the official arguments to tfoptim's: ``lr`` -> ``learning_rate``, ``betas`` ->
``beta_1, beta_2``, ``eps`` -> ``epsilon``, ``weight_decay`` with ``decouple=True`` ->
``weight_decay``, ``weight_decay`` with the official default ``decouple=False`` ->
``coupled_weight_decay``; the rest keep their names.
"""

import math

import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from tfoptim.schedules import LinearWarmup

RECORDED = Recorded("lr_free")
CONFIGS = {
    "dadapt_adam_defaults": {},
    "dadapt_adam_decoupled_wd": dict(weight_decay=0.1),
    "dadapt_adam_coupled_wd": dict(coupled_weight_decay=0.1),
    "dadapt_adam_bias_correction": dict(use_bias_correction=True),
    "dadapt_adam_growth_rate": dict(growth_rate=1.05),
    "dadapt_adam_warmup": dict(learning_rate=LinearWarmup(1.0, 16)),
    "dadapt_adam_betas_eps_d0": dict(
        learning_rate=0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-3, d0=1e-4
    ),
}
# The same formulas in another order (torch's addcmul/addcdiv, its dot products): float64
# rounding, fed back through d (a ratio of sums over every element) each step, stays below
# 1e-12 relative; measured worst 2.3e-13.
RTOL = 1e-12
# beta_2 = 0.99: near the optimum sqrt(v) decays faster than the steps, the iterates oscillate
# and amplify rounding (as in Adam's fast-beta_2 case): measured 1.6e-11 at step 200.
LOOSER = {"dadapt_adam_betas_eps_d0": 1e-10}


def test_every_recorded_config_is_checked():
    assert set(CONFIGS) == set(RECORDED.config_ids("DAdaptAdam"))


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_matches_official_trajectory(config_id):
    error = RECORDED.relative_difference(
        config_id, lambda: to.DAdaptAdam(exact_hyperparameters=True, **CONFIGS[config_id])
    )
    assert error <= LOOSER.get(config_id, RTOL), f"{config_id}: {error:.2e}"


def test_defaults_are_the_official_defaults():
    config = to.DAdaptAdam().get_config()
    expected = dict(
        learning_rate=1.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, d0=1e-6,
        growth_rate=math.inf, use_bias_correction=False, weight_decay=None,
        coupled_weight_decay=0.0,
    )
    assert {k: config[k] for k in expected} == expected


INVALID = [
    (dict(beta_1=-0.1), "beta_1"),
    (dict(beta_2=1.0), "beta_2"),
    (dict(epsilon=-1e-8), "epsilon"),
    (dict(d0=-1e-6), "d0"),
    (dict(growth_rate=0.99), "growth_rate"),
    (dict(learning_rate=float("inf")), "learning_rate"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.DAdaptAdam(**kwargs)
