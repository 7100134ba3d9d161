"""What every callback promises: a config that is its constructor arguments, and, for those that
watch a logged quantity, a warning rather than a failure when it is missing."""

import inspect
import json

import keras
import pytest

import tfoptim.callbacks
from tfoptim.callbacks import (
    ConvergenceStopping,
    EvaluationWeights,
    LearningRateFinder,
    NonFiniteRecovery,
    OptimizerMonitor,
    ProgressBar,
    ScheduleAwareReduceLROnPlateau,
    TimeStopping,
)

# Every argument differs from its default, so a get_config that writes a default (or a
# from_config that drops an argument) shows up. OptimizerMonitor's `histograms=True` is left
# out: it needs the optional `tensorboard` package at construction.
ARGUMENTS = {
    ConvergenceStopping: dict(monitor="val_accuracy", threshold=0.95, mode="max",
                              min_delta=0.01, patience=3, grad_norm_tolerance=1e-6,
                              verbose=0),
    EvaluationWeights: dict(checkpoints=False, final=False),
    LearningRateFinder: dict(min_learning_rate=1e-5, max_learning_rate=1.0, num_steps=30,
                             smoothing=0.9, divergence_factor=3.0, method="minimum/10",
                             verbose=1),
    NonFiniteRecovery: dict(max_retries=1, factor=0.25, snapshot_every=4, verbose=0),
    OptimizerMonitor: dict(log_every=5, histograms=False, per_layer=True, log_dir="logs"),
    ProgressBar: dict(total_steps=50, description="sweep", metrics=["loss"], file="stdout",
                      leave=False),
    ScheduleAwareReduceLROnPlateau: dict(monitor="loss", factor=0.5, patience=2, verbose=1,
                                         mode="min", min_delta=0.01, cooldown=1, min_lr=1e-5),
    TimeStopping: dict(seconds=90.0, verbose=1),
}


def _public_callbacks():
    exported = (getattr(tfoptim.callbacks, name) for name in tfoptim.callbacks.__all__)
    return [
        cls for cls in exported
        if inspect.isclass(cls) and issubclass(cls, keras.callbacks.Callback)
    ]


@pytest.mark.parametrize("cls", _public_callbacks(), ids=lambda cls: cls.__name__)
def test_config_is_the_constructor_arguments_and_round_trips(cls):
    parameters = set(inspect.signature(cls).parameters)
    arguments = ARGUMENTS[cls]
    assert set(arguments) == parameters, "ARGUMENTS must name every constructor argument"

    callback = cls(**arguments)
    config = callback.get_config()
    assert set(config) == parameters
    assert config == arguments

    assert cls.from_config(config).get_config() == config
    # Through Keras and JSON, as a config file would take it.
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(callback)))
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is cls and clone.get_config() == config


@pytest.mark.parametrize("cls", [ConvergenceStopping, ScheduleAwareReduceLROnPlateau])
def test_a_missing_monitor_warns_and_changes_nothing(cls):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.stop_training = False
    callback = cls(monitor="val_loss", patience=0, verbose=0)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(3):
        with pytest.warns(UserWarning, match=f"{cls.__name__} monitors `val_loss`") as caught:
            callback.on_epoch_end(epoch, {"loss": 1.0})
        assert "Available: loss" in str(caught[0].message)
        # Attributed to whoever called the callback (Keras's callback list), not to tfoptim.
        assert caught[0].filename == __file__
    assert not model.stop_training
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
