"""All the callbacks together: a model trained with them saves, loads and trains on with them,
alone and under ``MirroredStrategy``."""

import keras
import numpy as np
import pytest

from tfoptim.callbacks import (
    ConvergenceStopping,
    LearningRateFinder,
    NonFiniteRecovery,
    OptimizerMonitor,
    ProgressBar,
    ScaledSchedule,
    ScheduleAwareReduceLROnPlateau,
    TimeStopping,
)


def _callbacks():
    return [
        OptimizerMonitor(per_layer=True),
        ConvergenceStopping(monitor="val_accuracy", threshold=1.1, grad_norm_tolerance=1e-9,
                            patience=None, verbose=0),
        ScheduleAwareReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0),
        NonFiniteRecovery(verbose=0),
        TimeStopping(seconds=3600),
        ProgressBar(file="stdout"),
    ]


def _decay():
    return keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=20, decay_rate=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("distributed", [False, True], ids=["one_device", "mirrored"])
def test_train_save_load_and_train_on(tmp_path, digits, digits_model, two_cpu_strategy,
                                      distributed):
    x_train, y_train, x_val, y_val = digits
    strategy = two_cpu_strategy if distributed else None
    x, y = x_train[:256], y_train[:256]
    data = {"batch_size": 32, "validation_data": (x_val[:64], y_val[:64]), "verbose": 0}

    model = digits_model(lambda: keras.optimizers.Adam(_decay()), strategy=strategy)
    with model.distribute_strategy.scope():
        model.optimizer.build(model.trainable_variables)
    optimizer_variables = len(model.optimizer.variables)
    history = model.fit(x, y, epochs=3, callbacks=_callbacks(), **data)

    assert {"grad_norm", "update_ratio", "nonfinite_grads", "learning_rate"} <= set(
        history.history
    )
    assert len(history.history["loss"]) == 3
    assert isinstance(model.optimizer._learning_rate, ScaledSchedule)
    assert model.optimizer._learning_rate.factor == 0.25
    # Nothing was left behind on the optimizer: no hook, no extra variables.
    assert "apply" not in vars(model.optimizer)
    assert len(model.optimizer.variables) == optimizer_variables

    model.save(tmp_path / "model.keras")
    with model.distribute_strategy.scope():
        loaded = keras.models.load_model(tmp_path / "model.keras")
    for a, b in zip(model.variables + model.optimizer.variables,
                    loaded.variables + loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert loaded.optimizer._learning_rate.factor == 0.25
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)

    # Callbacks rebuilt from their configs train the loaded model on.
    rebuilt = [
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(c))
        for c in _callbacks()
    ]
    assert [type(c) for c in rebuilt] == [type(c) for c in _callbacks()]
    history = loaded.fit(x, y, epochs=2, callbacks=rebuilt, **data)
    assert len(history.history["grad_norm"]) == 2
    assert loaded.optimizer._learning_rate.factor == 0.125  # the first epoch sets the best

    finder = LearningRateFinder(num_steps=10)
    before = [v.numpy() for v in loaded.variables + loaded.optimizer.variables]
    loaded.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[finder])
    for a, b in zip(before, loaded.variables + loaded.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
    assert np.isfinite(finder.result.suggestion)
