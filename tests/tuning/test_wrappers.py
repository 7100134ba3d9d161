"""Wrappers in the search space: conditional scopes, what each builds, schedules under SAM,
evaluation weights in a trial, bad input."""

import json

import keras
import keras_tuner as kt
import numpy as np
import pytest

import tfoptim.optimizers
from tfoptim.callbacks.evaluation_weights import evaluation_values
from tfoptim.tuning import OptimizerHyperModel, optimizer_from_values, sample_optimizer
from tfoptim.tuning import wrappers as wrapper_space

EVERY = [wrapper_space.NONE, *sorted(wrapper_space.WRAPPERS)]


def _space(**kwargs):
    hp = kt.HyperParameters()
    sample_optimizer(hp, optimizers=("adam", "momentum"), wrappers=EVERY, **kwargs)
    return hp


def test_only_the_chosen_wrappers_arguments_hold_values():
    hp = _space()
    declared = {p.name for p in hp.space}
    assert {"wrapper", "wrapper/sam/rho", "wrapper/asam/rho", "wrapper/lookahead/sync_period",
            "wrapper/lookahead/slow_step_size", "wrapper/adaptive_gradient_clipping/clip_factor"} <= declared
    hp = kt.HyperParameters()
    hp.values = {"optimizer": "adam", "wrapper": "lookahead"}
    optimizer = sample_optimizer(hp, optimizers=("adam", "momentum"), wrappers=EVERY)
    assert isinstance(optimizer, tfoptim.optimizers.Lookahead)
    assert isinstance(optimizer.inner_optimizer, tfoptim.optimizers.Adam)
    assert {k for k in hp.values if k.startswith("wrapper")} == {
        "wrapper", "wrapper/lookahead/sync_period", "wrapper/lookahead/slow_step_size"}
    # A search starts from each wrapper's usual values.
    assert (optimizer.sync_period, optimizer.slow_step_size) == (6, 0.5)
    assert not hp.is_active("wrapper/sam/rho")


@pytest.mark.parametrize("name", EVERY)
def test_every_wrapper_builds_from_sampled_values(name):
    hp = _space()
    rng = np.random.default_rng(len(name))
    values = {"optimizer": "momentum", "wrapper": name}
    for parameter in hp.space:
        if parameter.name not in values and all(values.get(c.name) in c.values for c in parameter.conditions):
            values[parameter.name] = parameter.random_sample(int(rng.integers(1 << 30)))
    optimizer = optimizer_from_values(values)
    if name == wrapper_space.NONE:
        assert isinstance(optimizer, tfoptim.optimizers.SGD)
        return
    spec = wrapper_space.WRAPPERS[name]
    assert type(optimizer) is spec.cls
    config = optimizer.get_config()
    for argument, value in dict(spec.fixed).items():
        assert config[argument] == value
    own = f"wrapper/{name}/"
    for key, value in values.items():
        if key.startswith(own):
            assert config[key[len(own):]] == pytest.approx(value), key
    again = keras.optimizers.deserialize(json.loads(json.dumps(keras.optimizers.serialize(optimizer))))
    assert type(again) is type(optimizer)


def test_aliases_and_a_single_wrapper_is_fixed():
    hp = kt.HyperParameters()
    optimizer = sample_optimizer(hp, optimizers="adam", wrappers="agc")
    assert isinstance(optimizer, tfoptim.optimizers.AdaptiveGradientClipping)
    assert hp.values["wrapper"] == "adaptive_gradient_clipping"
    assert isinstance(next(p for p in hp.space if p.name == "wrapper"), kt.engine.hyperparameters.Fixed)


def _spanned(optimizer):
    """Warm-up plus decay steps of the inner optimizer's schedule."""
    config = optimizer.inner_optimizer._learning_rate.get_config()
    return config["warmup_steps"] + config["schedule"]["config"]["decay_steps"]


def test_sams_schedule_spans_its_descents():
    values = {"optimizer": "adam", "adam/learning_rate": 1e-3, "schedule": "cosine_decay",
              "schedule/cosine_decay/alpha": 0.0, "warmup": 0.1}
    plain = optimizer_from_values({**values, "wrapper": "lookahead"}, total_steps=101)
    sam = optimizer_from_values({**values, "wrapper": "sam", "wrapper/sam/rho": 0.05}, total_steps=101)
    # SAM's inner optimizer steps on every second call: 101 fit steps are 51 of its steps.
    assert _spanned(plain) == 101 and _spanned(sam) == 51


def test_a_trial_is_judged_by_its_evaluation_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")

    def build(hp):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    hypermodel = OptimizerHyperModel(build, optimizers="sgd", learning_rate=0.05, wrappers="lookahead",
                                     batch_sizes=None, epochs=1, loss="mse")
    hp = kt.HyperParameters()
    keras.utils.set_random_seed(0)
    model = hypermodel.build(hp)
    # 7 steps of 10: the fast weights are a step past the last synchronisation (every 6).
    history = hypermodel.fit(hp, model, x, y, batch_size=10, validation_data=(x, y), verbose=0)
    # Without the evaluation weights the model would end on the fast weights, one step from
    # the slow ones; it ends on the slow weights, and its last validation was theirs.
    assert int(model.optimizer.iterations) % 6 == 1
    slow = evaluation_values(model.optimizer, model.trainable_variables)
    for variable, value in zip(model.trainable_variables, slow):
        np.testing.assert_array_equal(variable.numpy(), np.asarray(value))
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


@pytest.mark.parametrize(
    "wrappers, message",
    [(["nosuch"], "Unknown wrapper 'nosuch'"), ([], "at least one"), (["gc", "gradient_centralization"], "twice"),
     ([3], "strings")],
)
def test_bad_wrappers_are_a_value_error(wrappers, message):
    with pytest.raises(ValueError, match=message):
        sample_optimizer(kt.HyperParameters(), wrappers=wrappers)
