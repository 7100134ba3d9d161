"""SOAP follows the authors' official implementation (nikhilvyas/SOAP ``soap.py``).

The references were recorded once by ``tests/fixtures/record_soap.py`` (torch 2.13.0, CPU,
float64, the official class transcribed; see ``soap_trajectories.json``), 200 steps of the
reference problem. torch is not needed here.
"""

import functools
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "soap_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "soap_trajectories.npz")
STEPS = MANIFEST["checkpoint_steps"]
KERAS_NAMES = {"lr": "learning_rate", "eps": "epsilon"}

# Tightest tolerances that hold, per config (measured: 1.1e-8, 5.6e-11, 6.7e-14, 1.3e-13).
# SOAP's projected gradient has entries that are zero in exact arithmetic (at the first step
# a 2-D variable's is diagonal) or ~1e-5 of the largest; Adam divides each by its own
# sqrt(v) + 1e-8, so float64 rounding in them (1e-16 of the largest) becomes 1e-10 of a
# step, and near the optimum, where those steps overshoot, it grows (the defaults' 1e-10 is
# 1.1e-8 by step 200). With epsilon >= 1e-3 nothing is amplified.
RTOL = {
    "soap_float64": 1e-7,
    "soap_small": 1e-9,
    "soap_merge": 1e-12,
    "soap_normalize": 1e-12,
}


def keras_kwargs(config_id):
    kwargs = {}
    for name, value in MANIFEST["configs"][config_id]["kwargs"].items():
        if name == "betas":
            kwargs["beta_1"], kwargs["beta_2"] = value
        elif name != "decomposition_dtype":
            kwargs[KERAS_NAMES.get(name, name)] = value
    return kwargs


@functools.cache
def trajectory(config_id):
    shapes = tuple(tuple(s) for s in MANIFEST["configs"][config_id]["shapes"])
    with floatx("float64"):
        # The official code uses Python floats (float64) for every hyperparameter.
        optimizer = to.SOAP(exact_hyperparameters=True, **keras_kwargs(config_id))
        return run(optimizer, STEPS, shapes=shapes)


def expected(config_id, step):
    count = len(MANIFEST["configs"][config_id]["shapes"])
    return [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(count)]


@pytest.mark.parametrize("config_id", sorted(RTOL))
def test_matches_official_trajectory(config_id):
    ours = trajectory(config_id)
    for step in STEPS:
        assert_close(ours[step], expected(config_id, step), RTOL[config_id])


def test_official_float32_cast_moves_float64_trajectories_by_about_1e_3():
    """The published code (config ``soap``) rounds the statistics to float32 before its
    decompositions; tfoptim keeps float64 (see the SOAP docstring). The rounding puts ~1e-8
    components in the projected gradient, which the sign-like first Adam step turns into
    ~1e-3 of the (4, 5) variable's trajectory; the 1-D variable (no preconditioner) agrees."""
    ours = trajectory("soap_float64")  # the same tfoptim run: the configs differ in the cast only
    official = expected("soap", 200)
    assert_close(ours[200][:1], official[:1], 1e-12)
    error = np.max(np.abs(ours[200][1] - official[1])) / np.max(np.abs(official[1]))
    assert 1e-4 < error < 1e-2


def test_first_step_only_builds_the_basis():
    """The first call moves nothing; ``Q`` holds the eigenvectors of ``(1 - beta) G G^T`` by
    decreasing eigenvalue."""
    rng = np.random.default_rng(0)
    grad = rng.normal(size=(4, 6))
    with floatx("float64"):
        variable = keras.Variable(np.ones((4, 6)))
        optimizer = to.SOAP(max_precond_dim=5)
        optimizer.apply([tf.constant(grad)], [variable])
    np.testing.assert_array_equal(variable.numpy(), np.ones((4, 6)))
    (statistic, basis), unpreconditioned = optimizer._bases[0]
    assert unpreconditioned is None  # 6 > max_precond_dim
    np.testing.assert_allclose(statistic.numpy(), 0.05 * grad @ grad.T, rtol=1e-14)
    values, vectors = np.linalg.eigh(0.05 * grad @ grad.T)
    np.testing.assert_allclose(np.abs(basis.numpy()), np.abs(vectors[:, ::-1]), atol=1e-12)


def test_large_dimensions_get_no_preconditioner_and_the_fast_path_is_left_alone():
    """A 20000 x 6 kernel gets one 6 x 6 statistic and basis (no 20000 x 20000 matrix); a long
    1-D variable gets none. The eigendecompositions stay out of XLA: with or without the fast
    path the update is the same, and no compiled group update is built."""
    shapes = ((20000, 6), (30000,))
    results = {}
    for fast_path in (True, False):
        optimizer = to.SOAP(0.01, fast_path=fast_path)
        results[fast_path] = run(optimizer, (3,), dtype="float32", shapes=shapes)[3]
        assert optimizer._fused_updates == {}
    shapes_of_state = sorted(tuple(v.shape) for v in optimizer.variables if len(v.shape) == 2)
    assert shapes_of_state == [(6, 6), (6, 6), (20000, 6), (20000, 6)]
    for a, b in zip(results[True], results[False]):
        np.testing.assert_array_equal(a, b)


def test_half_precision_variables_keep_float32_state():
    variable = keras.Variable(np.ones((3, 4)), dtype="bfloat16")
    optimizer = to.SOAP(0.01)
    optimizer.apply([tf.ones((3, 4), "bfloat16")], [variable])
    optimizer.apply([tf.ones((3, 4), "bfloat16")], [variable])
    slots = [v for v in optimizer.variables if len(v.shape) == 2]
    assert {v.dtype for v in slots} == {"float32"} and len(slots) == 6
    assert variable.dtype == "bfloat16" and np.all(np.isfinite(variable.numpy().astype("float32")))


INVALID = [
    (lambda: to.SOAP(beta_1=1.0), "beta_1"),
    (lambda: to.SOAP(beta_2=-0.1), "beta_2"),
    (lambda: to.SOAP(shampoo_beta=1.0), "shampoo_beta"),
    (lambda: to.SOAP(shampoo_beta=-1), "shampoo_beta"),
    (lambda: to.SOAP(epsilon=0.0), "epsilon"),
    (lambda: to.SOAP(precondition_frequency=0), "precondition_frequency"),
    (lambda: to.SOAP(precondition_frequency=2.5), "precondition_frequency"),
    (lambda: to.SOAP(max_precond_dim=0), "max_precond_dim"),
    (lambda: to.SOAP(weight_decay=None), "weight_decay"),
    (lambda: to.SOAP(weight_decay=-0.01), "weight_decay"),
]


@pytest.mark.parametrize("make, argument", INVALID, ids=[f"{a}{i}" for i, (_, a) in enumerate(INVALID)])
def test_invalid_arguments_raise_at_construction(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_defaults_are_the_official_ones():
    config = to.SOAP().get_config()
    official = dict(
        learning_rate=3e-3, beta_1=0.95, beta_2=0.95, shampoo_beta=None, epsilon=1e-8,
        weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000, merge_dims=False,
        precondition_1d=False, normalize_grads=False, correct_bias=True,
    )
    for name, value in official.items():
        assert config[name] == (pytest.approx(value) if isinstance(value, float) else value), name
