import io

import keras
import pytest

from tfoptim.callbacks import ProgressBar


@pytest.mark.parametrize(
    "kwargs, name",
    [({"total_steps": 0}, "total_steps"), ({"metrics": "loss"}, "metrics"),
     ({"description": 3}, "description"), ({"file": io.StringIO()}, "file"),
     ({"leave": "yes"}, "leave")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ProgressBar(**kwargs)


def _fit(regression, callback, **kwargs):
    x, y, _, _ = regression
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", **kwargs)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[callback])


def _final_line(text):
    return text.rstrip().split("\r")[-1]


def test_one_bar_over_all_epochs(regression, capsys):
    _fit(regression, ProgressBar(description="fitting"))
    captured = capsys.readouterr()
    assert captured.out == ""
    final = _final_line(captured.err)
    assert final.startswith("fitting: 100%") and "24/24" in final
    assert "epoch=3" in final and "loss=" in final


def test_counts_steps_per_execution_and_filters_metrics(regression, capsys):
    _fit(regression, ProgressBar(metrics=["epoch"], file="stdout"), steps_per_execution=4)
    captured = capsys.readouterr()
    assert captured.err == ""
    final = _final_line(captured.out)
    assert "24/24" in final and "loss" not in final
