"""Lookahead follows TF Addons' ``tfa.optimizers.Lookahead`` (0.23.0, TensorFlow 2.15).

References recorded once by ``tests/fixtures/record_averaging.py`` (float64, 200 steps of
``tests/reference_problem.py``, inner ``tf.keras.optimizers.legacy.SGD``/``Adam``); here the
inner optimizer is Keras 3's built-in and tfoptim's equivalent.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from reference_problem import SHAPES
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "averaging_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "averaging_trajectories.npz")
CONFIGS = sorted(k for k, c in MANIFEST["configs"].items() if "Lookahead" in c["source"])
INNER = {
    "SGD": {"keras": keras.optimizers.SGD, "tfoptim": to.SGD},
    "Adam": {"keras": keras.optimizers.Adam, "tfoptim": to.Adam},
}
# TF 2.15's fused training ops (ResourceApplyAdam, ResourceApplyKerasMomentum) against Keras
# 3's element-wise update: float64 rounding over 200 steps.
RTOL = 1e-12
# TF 2.15's legacy optimizers (and TF Addons' wrappers) keep these hyperparameters in float32
# variables even for float64 weights, defaults included; epsilon stays exact.
FLOAT32_HYPERPARAMETERS = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0},
    "Adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999},
    "Lookahead": {"slow_step_size": 0.5},
}


def as_tf_addons_ran(name, kwargs):
    merged = {**FLOAT32_HYPERPARAMETERS[name], **kwargs}
    return {k: float(np.float32(v)) if k in FLOAT32_HYPERPARAMETERS[name] else v
            for k, v in merged.items()}


@pytest.mark.parametrize("family", ["keras", "tfoptim"])
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_tf_addons(config, family):
    spec = MANIFEST["configs"][config]
    inner_name = spec["source"].rsplit(".", 1)[1].rstrip(")")
    steps = MANIFEST["checkpoint_steps"]
    with floatx("float64"):
        inner = INNER[inner_name][family](**as_tf_addons_ran(inner_name, spec["inner_kwargs"]))
        ours = run(to.Lookahead(inner, **as_tf_addons_ran("Lookahead", spec["kwargs"])), steps)
    for step in steps:
        expected = [ARRAYS[f"{config}/step{step}/param{i}"] for i in range(len(SHAPES))]
        assert_close(ours[step], expected, RTOL)


def test_slow_weights_are_the_evaluation_weights():
    """Between synchronisations the slow weights stay where the last one left them; at one,
    fast and slow weights agree."""
    with floatx("float64"):
        optimizer = to.Lookahead(keras.optimizers.SGD(0.05), sync_period=4, slow_step_size=0.5)
        before = run(optimizer, (2,))[2]
        slow = [np.asarray(v) for v in optimizer.evaluation_values(optimizer._trainable_variables)]
    initial = run(keras.optimizers.SGD(0.0), (1,))[1]
    assert_close(slow, initial, 0.0)
    assert not np.allclose(before[0], slow[0])
    with floatx("float64"):
        optimizer = to.Lookahead(keras.optimizers.SGD(0.05), sync_period=4)
        at_sync = run(optimizer, (8,))[8]
        slow = [np.asarray(v) for v in optimizer.evaluation_values(optimizer._trainable_variables)]
    assert_close(slow, at_sync, 0.0)


def test_sync_period_one_and_full_step_is_the_inner_optimizer():
    with floatx("float64"):
        wrapped = run(to.Lookahead(keras.optimizers.Adam(0.01), 1, 1.0), (50,))[50]
        plain = run(keras.optimizers.Adam(0.01), (50,))[50]
    assert_close(wrapped, plain, 1e-15)


@pytest.mark.parametrize(
    "make, name",
    [(lambda: to.Lookahead(keras.optimizers.SGD(), sync_period=0), "sync_period"),
     (lambda: to.Lookahead(keras.optimizers.SGD(), sync_period=2.5), "sync_period"),
     (lambda: to.Lookahead(keras.optimizers.SGD(), slow_step_size=0.0), "slow_step_size"),
     (lambda: to.Lookahead(keras.optimizers.SGD(), slow_step_size=1.5), "slow_step_size"),
     (lambda: to.Lookahead(keras.optimizers.SGD(), clipnorm=1.0), "clipnorm"),
     (lambda: to.Lookahead(42), "optimizer")],
)
def test_invalid_arguments(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()


def test_learning_rate_is_the_inner_optimizers():
    inner = keras.optimizers.Adam(0.01)
    optimizer = to.Lookahead(inner)
    optimizer.learning_rate = 0.5
    assert float(inner.learning_rate) == float(optimizer.learning_rate) == 0.5


def test_wraps_by_name():
    assert isinstance(to.Lookahead("adam").inner_optimizer, keras.optimizers.Adam)


@pytest.mark.variants("Lookahead(keras.Adam)")
@pytest.mark.parametrize(
    "make",
    [lambda: to.Lookahead(keras.optimizers.Adam(0.01), sync_period=3),
     lambda: to.SWA(keras.optimizers.SGD(0.02, momentum=0.9), average_period=3)],
    ids=["Lookahead(keras.Adam)", "SWA(keras.SGD)"],
)
def test_wrapping_a_keras_builtin_resumes_after_save_and_load(make, tmp_path):
    """The contract tests wrap tfoptim optimizers; a Keras built-in inside saves its state too."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")

    def trained(model, epochs, initial_epoch=0):
        model.fit(x, y, batch_size=16, epochs=initial_epoch + epochs, initial_epoch=initial_epoch,
                  shuffle=False, verbose=0)
        return model

    def compiled():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=make(), loss="mse")
        return model

    straight = trained(compiled(), 4)
    trained(compiled(), 2).save(tmp_path / "model.keras")
    resumed = trained(keras.models.load_model(tmp_path / "model.keras"), 2, initial_epoch=2)
    assert type(resumed.optimizer.inner_optimizer) is type(straight.optimizer.inner_optimizer)
    for a, b in zip(resumed.get_weights() + [v.numpy() for v in resumed.optimizer.variables],
                    straight.get_weights() + [v.numpy() for v in straight.optimizer.variables]):
        np.testing.assert_array_equal(a, b)
