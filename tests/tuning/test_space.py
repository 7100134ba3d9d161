"""The search space: names, conditional scopes, priors, schedules and bad input."""

import inspect
import json

import keras
import keras_tuner as kt
import numpy as np
import pytest

import tfoptim.optimizers
import tfoptim.schedules
from tfoptim.tuning import (
    canonical_names,
    optimizer_from_values,
    optimizer_names,
    sample_optimizer,
    schedule_names,
)
from tfoptim.tuning import schedules as schedule_space
from tfoptim.tuning import space


def _sampled(optimizers, seed, **kwargs):
    """Samples once to declare the space, then again with random values for it."""
    hp = kt.HyperParameters()
    sample_optimizer(hp, optimizers=optimizers, **kwargs)
    space_only = hp.copy()
    rng = np.random.default_rng(seed)
    values = {}
    for parameter in space_only.space:
        if all(values.get(c.name) in c.values for c in parameter.conditions):
            values[parameter.name] = parameter.random_sample(int(rng.integers(1 << 30)))
    hp.values = values
    return hp, sample_optimizer(hp, optimizers=optimizers, **kwargs)


def test_every_exported_optimizer_is_named():
    names = canonical_names()
    for class_name in tfoptim.optimizers.__all__:
        cls = getattr(tfoptim.optimizers, class_name)
        if not inspect.isclass(cls) or cls is tfoptim.optimizers.Optimizer:
            continue
        if not space._constructible(cls):
            continue  # wrappers around another optimizer
        assert space.resolve(class_name).cls is cls
        assert space.resolve(cls.__module__.rsplit(".", 1)[-1]).cls is cls
    for class_name in dir(keras.optimizers):
        cls = getattr(keras.optimizers, class_name)
        if inspect.isclass(cls) and space._constructible(cls) and cls is not keras.optimizers.Optimizer:
            assert space.resolve(f"keras.{class_name}").cls is cls
    assert {"sgd", "momentum", "rmsprop", "adam", "adamw", "keras.adam", "keras.lion"} <= set(names)
    assert space.resolve("lion").cls in (keras.optimizers.Lion, getattr(tfoptim.optimizers, "Lion", None))
    assert space.resolve("Adam").cls is tfoptim.optimizers.Adam


@pytest.mark.parametrize("seed", [0, 1])
def test_every_named_optimizer_builds_from_the_space(seed):
    for index, name in enumerate(canonical_names()):
        probe, optimizer = _sampled([name], 1000 * seed + index)
        assert isinstance(optimizer, space.resolve(name).cls), name
        config = keras.optimizers.serialize(optimizer)
        config = json.loads(json.dumps(config))
        # Keras's own deserialize table misses its Lamb; the generic deserializer reads it.
        deserialize = (keras.saving.deserialize_keras_object if name == "keras.lamb"
                       else keras.optimizers.deserialize)
        again = deserialize(config)
        assert again.get_config() == optimizer.get_config(), name
        expected = {k.split("/", 1)[1]: v for k, v in probe.values.items() if k.startswith(f"{name}/")}
        for argument, value in expected.items():
            if argument != "learning_rate":
                assert optimizer.get_config()[argument] == pytest.approx(value), (name, argument)


def test_conditional_scopes_leave_inactive_hyperparameters_unset():
    hp = kt.HyperParameters()
    hp.values = {"optimizer": "adam"}
    optimizer = sample_optimizer(hp, optimizers=("momentum", "rmsprop", "adam"))
    assert isinstance(optimizer, tfoptim.optimizers.Adam)
    names = {p.name for p in hp.space}
    # The whole space is declared (Bayesian optimization and grid search need it) ...
    assert {"momentum/momentum", "momentum/nesterov", "rmsprop/rho", "adam/beta_1"} <= names
    # ... but only the chosen optimizer's hyperparameters hold values.
    assert set(hp.values) == {"optimizer", "adam/learning_rate", "adam/beta_1", "adam/beta_2",
                              "adam/epsilon"}
    assert not hp.is_active("rmsprop/rho")
    assert hp.get("adam/beta_1") == pytest.approx(0.9)  # the constructor's default first


def test_priors_come_from_the_constructor():
    assert space.resolve("adam").tuned == ("beta_1", "beta_2", "epsilon")
    assert space.resolve("rmsprop").tuned == ("rho", "epsilon")  # momentum=0 stays 0
    assert space.resolve("momentum").tuned == ("momentum", "nesterov")
    assert space.resolve("sgd").tuned == ()
    assert space.resolve("momentum").build().momentum == 0.9  # the preset's start value
    assert "weight_decay" in space.resolve("adamw").tuned  # decoupled decay by default
    assert "weight_decay" not in space.resolve("adam").tuned
    adam, sgd, lion = (space.resolve(n) for n in ("adam", "sgd", "keras.lion"))
    assert adam.learning_rate_range == (1e-5, 1e-2)
    assert sgd.learning_rate_range == (1e-3, 1.0)
    assert lion.learning_rate_range == (1e-6, 1e-3)
    assert space.learning_rate_prior(sgd, (1e-5, 1e-1)) == ("float", 1e-3, 1e-1)
    assert space.learning_rate_prior(adam, [1e-3, 1e-2]) == ("choice", [1e-3, 1e-2])
    assert space.learning_rate_prior(adam, None) == ("float", 1e-5, 1e-2)


def test_priors_override_and_fixed_arguments():
    hp = kt.HyperParameters()
    optimizer = sample_optimizer(
        hp, optimizers=["adam"], tune_arguments=False, learning_rate=3e-3,
        priors={"beta_2": [0.99, 0.999], "amsgrad": True},
    )
    assert set(hp.values) == {"optimizer", "adam/learning_rate", "adam/beta_2", "adam/amsgrad"}
    assert optimizer.amsgrad is True
    assert float(optimizer.learning_rate) == pytest.approx(3e-3)


def test_schedules_cover_keras_and_tfoptim():
    covered = {type(s).__name__ for s in _every_schedule()}
    keras_schedules = {
        n for n in dir(keras.optimizers.schedules)
        if inspect.isclass(getattr(keras.optimizers.schedules, n)) and n != "LearningRateSchedule"
    }
    ours = {n for n in tfoptim.schedules.__all__ if inspect.isclass(getattr(tfoptim.schedules, n))}
    assert (keras_schedules | ours) - covered <= set(schedule_space.COMBINATORS)


def _every_schedule():
    built = []
    for index, schedule in enumerate(schedule_names()):
        hp = kt.HyperParameters()
        hp.values = {"optimizer": "adam", "schedule": schedule}
        optimizer = sample_optimizer(hp, optimizers=["adam"], schedules=schedule_names(),
                                     warmup=0.05, total_steps=200)
        rate = optimizer.learning_rate if schedule == "constant" else optimizer._learning_rate
        if schedule != "constant":
            inner = getattr(rate, "schedule", rate)
            built.append(inner)
            peak = hp.get("adam/learning_rate")
            values = np.array([float(rate(s)) for s in (0, 10, 100, 199)])
            assert np.all(np.isfinite(values)) and np.all(values <= peak * (1 + 1e-6)), schedule
            again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
            assert float(again._learning_rate(100)) == pytest.approx(values[2]), schedule
    return built


def test_warmup_is_a_fraction_of_the_total_steps():
    hp = kt.HyperParameters()
    hp.values = {"optimizer": "adam", "adam/learning_rate": 1e-2, "schedule": "cosine_decay"}
    optimizer = sample_optimizer(hp, optimizers=["adam"], schedules=["cosine", "constant"],
                                 warmup=0.1, total_steps=1000)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, tfoptim.schedules.LinearWarmup) and schedule.warmup_steps == 100
    assert float(schedule(100)) == pytest.approx(1e-2)
    assert schedule.schedule.decay_steps == 900


def test_warmup_is_inactive_for_one_cycle_whose_rise_is_its_warmup():
    hp = kt.HyperParameters()
    hp.values = {"optimizer": "adam", "adam/learning_rate": 1e-2, "schedule": "one_cycle"}
    sample_optimizer(hp, optimizers=["adam"], schedules=["one_cycle", "cosine"],
                     warmup=(0.0, 0.2), total_steps=1000)
    assert not hp.is_active(hp._hps["warmup"][0])
    hp.values["schedule"] = "cosine_decay"
    assert hp.is_active(hp._hps["warmup"][0])


def test_values_rebuild_the_optimizer():
    hp, optimizer = _sampled(("momentum", "adamw"), 3)
    again = optimizer_from_values(hp.values)
    # A new optimizer takes Keras's next unique name; everything else is the same.
    assert {**again.get_config(), "name": None} == {**optimizer.get_config(), "name": None}


def test_several_optimizers_in_one_model():
    hp = kt.HyperParameters()
    sample_optimizer(hp, optimizers=["adam", "sgd"])
    sample_optimizer(hp, optimizers=["adam", "rmsprop"], name="discriminator")
    assert {"optimizer", "adam/learning_rate", "discriminator",
            "discriminator/adam/learning_rate"} <= set(hp.values)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizers": ["adam", "nosuch"]}, "Unknown optimizer 'nosuch'"),
        ({"optimizers": []}, "at least one"),
        ({"optimizers": ["adam", "Adam"]}, "twice"),
        ({"schedules": []}, "at least one"),
        ({"schedules": ["nosuch"], "total_steps": 10}, "Unknown schedule"),
        ({"learning_rate": (1e-1, 1e-5)}, "0 < low < high"),
        ({"learning_rate": (0.0, 1e-1)}, "0 < low < high"),
        ({"learning_rate": []}, "must not be empty"),
        ({"learning_rate": -1.0}, "must be > 0"),
        ({"priors": {"beta_1": (0.99, 0.9)}}, "low < high"),
        ({"priors": {"beta_1": []}}, "must not be empty"),
        ({"warmup": (0.2, 0.1), "total_steps": 10}, "0 <= low <= high < 1"),
        ({"schedules": ["cosine"]}, "total_steps"),
        ({"total_steps": 0}, "total_steps"),
    ],
)
def test_bad_input_is_a_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_optimizer(kt.HyperParameters(), **kwargs)


def test_names_listed():
    assert "keras.adam" in optimizer_names() and "schedulefreeadamw" in optimizer_names()
    assert "one_cycle" in schedule_names() and "constant" in schedule_names()
