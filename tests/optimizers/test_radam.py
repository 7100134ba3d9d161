"""RAdam follows three references, recorded once (float64, 200 steps of ``reference_problem``):

* ``pytorch_optimizer.RAdam`` 4.1.0, the float64-capable port of the authors' code
  (LiyuanLucasLiu/RAdam: no step below ``rho_t = 5`` unless ``degenerated_to_sgd``), by
  ``tests/fixtures/record_tfa_successors_a.py``;
* ``torch.optim.RAdam`` (torch 2.13.0: the momentum step below the threshold), by
  ``record_torch_trajectories.py``, checked through its port in ``tests/compat/test_torch.py``;
* TensorFlow Addons 0.23.0 ``RectifiedAdam`` (epsilon after the bias correction, AMSGrad,
  warm-up), by ``record_tfa_successors_a.py``.
"""

import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded, tfa_float32 as f32
from reference_problem import initial_problem
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("tfa_successors_a")
TORCH = Recorded("torch")
# The same formulas evaluated in another order: float64 rounding over 200 steps stays below
# 4e-15 relative.
RTOL = 1e-12
TFA = dict(learning_rate=f32(0.01), beta_1=f32(0.9), beta_2=f32(0.999), degenerated_to_sgd=True,
           bias_corrected_epsilon=True)
CASES = {
    "official_radam": dict(learning_rate=0.01),
    "official_radam_betas_eps": dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    "official_radam_degenerated_wd": dict(learning_rate=0.01, degenerated_to_sgd=True, weight_decay=0.01),
    "tfa_radam": dict(TFA, epsilon=1e-7),
    "tfa_radam_amsgrad_wd": dict(TFA, amsgrad=True, weight_decay=f32(0.01), epsilon=1e-3),
    # 150 steps: the last 50 run at min_learning_rate.
    "tfa_radam_warmup_wd": dict(
        TFA, epsilon=1e-7, total_steps=150, warmup_proportion=f32(0.1), min_learning_rate=f32(0.001),
        weight_decay=f32(0.01), sma_threshold=4.0,
    ),
}


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_matches_reference(config_id):
    make = lambda: to.RAdam(exact_hyperparameters=True, **CASES[config_id])  # noqa: E731
    error = RECORDED.relative_difference(config_id, make)
    assert error <= RTOL, f"{config_id}: {error:.2e}"


def test_every_recorded_config_is_checked():
    assert RECORDED.config_ids("RAdam", "RectifiedAdam") == sorted(CASES)


def test_recorded_on_the_torch_fixtures_problem():
    """The recorder restates ``record_torch_trajectories.py``'s seed and checkpoints."""
    for key in ("problem_seed", "problem_steps", "shapes", "checkpoint_steps"):
        assert RECORDED.manifest[key] == TORCH.manifest[key], key


def test_defaults_are_the_official_defaults():
    config = to.RAdam().get_config()
    expected = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, sma_threshold=5.0,
                    degenerated_to_sgd=False, bias_corrected_epsilon=False, total_steps=0)
    assert {k: config[k] for k in expected} == pytest.approx(expected)  # learning_rate is float32


def test_no_step_below_the_threshold_unless_degenerated_to_sgd():
    """With beta_2 = 0.999, rho_t < 5 for t <= 5: the official rule leaves theta alone."""
    with floatx("float64"):
        official = run(to.RAdam(0.01), (5, 6))
        momentum = run(to.RAdam(0.01, degenerated_to_sgd=True), (5,))
    params = initial_problem()[0]
    assert_close(official[5], params, 0.0)
    assert all(not np.array_equal(a, b) for a, b in zip(official[6], params))
    assert all(not np.array_equal(a, b) for a, b in zip(momentum[5], params))




# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [dict(degenerated_to_sgd=True, amsgrad=True, weight_decay=0.01),
     dict(bias_corrected_epsilon=True, total_steps=40, coupled_weight_decay=0.01)],
    ids=["amsgrad", "warmup"],
)
def test_fast_path_follows_the_slow_path(flags):
    assert_fast_path_follows_slow_path(lambda fast: to.RAdam(0.01, fast_path=fast, **flags), 20, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(sma_threshold=3.0), "sma_threshold"),
    (dict(total_steps=-1), "total_steps"),
    (dict(total_steps=10.5), "total_steps"),
    (dict(warmup_proportion=1.5), "warmup_proportion"),
    (dict(min_learning_rate=-1e-3), "min_learning_rate"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.RAdam(**kwargs)
