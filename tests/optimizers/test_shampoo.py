"""Shampoo follows Meta's Distributed Shampoo (``distributed_shampoo.DistributedShampoo``).

The references were recorded once by ``tests/fixtures/record_shampoo.py`` (torch 2.13.0, CPU,
float64; see ``shampoo_trajectories.json`` for the commit), 200 steps of the reference problem
on a convolution kernel, a bias, a 130x24 and a 16x24 matrix. torch is not needed here.
"""

import functools
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from tfoptim.optimizers.shampoo import block_sizes, join_blocks, merged_shape, split_blocks
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "shampoo_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "shampoo_trajectories.npz")
STEPS = MANIFEST["checkpoint_steps"]
SHAPES = tuple(tuple(s) for s in MANIFEST["shapes"])

# Shampoo's inverse roots are exact functions of the factors, but a factor with eigenvalues
# below float64's resolution of its largest (a sum of fewer outer products than its
# dimension, or of nearly parallel ones) has those eigenvalues decided by rounding, and
# ``(lambda + epsilon) ** -e`` weighs the gradient's tiny components along them by up to
# ``epsilon ** -e``. With epsilon >= 1e-6 nothing is amplified that far: measured at most
# 3.1e-9 (``no_grafting``'s bias), the others 1.6e-13 to 1.1e-11. ``defaults`` has epsilon
# 1e-12 on the 288- and 384-vectors and the bias: exact (1e-16) until the first roots at step
# 100, 1.4e-6 there, 3.3e-2 at step 200, where tfoptim's own trajectory from a start moved by
# 1e-15 ends as far from itself (test_rounding_decides_the_defaults_trajectory).
RTOL = 1e-6
DEFAULTS_RTOL = {1: 1e-12, 2: 1e-12, 10: 1e-12, 50: 1e-12, 100: 1e-5, 200: 1e-1}


#: The reference README's layout, where tfoptim's defaults differ (1024 and 2).
README_LAYOUT = dict(max_preconditioner_dim=8192, target_parameter_dimensionality=1)


def reference_shampoo(kwargs):
    """tfoptim's Shampoo with a recorded config's arguments, blocked and merged as the recorded
    reference was. The reference uses Python floats (float64) for every hyperparameter."""
    return to.Shampoo(exact_hyperparameters=True, **{**README_LAYOUT, **kwargs})


@functools.cache
def trajectory(config_id):
    with floatx("float64"):
        optimizer = reference_shampoo(MANIFEST["configs"][config_id]["kwargs"])
        return run(optimizer, STEPS, shapes=SHAPES)


def expected(config_id, step):
    return [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(len(SHAPES))]


# ``defaults`` merges the 130x24 matrix into one vector (a 3120 x 3120 factor, as the reference
# does): the costliest config by far, left to the second tier.
@pytest.mark.variants("blocked", "adagrad_start", "exponents", "sgd_momentum", "no_grafting")
@pytest.mark.parametrize("config_id", sorted(MANIFEST["configs"]))
def test_matches_reference_trajectory(config_id):
    ours = trajectory(config_id)
    for step in STEPS:
        rtol = DEFAULTS_RTOL[step] if config_id == "defaults" else RTOL
        assert_close(ours[step], expected(config_id, step), rtol)


@pytest.mark.parametrize(
    "shape, max_dim, target, merged",
    [
        ((3, 3, 4, 8), 1024, 1, (288,)),
        ((3, 3, 4, 8), 64, 1, (9, 32)),
        ((3, 3, 4, 8), 8, 1, (3, 3, 4, 8)),
        ((3, 3, 4, 8), 1024, None, (3, 3, 4, 8)),
        ((32, 3, 64, 64), 8192, 1, (96, 4096)),
        ((32, 3, 64, 64), 1_000_000, 2, (32, 12288)),
        ((1, 2, 5, 1), 10, 1, (10,)),
        ((1, 2, 5, 1), 1, 1, (2, 5)),
        ((300, 40), 64, 1, (300, 40)),
        ((), 8, 1, (1,)),
    ],
)
def test_dimensions_merge_as_the_reference_does(shape, max_dim, target, merged):
    """The reference's own examples (``merge_small_dims``'s docstring) among them."""
    assert merged_shape(shape, max_dim, target) == merged


def test_blocks_split_and_join_in_the_reference_order():
    x = np.arange(300 * 40, dtype="float64").reshape(300, 40)
    sizes = block_sizes((300, 40), 64)
    assert sizes == [[64, 64, 64, 64, 44], [40]]
    blocks = split_blocks(tf.constant(x), sizes)
    np.testing.assert_array_equal(blocks[1].numpy(), x[64:128])
    np.testing.assert_array_equal(join_blocks(blocks, sizes).numpy(), x)
    sizes = block_sizes((5, 3), 2)  # torch.split's example in multi_dim_split's docstring
    blocks = split_blocks(tf.constant(np.arange(15.0).reshape(5, 3)), sizes)
    assert [tuple(b.shape) for b in blocks] == [(2, 2), (2, 1), (2, 2), (2, 1), (1, 2), (1, 1)]
    np.testing.assert_array_equal(join_blocks(blocks, sizes).numpy(), np.arange(15.0).reshape(5, 3))


def test_first_root_is_the_inverse_fourth_root_of_the_factor():
    """After one step at precondition_frequency 1, a 2-D variable's roots are
    ``(G G^T + eps I)^(-1/4)`` (beta_2 = 1: the sum, no bias correction); the 1-D one's
    exponent is 1/2. Checked against NumPy's eigendecomposition."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4, 6)), rng.normal(size=(5,))]
    with floatx("float64"):
        variables = [keras.Variable(np.zeros(g.shape)) for g in grads]
        optimizer = to.Shampoo(0.1, beta_2=1.0, epsilon=1e-3, precondition_frequency=1, max_preconditioner_dim=6)
        optimizer.apply([tf.constant(g) for g in grads], variables)

    def root(matrix, exponent):
        values, vectors = np.linalg.eigh(matrix + 1e-3 * np.eye(len(matrix)))
        return vectors @ np.diag(values**-exponent) @ vectors.T

    (left, right), (vector,) = optimizer._factors[0][0], optimizer._factors[1][0]
    g, b = grads
    np.testing.assert_allclose(left[1].numpy(), root(g @ g.T, 0.25), rtol=1e-10)
    np.testing.assert_allclose(right[1].numpy(), root(g.T @ g, 0.25), rtol=1e-10)
    np.testing.assert_allclose(vector[1].numpy(), root(np.outer(b, b), 0.5), rtol=1e-10)


def test_state_is_one_factor_and_root_per_block_dimension():
    optimizer = to.Shampoo(max_preconditioner_dim=64, momentum=0.9)
    optimizer.build([keras.Variable(np.zeros((300, 40), "float32")), keras.Variable(np.zeros((3,), "float32"))])
    matrices = sorted(tuple(v.shape) for v in optimizer.variables if len(v.shape) == 2 and v.shape != (300, 40))
    assert matrices == [(3, 3)] * 2 + [(40, 40)] * 10 + [(44, 44)] * 2 + [(64, 64)] * 8
    # Filtered gradient, Adam's second moment, momentum per variable.
    assert sum(tuple(v.shape) == (300, 40) for v in optimizer.variables) == 3


def test_half_precision_variables_keep_float32_state():
    variable = keras.Variable(np.ones((3, 4)), dtype="bfloat16")
    optimizer = to.Shampoo(0.01, precondition_frequency=1, max_preconditioner_dim=4)
    for _ in range(2):
        optimizer.apply([tf.ones((3, 4), "bfloat16")], [variable])
    slots = [v for v in optimizer.variables if v.shape in ((3, 3), (4, 4), (3, 4))]
    assert {v.dtype for v in slots} == {"float32"} and len(slots) == 6
    assert variable.dtype == "bfloat16" and np.all(np.isfinite(variable.numpy().astype("float32")))


def test_config_round_trips_with_exponent_override():
    optimizer = to.Shampoo(inverse_exponent_override={2: {0: 0.5, 1: 0.0}, 1: 0.25}, grafting=None)
    config = optimizer.get_config()
    # A saved config's keys come back as strings (JSON).
    saved = json.loads(json.dumps(config))
    restored = to.Shampoo.from_config(saved)
    assert restored.inverse_exponent_override == {2: {0: 0.5, 1: 0.0}, 1: 0.25}
    assert restored.get_config() == config


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=1.5), "beta_2"),
    (dict(beta_3=-0.1), "beta_3"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(max_preconditioner_dim=0), "max_preconditioner_dim"),
    (dict(max_preconditioner_dim=1.5), "max_preconditioner_dim"),
    (dict(precondition_frequency=0), "precondition_frequency"),
    (dict(precondition_frequency=10, start_preconditioning_step=5), "start_preconditioning_step"),
    (dict(use_bias_correction=1), "use_bias_correction"),
    (dict(grafting="adamw"), "grafting"),
    (dict(grafting_beta_2=0.0), "grafting_beta_2"),
    (dict(grafting_epsilon=-1e-8), "grafting_epsilon"),
    (dict(inverse_exponent_override=0.25), "inverse_exponent_override"),
    (dict(inverse_exponent_override={2: -0.25}), "inverse_exponent_override"),
    (dict(inverse_exponent_override={2: {2: 0.25}}), "inverse_exponent_override"),
    (dict(inverse_exponent_override={-1: 0.25}), "inverse_exponent_override"),
    (dict(momentum=1.0), "momentum"),
    (dict(dampening=-0.5), "dampening"),
    (dict(nesterov="yes"), "nesterov"),
    (dict(target_parameter_dimensionality=0), "target_parameter_dimensionality"),
    (dict(weight_decay=None), "weight_decay"),
    (dict(weight_decay=-1e-5), "weight_decay"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[f"{a}{i}" for i, (_, a) in enumerate(INVALID)])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.Shampoo(**kwargs)


def test_defaults_are_the_reference_readme_adamw_recipe():
    config = to.Shampoo().get_config()
    recipe = dict(
        learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-12, weight_decay=1e-5,
        precondition_frequency=100, start_preconditioning_step=None,
        use_bias_correction=True, grafting="adam", grafting_beta_2=0.999, grafting_epsilon=1e-8,
        momentum=0.0,
    )
    for name, value in recipe.items():
        assert config[name] == (pytest.approx(value) if isinstance(value, float) else value), name
    # The deliberate differences: smaller blocks, and merging stops at matrices.
    assert (config["max_preconditioner_dim"], config["target_parameter_dimensionality"]) == (1024, 2)


@pytest.mark.slow
def test_rounding_decides_the_defaults_trajectory(monkeypatch):
    """The reason for ``defaults``' tolerance: tfoptim against itself, the start moved by 1e-15,
    differs at step 200 as much as from the reference."""
    import trajectory as trajectory_module

    reference = trajectory("defaults")  # before the start moves
    original = trajectory_module.initial_problem

    def moved(shapes, seed=7):
        params, targets, curvatures = original(shapes=shapes, seed=seed)
        return [p * (1 + 1e-15) for p in params], targets, curvatures

    monkeypatch.setattr(trajectory_module, "initial_problem", moved)
    with floatx("float64"):
        optimizer = reference_shampoo(MANIFEST["configs"]["defaults"]["kwargs"])
        ours = run(optimizer, (100, 200), shapes=SHAPES)
    assert_close(ours[100], reference[100], 1e-5)
    error = max(np.max(np.abs(a - b)) / np.max(np.abs(b)) for a, b in zip(ours[200], reference[200]))
    assert error > 1e-3
