"""LARS against pytorch_optimizer's ``LARS`` (4.1.0, recorded: tests/fixtures/
record_tfa_successors_b.py), against TF Model Garden's ratio (a NumPy transcript), and its
exclusions."""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import gradient, initial_problem
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("tfa_successors_b")
# torch's names -> tfoptim's. pytorch_optimizer exempts every variable of fewer than 2
# dimensions from the ratio and the decay: exclude_bias_and_norm=True, the default.
TORCH_NAMES = {"lr": "learning_rate", "weight_decay": "lars_weight_decay"}


def from_torch(config_id, **flags):
    recorded = RECORDED.manifest["configs"][config_id]["kwargs"]
    kwargs = {TORCH_NAMES.get(k, k): v for k, v in recorded.items()}
    kwargs.setdefault("learning_rate", 1e-3)  # pytorch_optimizer's default (tfoptim: 0.01)
    # torch keeps Python floats exact; Keras's float32 rounding of momentum=0.9 alone moves
    # the trajectory by ~5e-7 relative.
    return lambda: to.LARS(exact_hyperparameters=True, **kwargs, **flags)


@pytest.mark.parametrize("config_id", RECORDED.config_ids("LARS"))
def test_matches_pytorch_optimizer(config_id):
    # pytorch_optimizer scales the gradient by the ratio, then the buffer by the rate: rounding
    # differences of ~1e-16 relative. The decays recorded (0.01, 0.1) are not float32 numbers,
    # so a decay rounded through float32 in one place shows as 6e-11 to 1e-9.
    assert RECORDED.relative_difference(config_id, from_torch(config_id)) <= 1e-14


@pytest.mark.parametrize("exact", [True, False])
def test_weight_decay_has_the_precision_exact_hyperparameters_asks_for(exact):
    """One float64 step against the paper's formulas in NumPy, with ``lars_weight_decay=0.1``
    (not a float32 number): the decay is the same number in the ratio's denominator and in the
    gradient, exact with ``exact_hyperparameters=True``, rounded through float32 in both
    otherwise. (The decay rounded in one place only is ~6e-12 off.)"""
    lr, eta, beta = 1.0, 0.02, 0.1
    decay = beta if exact else float(np.float32(beta))
    with floatx("float64"):
        ours = run(
            to.LARS(lr, trust_coefficient=eta, lars_weight_decay=beta,
                    exclude_bias_and_norm=False, exact_hyperparameters=exact),
            (1,),
        )[1]
    expected = []
    for p, t, c in zip(*initial_problem()):
        g = gradient(p, t, c)
        ratio = eta * np.linalg.norm(p) / (np.linalg.norm(g) + decay * np.linalg.norm(p))
        expected.append(p - lr * ratio * (g + decay * p))
    # A dozen roundings of ~1.1e-16 each.
    assert_close(ours, expected, 2e-15)


def model_garden(lr, momentum, eeta, decay):
    """TF Model Garden's ``LARS`` (classic momentum, nothing excluded), transcribed to NumPy:
    the decay joins the gradient *before* the norm, ``ratio = eeta ||w|| / ||g + decay w||``,
    and the buffer holds steps with the rate inside."""
    params, targets, curvatures = initial_problem()
    buffers = [np.zeros_like(p) for p in params]
    for _ in range(200):
        for i, (p, t, c) in enumerate(zip(params, targets, curvatures)):
            g = gradient(p, t, c) + decay * p
            w_norm, g_norm = np.linalg.norm(p), np.linalg.norm(g)
            ratio = eeta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
            buffers[i] = momentum * buffers[i] + lr * ratio * g
            params[i] = p - buffers[i]
    return params


def test_coupled_weight_decay_gives_model_gardens_ratio():
    with floatx("float64"):
        ours = run(
            to.LARS(0.1, trust_coefficient=0.01, coupled_weight_decay=0.05,
                    exclude_bias_and_norm=False, exact_hyperparameters=True)
        )[200]
    assert_close(ours, model_garden(0.1, 0.9, 0.01, 0.05), 1e-14)


def test_excluded_variables_take_plain_momentum_steps():
    """``param1`` excluded by name, ``param0`` by its rank: both follow SGD exactly; the
    adapted ``param2`` does not."""
    with floatx("float64"):
        lars = run(to.LARS(0.05, exclude_from_layer_adaptation=["param1$"], lars_weight_decay=0.1))[200]
        # Without the fast path, SGD's small variables take Keras's per-variable kernels, as
        # LARS's do (not elementwise): bit for bit.
        sgd = run(to.SGD(0.05, momentum=0.9, fast_path=False))[200]
        adapted = run(to.LARS(0.05, exclude_bias_and_norm=False, lars_weight_decay=0.1))[200]
    np.testing.assert_array_equal(lars[0], sgd[0])
    np.testing.assert_array_equal(lars[1], sgd[1])
    assert np.abs(lars[2] - sgd[2]).max() > 0.1
    assert np.abs(adapted[0] - sgd[0]).max() > 0.1


def test_every_layer_moves_by_the_same_fraction_of_its_norm():
    """Without momentum, a step moves each adapted variable by ``lr * eta * ||theta||`` (in
    norm), whatever its gradient's scale: the point of layer-wise rates."""
    with floatx("float64"):
        params = initial_problem()[0]
        moved = run(to.LARS(2.0, momentum=0.0, exclude_bias_and_norm=False, exact_hyperparameters=True), (1,))[1]
    for before, after in zip(params, moved):
        np.testing.assert_allclose(np.linalg.norm(after - before), 2e-3 * np.linalg.norm(before), 1e-12)


def test_a_zero_initialised_kernel_takes_an_sgd_step():
    """``||theta|| = 0`` would make the ratio 0 and freeze the layer: the ratio is 1 instead."""
    with floatx("float64"):
        variable = keras.Variable(np.zeros((3, 2)))
        to.LARS(0.1, momentum=0.0).apply([np.ones((3, 2))], [variable])
    np.testing.assert_array_equal(variable.numpy(), -0.1 * np.ones((3, 2)))


def test_keras_biases_and_normalization_are_excluded_by_default():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
    )
    optimizer = to.LARS()
    optimizer.build(model.trainable_variables)
    adapted = {v.path: a for v, a in zip(model.trainable_variables, optimizer._adapted)}
    assert [p for p, a in adapted.items() if a] == [v.path for v in model.trainable_variables if v.name == "kernel"]


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
def test_fast_path_follows_the_slow_path():
    def make(fast):
        return to.LARS(
            0.1, nesterov=True, lars_weight_decay=0.01, weight_decay=0.01,
            exclude_bias_and_norm=False, fast_path=fast,
        )

    assert_fast_path_follows_slow_path(make, 200, 1e-10)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(momentum=1.0), "momentum"),
        (dict(trust_coefficient=0.0), "trust_coefficient"),
        (dict(epsilon=-1e-8), "epsilon"),
        (dict(lars_weight_decay=-0.1), "lars_weight_decay"),
        (dict(momentum=0.0, nesterov=True), "Nesterov"),
        (dict(exclude_from_layer_adaptation="bias"), "exclude_from_layer_adaptation"),
        (dict(exclude_from_layer_adaptation=["("]), "exclude_from_layer_adaptation"),
    ],
)
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.LARS(**kwargs)


def test_exclusion_patterns_survive_serialization():
    optimizer = to.LARS(exclude_from_layer_adaptation=["bias", "batch_norm"], lars_weight_decay=1e-4)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.exclude_from_layer_adaptation == ["bias", "batch_norm"]
    assert restored.get_config() == optimizer.get_config()
