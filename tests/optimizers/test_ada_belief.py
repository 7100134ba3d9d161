"""AdaBelief follows the authors' ``adabelief_pytorch`` 0.2.1 and TensorFlow Addons 0.23.0's
``AdaBelief``, recorded once by ``tests/fixtures/record_tfa_successors_a.py`` (float64, 200 steps
of ``reference_problem``): rectified and plain, epsilon before and after the bias correction,
with and without the momentum step below the threshold, AMSGrad, both kinds of weight decay,
TFA's warm-up.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded, tfa_float32 as f32
from trajectory import assert_fast_path_follows_slow_path, floatx

RECORDED = Recorded("tfa_successors_a")
# The same formulas evaluated in another order: float64 rounding over 200 steps stays below
# 3e-15 relative.
RTOL = 1e-12
TFA = dict(learning_rate=f32(0.01), beta_1=f32(0.9), beta_2=f32(0.999), bias_corrected_epsilon=True)
CASES = {
    "official_adabelief": dict(learning_rate=0.01),
    "official_adabelief_eps_not_degenerated": dict(
        learning_rate=0.01, epsilon=1e-3, degenerated_to_sgd=False
    ),
    "official_adabelief_plain_amsgrad_wd": dict(
        learning_rate=0.01, epsilon=1e-3, rectify=False, amsgrad=True, weight_decay=0.01
    ),
    "official_adabelief_plain_coupled_wd": dict(learning_rate=0.01, rectify=False, coupled_weight_decay=0.05),
    "tfa_adabelief": dict(TFA, epsilon=1e-14),
    "tfa_adabelief_eps": dict(TFA, epsilon=1e-3),
    "tfa_adabelief_plain_amsgrad": dict(TFA, epsilon=1e-3, rectify=False, amsgrad=True),
    "tfa_adabelief_warmup_wd": dict(
        TFA, epsilon=1e-14, amsgrad=True, total_steps=150, warmup_proportion=f32(0.2),
        min_learning_rate=f32(0.001), weight_decay=f32(0.01),
    ),
}


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_matches_reference(config_id):
    make = lambda: to.AdaBelief(exact_hyperparameters=True, **CASES[config_id])  # noqa: E731
    error = RECORDED.relative_difference(config_id, make)
    assert error <= RTOL, f"{config_id}: {error:.2e}"


def test_every_recorded_config_is_checked():
    assert RECORDED.config_ids("AdaBelief") == sorted(CASES)


def test_defaults_are_the_official_defaults():
    config = to.AdaBelief().get_config()
    expected = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-16, rectify=True,
                    degenerated_to_sgd=True, sma_threshold=5.0, bias_corrected_epsilon=False,
                    amsgrad=False, total_steps=0, weight_decay=None, coupled_weight_decay=0.0)
    assert {k: config[k] for k in expected} == pytest.approx(expected)  # learning_rate is float32


def test_belief_is_the_spread_around_the_moving_average():
    """A constant gradient agrees with its prediction: ``s`` stays near epsilon and the plain
    step is ~lr per coordinate, while Adam's ``v`` would be g**2. Without bias correction in
    ``g - m`` the first step's residual is ``beta_1 * g``: ``s_1 = (1 - beta_2) (0.9 g)**2 + eps``."""
    g, eps = 3.0, 1e-8
    with floatx("float64"):
        variable = keras.Variable(np.zeros(1))
        optimizer = to.AdaBelief(0.01, epsilon=eps, rectify=False, exact_hyperparameters=True)
        optimizer.apply([np.array([g])], [variable])
        (belief,) = [v for v in optimizer.variables if v.path.endswith("_belief")]
        np.testing.assert_allclose(belief.numpy(), 0.001 * (0.9 * g) ** 2 + eps, rtol=1e-14)




# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [dict(amsgrad=True, weight_decay=0.01), dict(rectify=False, total_steps=40, bias_corrected_epsilon=True)],
    ids=["rectified", "plain"],
)
def test_fast_path_follows_the_slow_path(flags):
    assert_fast_path_follows_slow_path(lambda fast: to.AdaBelief(0.01, fast_path=fast, **flags), 20, 1e-12)


INVALID = [
    (dict(beta_1=-0.1), "beta_1"),
    (dict(beta_2=1.0), "beta_2"),
    (dict(epsilon=-1e-16), "epsilon"),
    (dict(sma_threshold=float("nan")), "sma_threshold"),
    (dict(total_steps=-5), "total_steps"),
    (dict(warmup_proportion=-0.1), "warmup_proportion"),
    (dict(min_learning_rate=float("inf")), "min_learning_rate"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.AdaBelief(**kwargs)
