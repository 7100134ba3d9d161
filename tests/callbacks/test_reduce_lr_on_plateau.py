import json

import keras
import numpy as np
import pytest

from tfoptim.callbacks import ScaledSchedule, ScheduleAwareReduceLROnPlateau
from tfoptim.schedules import OneCycle


def _decay():
    return keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)


def _plateau(callback, model, values, monitor="val_loss"):
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
    return logs


def _lr(optimizer):
    return float(optimizer.learning_rate)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"factor": 1.0}, "factor"),
        ({"factor": 0.0}, "factor"),
        ({"patience": -1}, "patience"),
        ({"cooldown": 0.5}, "cooldown"),
        ({"min_lr": -1.0}, "min_lr"),
        ({"mode": "lowest"}, "mode"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ScheduleAwareReduceLROnPlateau(**kwargs)


def test_keras_fails_on_a_schedule_and_this_does_not(digits, digits_model):
    x_train, y_train, _, _ = digits
    keras_model = digits_model(keras.optimizers.SGD(_decay()))
    with pytest.raises(TypeError):
        _plateau(keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.5), keras_model,
                 [1.0, 1.0])

    model = digits_model(keras.optimizers.SGD(_decay()))
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)  # step 2
    logs = _plateau(ScheduleAwareReduceLROnPlateau(patience=1, factor=0.5), model, [1.0, 1.0])
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, ScaledSchedule) and schedule.factor == 0.5
    assert _lr(model.optimizer) == pytest.approx(0.5 * float(_decay()(2)), rel=1e-6)
    assert logs["learning_rate"] == pytest.approx(_lr(model.optimizer))

    # The step function was re-traced with the scaled schedule: training runs at half the rate.
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    assert _lr(model.optimizer) == pytest.approx(0.5 * float(_decay()(4)), rel=1e-6)
    # A second reduction changes only the factor.
    _plateau(ScheduleAwareReduceLROnPlateau(patience=0, factor=0.5), model, [1.0, 1.0])
    assert model.optimizer._learning_rate is schedule and schedule.factor == 0.25


def test_float_learning_rate_matches_keras(digits_model):
    values = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.5, 0.6, 0.6, 0.6]
    ours = digits_model(keras.optimizers.Adam(1e-2))
    theirs = digits_model(keras.optimizers.Adam(1e-2))
    kwargs = {"patience": 2, "factor": 0.3, "cooldown": 1, "min_lr": 5e-4}
    _plateau(ScheduleAwareReduceLROnPlateau(**kwargs), ours, values)
    _plateau(keras.callbacks.ReduceLROnPlateau(**kwargs), theirs, values)
    assert isinstance(ours.optimizer._learning_rate, keras.Variable)
    assert _lr(ours.optimizer) == pytest.approx(_lr(theirs.optimizer))
    assert _lr(ours.optimizer) < 1e-2


def test_min_lr_holds_for_schedules(digits_model):
    model = digits_model(keras.optimizers.SGD(_decay()))
    _plateau(ScheduleAwareReduceLROnPlateau(patience=0, factor=0.1, min_lr=0.05), model,
             [1.0] * 4)
    assert _lr(model.optimizer) == pytest.approx(0.05, rel=1e-6)


def test_factor_survives_keras_save_and_load(tmp_path, digits, digits_model):
    x_train, y_train, _, _ = digits
    model = digits_model(keras.optimizers.Adam(_decay()))
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    _plateau(ScheduleAwareReduceLROnPlateau(patience=0, factor=0.5), model, [1.0, 1.0, 1.0])
    assert model.optimizer._learning_rate.factor == 0.25
    model.save(tmp_path / "model.keras")

    loaded = keras.models.load_model(tmp_path / "model.keras")
    schedule = loaded.optimizer._learning_rate
    assert isinstance(schedule, ScaledSchedule) and schedule.factor == 0.25
    assert _lr(loaded.optimizer) == _lr(model.optimizer)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The loaded model keeps training, and keeps being reduced.
    reduce = ScheduleAwareReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0)
    loaded.fit(x_train[:64], y_train[:64], batch_size=32, epochs=2, verbose=0, callbacks=[reduce])
    assert schedule.factor == 0.125


def test_wrapped_optimizers(digits_model):
    optimizer = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            default_optimizer=keras.optimizers.SGD(0.1, name="head"),
            optimizer_map={".*hidden.*": keras.optimizers.Adam(_decay(), name="body")},
        )
    )
    model = digits_model(optimizer)
    logs = _plateau(ScheduleAwareReduceLROnPlateau(patience=0, factor=0.5), model, [1.0, 1.0])
    head, body = optimizer.optimizers[1], optimizer.optimizers[0]
    assert _lr(head) == pytest.approx(0.05)
    assert _lr(body) == pytest.approx(0.05)
    assert logs["learning_rate_head"] == pytest.approx(0.05)

    scaled = digits_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(_decay())))
    _plateau(ScheduleAwareReduceLROnPlateau(patience=0, factor=0.5), scaled, [1.0, 1.0])
    assert _lr(scaled.optimizer) == pytest.approx(0.05)


def test_under_mirrored_strategy(digits, digits_model, two_cpu_strategy):
    x_train, y_train, _, _ = digits
    model = digits_model(lambda: keras.optimizers.SGD(_decay()), strategy=two_cpu_strategy)
    reduce = ScheduleAwareReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0)
    history = model.fit(x_train[:128], y_train[:128], batch_size=64, epochs=3, verbose=0,
                        callbacks=[reduce])
    assert model.optimizer._learning_rate.factor == 0.25
    assert history.history["learning_rate"][-1] == pytest.approx(0.25 * float(_decay()(6)))


@pytest.mark.parametrize(
    "inner",
    [0.3, _decay(), OneCycle(0.1, total_steps=300)],
    ids=["float", "keras_schedule", "tfoptim_schedule"],
)
def test_scaled_schedule_round_trips_through_json(inner):
    schedule = ScaledSchedule(inner, factor=0.25)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone.schedule) is type(inner) and clone.factor == 0.25
    for step in (0, 7, 150):
        assert float(clone(step)) == float(schedule(step))
