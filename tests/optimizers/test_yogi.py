"""Yogi follows TensorFlow Addons 0.23.0's ``Yogi`` (the paper's authors' group), recorded once
by ``tests/fixtures/record_tfa_successors_a.py`` (float64, 200 steps of ``reference_problem``):
the defaults, ``tanh`` activation with l1 and l2, no momentum with l2 and another start value.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded, tfa_float32 as f32
from trajectory import assert_fast_path_follows_slow_path, floatx

RECORDED = Recorded("tfa_successors_a")
# The same formulas evaluated in another order: float64 rounding over 200 steps stays below
# 4e-16 relative.
RTOL = 1e-12
# TFA rounds Yogi's epsilon through float32 as well (it is a _set_hyper hyperparameter), but
# not initial_accumulator_value.
TFA = dict(learning_rate=f32(0.01), beta_1=f32(0.9), beta_2=f32(0.999), epsilon=f32(1e-3))
CASES = {
    "tfa_yogi": TFA,
    "tfa_yogi_tanh_l1_l2": dict(
        TFA, learning_rate=f32(0.02), activation="tanh", l1_regularization_strength=f32(0.01),
        l2_regularization_strength=f32(0.02),
    ),
    "tfa_yogi_no_momentum_l2": dict(
        TFA, beta_1=0.0, beta_2=f32(0.99), l2_regularization_strength=f32(0.05), initial_accumulator_value=0.1
    ),
}


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_matches_reference(config_id):
    make = lambda: to.Yogi(exact_hyperparameters=True, **CASES[config_id])  # noqa: E731
    error = RECORDED.relative_difference(config_id, make)
    assert error <= RTOL, f"{config_id}: {error:.2e}"


def test_every_recorded_config_is_checked():
    assert RECORDED.config_ids("Yogi") == sorted(CASES)


def test_defaults_are_tfa_defaults():
    config = to.Yogi().get_config()
    expected = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-3,
                    initial_accumulator_value=1e-6, activation="sign",
                    l1_regularization_strength=0.0, l2_regularization_strength=0.0)
    assert {k: config[k] for k in expected} == pytest.approx(expected)  # learning_rate is float32


def test_second_moment_moves_additively():
    """After a large gradient, small ones lower ``v`` by ``(1 - beta_2) g**2`` per step (Adam:
    by ``(1 - beta_2) (v - g**2)``, a fraction of ``v`` itself)."""
    grads = [10.0, 0.1, 0.1, 0.1]
    with floatx("float64"):
        variable = keras.Variable(np.zeros(1))
        optimizer = to.Yogi(0.01, beta_2=0.9, initial_accumulator_value=0.0, exact_hyperparameters=True)
        optimizer.build([variable])
        (v,) = [s for s in optimizer.variables if s.path.endswith("_velocity")]
        seen = []
        for g in grads:
            optimizer.apply([np.array([g])], [variable])
            seen.append(float(v.numpy()[0]))
    np.testing.assert_allclose(seen, [10.0, 10.0 - 0.001, 10.0 - 0.002, 10.0 - 0.003], rtol=1e-14)


def test_no_momentum_slot_without_beta_1():
    variable = keras.Variable(np.zeros(3))
    with_momentum, without = to.Yogi(), to.Yogi(beta_1=0.0)
    with_momentum.build([variable])
    without.build([variable])
    assert len(with_momentum.variables) - len(without.variables) == 1




# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [dict(l1_regularization_strength=0.01, l2_regularization_strength=0.01, weight_decay=0.01),
     dict(beta_1=0.0, activation="tanh", l2_regularization_strength=0.01)],
    ids=["l1_l2", "tanh"],
)
def test_fast_path_follows_the_slow_path(flags):
    assert_fast_path_follows_slow_path(lambda fast: to.Yogi(0.01, fast_path=fast, **flags), 20, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=2.0), "beta_2"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(initial_accumulator_value=-1e-6), "initial_accumulator_value"),
    (dict(activation="relu"), "activation"),
    (dict(l1_regularization_strength=-0.1), "l1_regularization_strength"),
    (dict(l2_regularization_strength=float("nan")), "l2_regularization_strength"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.Yogi(**kwargs)
