import io

import keras
import pytest

from tfoptim.callbacks import ProgressBar


@pytest.mark.parametrize(
    "kwargs, name",
    [({"total_steps": 0}, "total_steps"), ({"metrics": "loss"}, "metrics"),
     ({"description": 3}, "description")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ProgressBar(**kwargs)


def _fit(regression, callback, **kwargs):
    x, y, _, _ = regression
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", **kwargs)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[callback])


def test_one_bar_over_all_epochs(regression):
    out = io.StringIO()
    _fit(regression, ProgressBar(description="fitting", file=out))
    text = out.getvalue()
    final = text.rstrip().split("\r")[-1]
    assert final.startswith("fitting: 100%") and "24/24" in final
    assert "epoch=3" in final and "loss=" in final


def test_counts_steps_per_execution_and_filters_metrics(regression):
    out = io.StringIO()
    _fit(regression, ProgressBar(metrics=["epoch"], file=out), steps_per_execution=4)
    final = out.getvalue().rstrip().split("\r")[-1]
    assert "24/24" in final and "loss" not in final
