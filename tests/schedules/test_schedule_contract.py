"""What every public schedule promises, checked on the examples in ``schedule_testing``:
serialization (config, Keras registry, a saved ``.keras`` model's optimizer), int32/int64 and
XLA giving the same values, and scalar calls agreeing with vector calls."""

import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from schedules.schedule_testing import (
    CONTRACT_STEPS,
    EXAMPLES,
    assert_close,
    evaluate,
    torch_version,
)
from tfoptim import schedules

CLASSES = [
    getattr(schedules, name)
    for name in schedules.__all__
    if inspect.isclass(getattr(schedules, name))
]


def test_every_public_schedule_has_an_example():
    covered = {type(factory()) for factory in EXAMPLES.values()}
    assert set(CLASSES) <= covered


def test_fixture_was_recorded_with_the_pinned_torch():
    assert torch_version().startswith("2.13.0")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_is_registered_under_the_tfoptim_package(cls):
    assert issubclass(cls, keras.optimizers.schedules.LearningRateSchedule)
    assert keras.saving.get_registered_name(cls) == f"tfoptim>{cls.__name__}"
    assert keras.saving.get_registered_object(f"tfoptim>{cls.__name__}") is cls


@pytest.fixture(params=list(EXAMPLES), scope="module")
def example(request):
    schedule = EXAMPLES[request.param]()
    return schedule, evaluate(schedule, CONTRACT_STEPS)


def test_config_holds_exactly_the_constructor_arguments(example):
    schedule, expected = example
    config = schedule.get_config()
    assert list(config) == list(inspect.signature(type(schedule)).parameters)
    rebuilt = type(schedule).from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    assert_close(evaluate(rebuilt, CONTRACT_STEPS), expected, rtol=0)


def test_keras_serialize_round_trip(example):
    schedule, expected = example
    serialized = json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    assert serialized["registered_name"] == f"tfoptim>{type(schedule).__name__}"
    rebuilt = keras.optimizers.schedules.deserialize(serialized)
    assert type(rebuilt) is type(schedule)
    assert_close(evaluate(rebuilt, CONTRACT_STEPS), expected, rtol=0)


def test_survives_a_saved_keras_model(example, tmp_path):
    schedule, expected = example
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    model.save(tmp_path / "model.keras")
    optimizer = keras.saving.load_model(tmp_path / "model.keras").optimizer
    for index in (0, 1, 100, 101, 700, 1299, -1):
        optimizer.iterations.assign(CONTRACT_STEPS[index])
        assert_close(float(optimizer.learning_rate), expected[index])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_same_values_with_xla_and_either_integer_dtype(example, dtype):
    schedule, expected = example
    assert_close(evaluate(schedule, CONTRACT_STEPS, dtype=dtype), expected)
    assert_close(evaluate(schedule, CONTRACT_STEPS, dtype=dtype, jit_compile=True), expected)


def test_scalar_steps_agree_with_the_vector(example):
    schedule, expected = example
    picks = [0, 1, 99, 100, 101, 500, 1299]
    for index in picks:
        step = int(CONTRACT_STEPS[index])
        for argument in (step, np.int64(step), tf.constant(step, tf.int64), tf.constant(step)):
            rate = schedule(argument)
            assert rate.shape == () and rate.dtype == tf.float32
            assert_close(float(rate), expected[index])


def test_negative_steps(example):
    schedule, expected = example
    with pytest.raises(ValueError, match="steps >= 0"):
        schedule(-1)
    # Inside a graph a negative step cannot raise; it is clamped to step 0.
    assert_close(evaluate(schedule, [-5]), expected[:1])
