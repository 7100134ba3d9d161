"""Muon against ``torch.optim.Muon`` (+ ``torch.optim.AdamW`` for the rest) and the Polar
Express polynomials, recorded once by ``tests/fixtures/record_muon.py`` (torch 2.13.0, CPU,
float64; see ``muon_trajectories.json``), and live against ``keras.optimizers.Muon``.

200 steps of the reference problem on a bias, a 24x32 kernel, a 3x3x2x4 convolution kernel
and a 4x5 kernel (Keras's layout; torch stepped the transposed matrix views, so these also
check the orientation of the learning-rate adjustment). torch is not needed here.
"""

import functools
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from tfoptim.optimizers.muon import coefficient_schedule
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "muon_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "muon_trajectories.npz")
STEPS = MANIFEST["checkpoint_steps"]
SHAPES = tuple(tuple(s) for s in MANIFEST["shapes"])

# tfoptim's arguments for each recorded config (the manifest holds torch's). The references
# use Python floats, so exact_hyperparameters=True. AdamW's rate is given as a ratio.
CONFIGS = {
    # torch's defaults; the 4x5 kernel, last, is the head: AdamW with the same rate and decay.
    "muon": dict(learning_rate=0.02),
    "muon_plain": dict(
        learning_rate=0.03, momentum=0.9, nesterov=False, weight_decay=0.0,
        ns_coefficients=(2.0, -1.5, 0.5), ns_steps=3, exclude_output_head=False,
        adam_lr_ratio=0.5, adam_beta_1=0.8, adam_beta_2=0.99, epsilon=1e-6,
    ),
    "muon_match_rms_adamw": dict(
        learning_rate=0.01, adjust_lr_fn="match_rms_adamw", adam_beta_2=0.95, exclude_output_head=False,
    ),
    # The Polar Express reference adds epsilon to the norm: Keller Jordan's convention.
    "muon_polar_express": dict(
        learning_rate=0.02, ns_coefficients="polar_express", convention="keller", exclude_output_head=False,
    ),
}
# The same operations in another order (torch's lerp and norm, the decay as a product):
# measured 1.7e-14 at most (muon_plain's 4x5 kernel at step 200, which is near its optimum:
# Muon's steps keep their length there and start to amplify rounding), 4.7e-15 elsewhere.
RTOL = 1e-12


@functools.cache
def trajectory(**kwargs):
    with floatx("float64"):
        return run(to.Muon(exact_hyperparameters=True, **kwargs), STEPS, shapes=SHAPES)


def expected(config_id, step):
    return [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(len(SHAPES))]


def relative_error(ours, config_id, step):
    return max(np.max(np.abs(a - e)) / np.max(np.abs(e)) for a, e in zip(ours[step], expected(config_id, step)))


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_matches_torch_trajectory(config_id):
    ours = trajectory(**CONFIGS[config_id])
    for step in STEPS:
        assert_close(ours[step], expected(config_id, step), RTOL)


def test_torch_bfloat16_iteration_is_rounding_noise_away():
    """torch runs the iteration in bfloat16 (config ``muon_bfloat16``, the code as published).
    tfoptim's float64 iteration is then ~1e-3 away (measured 4.0e-3), the bias (AdamW) not at
    all. ``ns_dtype="bfloat16"`` rounds where torch rounds and is as far (measured 2.0e-3):
    a float32 sum ending within ~1e-7 of a bfloat16 rounding boundary goes either way, with
    the summation order of each library's matrix product, and one such step moves an update
    entry by a bfloat16 ulp (2**-8 of it), so two bfloat16 runs part by bfloat16's own noise."""
    arguments = dict(learning_rate=0.02, exclude_output_head=False)
    float64 = trajectory(**arguments)
    bfloat16 = trajectory(ns_dtype="bfloat16", **arguments)
    for ours in (float64, bfloat16):
        assert max(relative_error(ours, "muon_bfloat16", step) for step in STEPS) < 1e-2
        bias = [ours[200][0]], [expected("muon_bfloat16", 200)[0]]
        assert_close(*bias, RTOL)
    assert max(relative_error(float64, "muon_bfloat16", step) for step in STEPS) > 1e-4


def test_polar_express_polynomials_are_the_papers():
    """The recorder's copy of the paper's table, with the safety factor applied to all but the
    last polynomial, which repeats from the ninth iteration on."""
    paper = [tuple(p) for p in MANIFEST["polar_express_polynomials"]]
    s = MANIFEST["polar_express_safety"]
    polynomials, safety = coefficient_schedule("polar_express", 10)
    assert safety == s
    assert polynomials[:7] == [(a / s, b / s**3, c / s**5) for a, b, c in paper[:7]]
    assert polynomials[7:] == [paper[7]] * 3


def newton_schulz(x, polynomials, safety=1.0, eps=1e-7, add=False):
    """The iteration in NumPy (float64), from the update rule of the Muon docstring."""
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    norm = safety * np.linalg.norm(x)
    x = x / (norm + eps if add else max(norm, eps))
    for a, b, c in polynomials:
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def paper_polar_express(steps):
    """The recorder's copy of the paper's table, the safety factor applied, the last repeated."""
    table, s = MANIFEST["polar_express_polynomials"], MANIFEST["polar_express_safety"]
    polynomials = [(a / s, b / s**3, c / s**5) for a, b, c in table[:-1]] + [tuple(table[-1])] * 3
    return polynomials[:steps]


@pytest.mark.parametrize(
    "coefficients, steps, polynomials, safety",
    [
        ("polar_express", 10, paper_polar_express(10), 1.01),
        ([(3.0, -3.2, 1.2), (2.0, -1.5, 0.5)], 4, [(3.0, -3.2, 1.2)] + [(2.0, -1.5, 0.5)] * 3, 1.0),
        ((3.4445, -4.7750, 2.0315), 2, [(3.4445, -4.7750, 2.0315)] * 2, 1.0),
    ],
    ids=["polar_express", "list", "triple"],
)
def test_iteration_follows_numpy(coefficients, steps, polynomials, safety):
    """Lists are taken one polynomial per iteration, the last repeated; ten Polar Express
    iterations orthogonalise (every singular value within 1e-3 of 1)."""
    x = np.random.default_rng(0).normal(size=(7, 5))
    optimizer = to.Muon(ns_coefficients=coefficients, ns_steps=steps, convention="keller")
    ours = optimizer._orthogonalize(tf.constant(x), "float64").numpy()
    np.testing.assert_allclose(ours, newton_schulz(x, polynomials, safety, add=True), rtol=1e-12, atol=1e-14)
    if coefficients == "polar_express":
        np.testing.assert_allclose(np.linalg.svd(ours, compute_uv=False), 1.0, atol=1e-3)


# -- keras.optimizers.Muon -----------------------------------------------------------------------

KERAS_CONVENTION = dict(
    convention="keras", adjust_lr_fn="match_rms_adamw", flatten_kernels=False, exclude_output_head=False,
    weight_decay=0.004, adam_weight_decay=0.004, epsilon=1e-7, adam_bias_corrected_epsilon=False,
)
KERAS_CASES = {
    "defaults": ({}, {}),
    # Another rate, no Nesterov, another momentum and RMS rate, three iterations; the 4x5
    # kernel excluded by name (torch-style rate adjustment has no Keras equivalent).
    "arguments": (
        dict(learning_rate=0.01, momentum=0.9, nesterov=False, rms_rate=0.3, ns_steps=3,
             exclude_layers=["param3"], adam_beta_1=0.8, adam_beta_2=0.99, weight_decay=0.01),
        dict(learning_rate=0.01, momentum=0.9, nesterov=False, rms_rate=0.3, ns_steps=3,
             exclude_layers=["param3"], adam_beta_1=0.8, adam_beta_2=0.99, weight_decay=0.01,
             adam_weight_decay=0.004),
    ),
}


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_keras_convention_matches_keras_muon(case):
    """``KERAS_CONVENTION`` is ``keras.optimizers.Muon``: the same trajectory (measured 4.1e-16;
    Keras writes ``c * A @ A`` as ``(c A) A``) and the same state, names and order. Keras
    rounds the fallback's betas and weight decay through float32 (``ops.cast`` of a Python
    float), as tfoptim does without ``exact_hyperparameters``."""
    ours_kwargs, keras_kwargs = KERAS_CASES[case]
    with floatx("float64"):
        ours_optimizer = to.Muon(**{**KERAS_CONVENTION, **ours_kwargs})
        keras_optimizer = keras.optimizers.Muon(**keras_kwargs)
        ours = run(ours_optimizer, STEPS, shapes=SHAPES)
        theirs = run(keras_optimizer, STEPS, shapes=SHAPES)
    for step in STEPS:
        assert_close(ours[step], theirs[step], 1e-12)
    assert [v.path.split("/", 1)[1] for v in ours_optimizer.variables] == [
        v.path.split("/", 1)[1] for v in keras_optimizer.variables
    ]
    for a, b in zip(ours_optimizer.variables, keras_optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_keras_momentum_is_torch_momentum_over_one_minus_mu():
    """Keras sums the momentum, torch averages it: after a step the states differ by
    ``1 / (1 - mu)``, the normalised updates only through epsilon's weight (1e-7 against a
    norm of ~30 here)."""
    variables, states = {}, {}
    for convention in ("torch", "keras"):
        with floatx("float64"):
            optimizer = to.Muon(0.02, convention=convention, momentum=0.9, exclude_output_head=False)
            variables[convention] = run(optimizer, (1,), shapes=((4, 5),))[1][0]
        states[convention] = optimizer._momentums[0].numpy()
    np.testing.assert_allclose(states["keras"], states["torch"] / (1 - 0.9), rtol=1e-14)
    np.testing.assert_allclose(variables["keras"], variables["torch"], rtol=1e-8)


# -- which variables Muon steps --------------------------------------------------------------


def model():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="token_embedding")(tokens)
    x = keras.layers.Reshape((6, 8, 1))(x)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, name="hidden")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Dense(16, name="projection")(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="head")(x))


ROUTES = {
    "defaults": ({}, ["conv/kernel", "hidden/kernel", "projection/kernel"]),
    "no_kernels": (dict(flatten_kernels=False), ["hidden/kernel", "projection/kernel"]),
    "no_automatic_rules": (
        dict(exclude_embeddings=False, exclude_output_head=False),
        ["token_embedding/embeddings", "conv/kernel", "hidden/kernel", "projection/kernel", "head/kernel"],
    ),
    # exclude_layers wins over include_layers; include_layers over the head and embedding rules.
    "patterns": (
        dict(exclude_layers=["proj"], include_layers=["head", "^token", "projection"]),
        ["token_embedding/embeddings", "conv/kernel", "hidden/kernel", "head/kernel"],
    ),
}


@pytest.mark.parametrize("case", sorted(ROUTES))
def test_routing_rule(case):
    kwargs, muon_paths = ROUTES[case]
    net = model()
    optimizer = to.Muon(**kwargs)
    optimizer.build(net.trainable_variables)
    assert [v.path for v in optimizer.muon_variables] == muon_paths
    assert {v.path for v in optimizer.adamw_variables} == {v.path for v in net.trainable_variables} - set(muon_paths)
    velocities = {v.path for v in optimizer.variables if v.path.endswith("_velocity")}
    assert velocities == {f"{optimizer.name}/{v.path.replace('/', '_')}_velocity" for v in optimizer.adamw_variables}


def test_routing_matches_keras_muon_with_its_rules():
    net = model()
    ours = to.Muon(exclude_layers=["head"], **KERAS_CONVENTION)
    ours.build(net.trainable_variables)
    theirs = keras.optimizers.Muon(exclude_layers=["head"])
    assert [v.path for v in ours.adamw_variables] == [
        v.path for v in net.trainable_variables if theirs._should_use_adamw(v)
    ]


def test_model_trains_and_steps_its_conv_kernel_as_a_matrix():
    """The convolution kernel's first step is the orthogonalised gradient of its
    ``(kh * kw * in, out)`` matrix (from a zero momentum the Nesterov direction is a multiple
    of the gradient, which the normalisation cancels); then ``fit`` lowers the loss."""
    net = model()
    rng = np.random.default_rng(0)
    tokens, targets = rng.integers(0, 50, size=(64, 6)), rng.normal(size=(64, 3))
    optimizer = to.Muon(0.02, weight_decay=0.0)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.mean_squared_error(targets, net(tokens)))
    grads = tape.gradient(loss, net.trainable_variables)
    kernel = net.get_layer("conv").kernel
    gradient, before = grads[1].numpy().astype("float64"), kernel.numpy().copy()
    optimizer.apply(grads, net.trainable_variables)
    step = newton_schulz(gradient.reshape(-1, 4), [(3.4445, -4.7750, 2.0315)] * 5).reshape(kernel.shape)
    # float32 arithmetic: ~1e-6 of the update's entries (~0.3).
    np.testing.assert_allclose(before - kernel.numpy(), 0.02 * step, rtol=0, atol=1e-7)
    net.compile(optimizer=optimizer, loss="mse")
    history = net.fit(tokens, targets, batch_size=64, epochs=4, shuffle=False, verbose=0).history["loss"]
    assert history[-1] < history[0]


# -- the fast path, arguments ----------------------------------------------------------------


def test_fast_path_follows_the_per_variable_loop():
    """The 300x300 kernel of ``MIXED_SHAPES`` (Muon) and the 200,000-vector (AdamW) in one XLA
    call against Keras's loop: matrix products summed in another order (measured 1.1e-16)."""
    assert_fast_path_follows_slow_path(
        lambda fast_path: to.Muon(0.02, exclude_output_head=False, fast_path=fast_path), 3, 1e-12
    )


INVALID = [
    (lambda: to.Muon(momentum=1.0), "momentum"),
    (lambda: to.Muon(nesterov="yes"), "nesterov"),
    (lambda: to.Muon(ns_coefficients="quintic"), "ns_coefficients"),
    (lambda: to.Muon(ns_coefficients=(1.0, 2.0)), "ns_coefficients"),
    (lambda: to.Muon(ns_coefficients=[(1.0, 2.0, 3.0), (1.0, 2.0)]), "ns_coefficients"),
    (lambda: to.Muon(ns_coefficients=[]), "ns_coefficients"),
    (lambda: to.Muon(ns_coefficients=(1.0, float("nan"), 3.0)), "ns_coefficients"),
    (lambda: to.Muon(ns_steps=0), "ns_steps"),
    (lambda: to.Muon(ns_steps=100), "ns_steps"),
    (lambda: to.Muon(ns_epsilon=0.0), "ns_epsilon"),
    (lambda: to.Muon(adjust_lr_fn="moonlight"), "adjust_lr_fn"),
    (lambda: to.Muon(rms_rate=0.0), "rms_rate"),
    (lambda: to.Muon(convention="jax"), "convention"),
    (lambda: to.Muon(ns_dtype="float16"), "ns_dtype"),
    (lambda: to.Muon(flatten_kernels=None), "flatten_kernels"),
    (lambda: to.Muon(exclude_output_head=1), "exclude_output_head"),
    (lambda: to.Muon(exclude_layers="dense"), "exclude_layers"),
    (lambda: to.Muon(include_layers=["(unclosed"]), "include_layers"),
    (lambda: to.Muon(adam_lr_ratio=-1.0), "adam_lr_ratio"),
    (lambda: to.Muon(adam_beta_1=1.0), "adam_beta_1"),
    (lambda: to.Muon(adam_beta_2=-0.1), "adam_beta_2"),
    (lambda: to.Muon(epsilon=0.0), "epsilon"),
    (lambda: to.Muon(adam_weight_decay=-0.1), "adam_weight_decay"),
    (lambda: to.Muon(weight_decay=None), "weight_decay"),
]


@pytest.mark.parametrize("make, argument", INVALID, ids=[f"{a}{i}" for i, (_, a) in enumerate(INVALID)])
def test_invalid_arguments_raise_at_construction(make, argument):
    with pytest.raises(ValueError, match=re.escape(f"`{argument}`")):
        make()


def test_defaults_are_torchs():
    """``torch.optim.Muon``'s defaults, its ``adjust_lr_fn=None`` included, and
    ``torch.optim.AdamW``'s betas and epsilon for the fallback (at Muon's rate and decay)."""
    config = to.Muon(adjust_lr_fn=None).get_config()
    torch_defaults = dict(
        learning_rate=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
        ns_coefficients="original", ns_epsilon=1e-7, ns_steps=5, adjust_lr_fn="original",
        adam_beta_1=0.9, adam_beta_2=0.999, epsilon=1e-8, adam_bias_corrected_epsilon=True,
    )
    for name, value in torch_defaults.items():
        assert config[name] == (pytest.approx(value) if isinstance(value, float) else value), name
    assert coefficient_schedule("original", 5) == ([(3.4445, -4.7750, 2.0315)] * 5, 1.0)


def test_config_survives_json():
    """Coefficient lists and patterns come back from a JSON round trip (lists for tuples)."""
    optimizer = to.Muon(ns_coefficients=[(3.0, -3.2, 1.2), (2.0, -1.5, 0.5)], exclude_layers=["head"])
    config = json.loads(json.dumps(optimizer.get_config()))
    assert to.Muon.from_config(config).get_config() == optimizer.get_config()
