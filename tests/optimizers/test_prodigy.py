"""Prodigy follows the authors' ``prodigyopt`` 1.1.2 (Mishchenko & Defazio).

The references were recorded once by ``tests/fixtures/record_lr_free.py`` (float64, 200 steps of
the reference problem, checkpoints 1, 2, 10, 50, 100, 200); torch is not needed here. Each
config maps the official arguments to tfoptim's: ``lr`` -> ``learning_rate``, ``betas`` ->
``beta_1, beta_2``, ``beta3`` -> ``beta_3``, ``eps`` -> ``epsilon``, ``weight_decay`` (with the
official default ``decouple=True``) -> ``weight_decay``, ``weight_decay`` with
``decouple=False`` -> ``coupled_weight_decay``; the rest keep their names.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from tfoptim.schedules import LinearWarmup

RECORDED = Recorded("lr_free")
CONFIGS = {
    "prodigy_defaults": {},
    "prodigy_d_coef": dict(d_coef=0.5),
    "prodigy_bias_correction": dict(use_bias_correction=True),
    "prodigy_safeguard_warmup": dict(learning_rate=LinearWarmup(1.0, 16), safeguard_warmup=True),
    "prodigy_warmup": dict(learning_rate=LinearWarmup(1.0, 16)),
    "prodigy_decoupled_wd": dict(weight_decay=0.1),
    "prodigy_coupled_wd": dict(coupled_weight_decay=0.1),
    "prodigy_growth_rate": dict(growth_rate=1.02),
    "prodigy_d0": dict(d0=1e-3),
    "prodigy_betas_beta3_eps": dict(
        learning_rate=0.5, beta_1=0.8, beta_2=0.99, beta_3=0.9, epsilon=1e-3
    ),
    "prodigy_no_momentum": dict(beta_1=0.0),
}
# The same formulas in another order (torch's addcmul/addcdiv, its dot products): float64
# rounding, fed back through d (a ratio of sums over every element) each step, stays below
# 1e-12 relative; measured worst 4e-13.
RTOL = 1e-12
LOOSER = {
    # Decoupled decay makes the optimum move with d: measured 1.5e-12 (step 50).
    "prodigy_decoupled_wd": 1e-11,
    # beta_2 = 0.99: near the optimum sqrt(v) decays faster than the steps, the iterates
    # oscillate and amplify rounding (as in Adam's fast-beta_2 case): measured 1.0e-10 at 200.
    "prodigy_betas_beta3_eps": 1e-9,
}


def test_every_recorded_config_is_checked():
    assert set(CONFIGS) == set(RECORDED.config_ids("Prodigy"))


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_matches_official_trajectory(config_id):
    error = RECORDED.relative_difference(
        config_id, lambda: to.Prodigy(exact_hyperparameters=True, **CONFIGS[config_id])
    )
    assert error <= LOOSER.get(config_id, RTOL), f"{config_id}: {error:.2e}"


def test_defaults_are_the_official_defaults():
    config = to.Prodigy().get_config()
    expected = dict(
        learning_rate=1.0, beta_1=0.9, beta_2=0.999, beta_3=None, epsilon=1e-8, d0=1e-6,
        d_coef=1.0, growth_rate=math.inf, use_bias_correction=False, safeguard_warmup=False,
        weight_decay=None, coupled_weight_decay=0.0,
    )
    assert {k: config[k] for k in expected} == expected


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(beta_3=1.0), "beta_3"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(d0=0.0), "d0"),
    (dict(d_coef=-1.0), "d_coef"),
    (dict(growth_rate=0.5), "growth_rate"),
    (dict(growth_rate=float("nan")), "growth_rate"),
    (dict(learning_rate=-1.0), "learning_rate"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.Prodigy(**kwargs)


def test_start_point_is_kept_when_the_first_apply_builds_inside_a_traced_step():
    """``x0`` (the ``start`` slot) holds the weights of the first update, also when ``build``
    runs inside a ``tf.function`` (as in ``fit`` on a model built earlier): it must not be
    re-read at every step."""
    initial = np.array([1.0, -2.0, 3.0], "float32")
    variable = keras.Variable(initial)
    optimizer = to.Prodigy()

    @tf.function
    def step():
        optimizer.apply([variable.value - 0.5], [variable])

    for _ in range(3):
        step()
    (start,) = optimizer._starts
    np.testing.assert_array_equal(start.numpy(), initial)
    assert not np.array_equal(variable.numpy(), initial)
