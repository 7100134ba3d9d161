import keras
import pytest

from tfoptim.callbacks import TimeStopping


@pytest.mark.parametrize(
    "kwargs, name", [({"seconds": -1}, "seconds"), ({"verbose": 2}, "verbose")]
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TimeStopping(**kwargs)


def test_an_exhausted_budget_stops_after_the_first_batch(regression, capsys):
    x, y, _, _ = regression
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    stop = TimeStopping(seconds=0, verbose=1)
    history = model.fit(x, y, batch_size=32, epochs=50, verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) == 1
    assert int(model.optimizer.iterations) == 1
    assert stop.stopped_epoch == 0
    assert "Timed stopping at epoch 1 after training for 0:00:0" in capsys.readouterr().out


def test_a_generous_budget_does_not_stop(regression):
    x, y, _, _ = regression
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    stop = TimeStopping(seconds=3600)
    history = model.fit(x, y, batch_size=256, epochs=3, verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) == 3 and stop.stopped_epoch is None
