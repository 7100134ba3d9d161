"""NovoGrad follows NVIDIA NeMo's ``Novograd`` (as ``torch_optimizer.NovoGrad`` 0.3.0, run with
NeMo's betas) and TensorFlow Addons 0.23.0's ``NovoGrad``, recorded once by
``tests/fixtures/record_tfa_successors_a.py`` (float64, 200 steps of ``reference_problem``):
plain, gradient averaging with the paper's weight decay, AMSGrad.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded, tfa_float32 as f32
from reference_problem import gradient, initial_problem
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("tfa_successors_a")
# The same formulas evaluated in another order: float64 rounding over 200 steps stays below
# 4e-16 relative.
RTOL = 1e-12
TFA = dict(learning_rate=f32(0.01), beta_1=f32(0.9), beta_2=f32(0.999), epsilon=1e-7,
           momentum_buffer="step", average_first_step=False)
CASES = {
    "official_novograd": dict(learning_rate=0.01),
    "official_novograd_averaging_wd": dict(learning_rate=0.01, grad_averaging=True, moment_weight_decay=0.01),
    "official_novograd_amsgrad": dict(learning_rate=0.01, beta_1=0.9, beta_2=0.5, amsgrad=True, epsilon=1e-3),
    "tfa_novograd": TFA,
    "tfa_novograd_averaging_wd": dict(TFA, grad_averaging=True, moment_weight_decay=f32(0.01)),
    "tfa_novograd_amsgrad": dict(TFA, amsgrad=True, beta_2=f32(0.5), epsilon=1e-3),
}


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_matches_reference(config_id):
    make = lambda: to.NovoGrad(exact_hyperparameters=True, **CASES[config_id])  # noqa: E731
    error = RECORDED.relative_difference(config_id, make)
    assert error <= RTOL, f"{config_id}: {error:.2e}"


def test_every_recorded_config_is_checked():
    assert RECORDED.config_ids("NovoGrad") == sorted(CASES)


def test_defaults_are_the_official_defaults():
    config = to.NovoGrad().get_config()
    expected = dict(learning_rate=0.001, beta_1=0.95, beta_2=0.98, epsilon=1e-8, moment_weight_decay=0.0,
                    grad_averaging=False, amsgrad=False, momentum_buffer="gradient", average_first_step=True)
    assert {k: config[k] for k in expected} == pytest.approx(expected)  # learning_rate is float32


def test_second_moment_is_one_number_per_variable():
    """``v_1 = ||g_1||**2`` (no zero start), then an EMA of the squared norms."""
    with floatx("float64"):
        variables = [keras.Variable(np.zeros(s)) for s in ((3,), (4, 5))]
        optimizer = to.NovoGrad(0.01, beta_2=0.5, exact_hyperparameters=True)
        optimizer.build(variables)
        moments = [v for v in optimizer.variables if v.path.endswith("_second_moment")]
        assert [tuple(v.shape) for v in moments] == [(), ()]
        optimizer.apply([np.full((3,), 2.0), np.full((4, 5), 1.0)], variables)
        np.testing.assert_allclose([float(v.numpy()) for v in moments], [12.0, 20.0])
        optimizer.apply([np.full((3,), 1.0), np.full((4, 5), 3.0)], variables)
        np.testing.assert_allclose([float(v.numpy()) for v in moments], [7.5, 100.0])


def test_step_buffer_is_tfa_momentum_under_a_schedule():
    """``momentum_buffer="step"`` keeps past steps at their own rate (TFA's Keras momentum,
    ``m <- beta_1 m - lr_t u; theta <- theta + m``), the gradient buffer rescales them by the
    current rate; under a schedule the two part."""
    # Keras evaluates the schedule, in float32, at the number of updates already applied: 0.01
    # for 21 steps.
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([20], [0.01, 0.002])
    rates = [f32(0.01)] * 21 + [f32(0.002)] * 29
    with floatx("float64"):
        step = run(to.NovoGrad(schedule, momentum_buffer="step", exact_hyperparameters=True), (50,))[50]
        grad = run(to.NovoGrad(schedule, exact_hyperparameters=True), (50,))[50]
    params, targets, curvatures = initial_problem()
    expected = []
    for theta, target, curvature in zip(params, targets, curvatures):
        theta, m, v = theta.copy(), np.zeros_like(theta), None
        for lr in rates:
            g = gradient(theta, target, curvature)
            v = np.sum(g**2) if v is None else 0.98 * v + 0.02 * np.sum(g**2)
            m = 0.95 * m - lr * g / (np.sqrt(v) + 1e-8)
            theta = theta + m
        expected.append(theta)
    assert_close(step, expected, 1e-12)
    assert max(np.max(np.abs(a - b)) for a, b in zip(step, grad)) > 1e-3




# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [dict(grad_averaging=True, amsgrad=True, moment_weight_decay=0.01),
     dict(momentum_buffer="step", grad_averaging=True, average_first_step=False, weight_decay=0.01)],
    ids=["gradient_buffer", "step_buffer"],
)
def test_fast_path_follows_the_slow_path(flags):
    assert_fast_path_follows_slow_path(lambda fast: to.NovoGrad(0.01, fast_path=fast, **flags), 20, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.5), "beta_2"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(moment_weight_decay=-0.01), "moment_weight_decay"),
    (dict(momentum_buffer="nesterov"), "momentum_buffer"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.NovoGrad(**kwargs)
