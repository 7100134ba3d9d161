import keras
import pytest
import tensorflow as tf

from tfoptim.callbacks import ConvergenceStopping
from tfoptim.demo import least_squares, make_data


def _linear_model(learning_rate=0.1):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def _feed(callback, values, monitor="loss"):
    """Runs the epoch-end logic on a sequence of monitored values; returns the epochs run."""
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {monitor: value})
        if callback.model.stop_training:
            return epoch + 1
    return len(values)


@pytest.fixture
def bare_model():
    model = _linear_model()
    model.stop_training = False
    return model


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"threshold": float("nan")}, "threshold"),
        ({"mode": "up"}, "mode"),
        ({"min_delta": -1.0}, "min_delta"),
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"grad_norm_tolerance": 0.0}, "grad_norm_tolerance"),
        ({"monitor": ""}, "monitor"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ConvergenceStopping(**kwargs)


def test_a_callback_without_a_test_is_refused():
    with pytest.raises(ValueError, match="`threshold`, `patience` or `grad_norm_tolerance`"):
        ConvergenceStopping(monitor="loss", min_delta=0.1)


def _demo_fit(optimizer, **kwargs):
    """The document's linear regression (y = 2x + 1 + U[0, 1), 100 points, full batch) fitted
    until ``ConvergenceStopping(monitor="loss", threshold=1.01 * optimum, **kwargs)`` stops it:
    ``(callback, losses, threshold)``."""
    x, y = make_data()
    threshold = 1.01 * least_squares(x, y)[2]
    stop = ConvergenceStopping(monitor="loss", threshold=threshold, verbose=0, **kwargs)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=len(x), epochs=2000, verbose=0, callbacks=[stop])
    return stop, history.history["loss"], threshold


@pytest.mark.variants("SGD")
@pytest.mark.parametrize(
    "optimizer",
    # Adam's loss rises for a few epochs on the way down (from epoch 49): with a threshold
    # alone that is no reason to stop.
    [lambda: keras.optimizers.SGD(0.5), lambda: keras.optimizers.Adam(0.05)],
    ids=["SGD", "Adam"],
)
def test_a_threshold_alone_stops_at_the_threshold(optimizer):
    stop, losses, threshold = _demo_fit(optimizer())
    assert stop.stopped_by == "threshold"
    assert stop.stop_reason.startswith("Stopped by the threshold test: loss = ")
    assert len(losses) < 2000
    assert losses[-1] <= threshold < losses[-2]  # it stopped at the first crossing
    assert stop.stopped_epoch == len(losses) - 1


def test_the_stall_test_runs_when_patience_is_given():
    """The same Adam run with ``patience=0`` stops at the first epoch whose loss is not a new
    best, well above the threshold: what the user asked for, and the reason says so."""
    stop, losses, threshold = _demo_fit(keras.optimizers.Adam(0.05), patience=0)
    assert stop.stopped_by == "stall"
    assert "patience=0" in stop.stop_reason
    assert losses[-1] >= min(losses[:-1]) > threshold
    assert all(b < a for a, b in zip(losses[:-2], losses[1:-1]))  # a new best until then


def test_stops_on_a_small_gradient(regression):
    x, y, _, _ = regression
    stop = ConvergenceStopping(grad_norm_tolerance=1e-3, verbose=0)
    model = _linear_model(learning_rate=0.3)
    model.fit(x, y, batch_size=len(x), epochs=2000, verbose=0, callbacks=[stop])
    assert stop.stopped_by == "gradient"
    assert "gradient norm" in stop.stop_reason
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x))
    # One more step was taken after the measured gradient, so the norm is smaller still.
    assert float(tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables))) < 1e-3


@pytest.mark.parametrize(
    "patience, min_delta, values, epochs",
    [
        (0, 0.0, [5.0, 4.0, 4.0, 3.0], 3),  # first epoch without improvement stops
        (2, 0.0, [5.0, 4.0, 4.5, 4.2, 3.9, 4.0, 4.0, 4.0], 8),  # three in a row after 3.9
        (0, 0.5, [5.0, 4.0, 3.8, 3.0], 3),  # 3.8 is not better than 4.0 by 0.5
        (None, 0.0, [5.0, 5.0, 5.0, 5.0], 4),  # switched off
    ],
)
def test_stall(bare_model, patience, min_delta, values, epochs):
    # A threshold never reached, so that `patience=None` leaves a test to run.
    stop = ConvergenceStopping(patience=patience, min_delta=min_delta, threshold=0.0, verbose=0)
    stop.set_model(bare_model)
    assert _feed(stop, values) == epochs
    if patience is not None:
        assert stop.stopped_by == "stall"
        assert stop.stopped_epoch == epochs - 1


def test_threshold_in_max_mode_for_accuracy(bare_model):
    stop = ConvergenceStopping(monitor="val_accuracy", threshold=0.9, verbose=0)
    stop.set_model(bare_model)
    # 0.8 -> 0.7 is no improvement, but without `patience` only the threshold stops.
    assert _feed(stop, [0.5, 0.8, 0.7, 0.91, 0.95], monitor="val_accuracy") == 4
    assert stop.stopped_by == "threshold" and ">=" in stop.stop_reason


def test_reason_is_printed(bare_model, capsys):
    stop = ConvergenceStopping(threshold=1.0)
    stop.set_model(bare_model)
    _feed(stop, [2.0, 0.5])
    assert "ConvergenceStopping: Stopped by the threshold test: loss = 0.5 <= threshold 1 (epoch 2)." in (
        capsys.readouterr().out
    )
