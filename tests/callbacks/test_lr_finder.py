import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.cli
from tfoptim.callbacks import LearningRateFinder, LearningRateFinderResult, find_learning_rate
from tfoptim.callbacks.lr_finder import _smooth, _suggest


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"min_learning_rate": 0.0}, "min_learning_rate"),
        ({"min_learning_rate": 1e-3, "max_learning_rate": 1e-4}, "max_learning_rate"),
        ({"num_steps": 2}, "num_steps"),
        ({"num_steps": 10.5}, "num_steps"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        ({"method": "valley"}, "method"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LearningRateFinder(**kwargs)


def test_sweep_is_exponential_from_min_to_max():
    finder = LearningRateFinder(min_learning_rate=1e-6, max_learning_rate=1.0, num_steps=7)
    rates = [finder.learning_rate_at(i) for i in range(7)]
    np.testing.assert_allclose(rates, np.logspace(-6, 0, 7), rtol=1e-12)


def test_suggestions_on_a_known_curve():
    # Loss falls fastest (against log lr) at 1e-3 and bottoms out at 1e-1.
    rates = np.logspace(-6, 0, 61)
    log_lr = np.log10(rates)
    losses = 2.0 - np.tanh(2.0 * (log_lr + 3.0)) + 0.5 * np.maximum(log_lr + 1.0, 0.0) ** 2
    smoothed = _smooth(losses, 0.0)
    np.testing.assert_array_equal(smoothed, np.minimum(losses, np.median(losses[:6])))
    assert _suggest(rates, smoothed, "steepest") == pytest.approx(1e-3, rel=1e-9)
    # The grid's lowest loss is exactly at 1e-1 (1.00067; its neighbours 1.0010 and 1.0055).
    assert _suggest(rates, smoothed, "minimum/10") == pytest.approx(1e-1 / 10, rel=1e-9)


def test_smoothing_does_not_lag():
    # A one-way moving average would cross the middle of this step ~25 steps late.
    losses = np.where(np.arange(100) < 50, 2.0, 1.0)
    smoothed = _smooth(losses, 0.98)
    assert smoothed[49] > 1.5 > smoothed[50]
    np.testing.assert_allclose(smoothed[:50], 3.0 - smoothed[::-1][:50])


def test_suggestion_on_digits_trains_well(digits, digits_model):
    """The issue's end-to-end check: Adam on a digits MLP."""
    x_train, y_train, x_val, y_val = digits
    model = digits_model("adam")
    result = find_learning_rate(model, x_train, y_train, batch_size=32, progress=False)
    assert isinstance(result, LearningRateFinderResult)
    assert result.method == "steepest"
    assert 1e-4 <= result.suggestion <= 1e-1
    assert set(result.suggestions) == {"steepest", "minimum/10"}
    assert len(result.learning_rates) == len(result.losses) == len(result.smoothed_losses)
    assert np.all(np.diff(result.learning_rates) > 0)
    # docs/callbacks.md: smoothing=0.9 follows the raw loss closely yet moves the suggestion
    # little, because the two-sided average does not lag.
    lighter = _suggest(result.learning_rates, _smooth(result.losses, 0.9), "steepest")
    assert 0.5 < lighter / result.suggestion < 2.0

    keras.utils.set_random_seed(1)
    fresh = digits_model(keras.optimizers.Adam(result.suggestion))
    history = fresh.fit(
        x_train, y_train, batch_size=32, epochs=5, validation_data=(x_val, y_val), verbose=0
    )
    assert history.history["val_accuracy"][-1] >= 0.9


def test_stops_early_on_divergence(digits, digits_model):
    x_train, y_train, _, _ = digits
    model = digits_model(keras.optimizers.SGD(0.1))
    result = find_learning_rate(
        model, x_train, y_train, min_learning_rate=1e-3, max_learning_rate=1e6, num_steps=80,
        progress=False,
    )
    assert result.diverged
    assert len(result.losses) < 80


@pytest.mark.parametrize("schedule", [False, True], ids=["float_lr", "schedule_lr"])
def test_model_and_optimizer_are_restored_bit_for_bit(
    digits, digits_model, state_of, assert_same_state, schedule
):
    x_train, y_train, _, _ = digits
    if schedule:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    else:
        learning_rate = 1e-3
    model = digits_model(keras.optimizers.Adam(learning_rate))
    # Train first, so that slots, iterations and a traced step function all exist.
    model.fit(x_train[:256], y_train[:256], batch_size=32, epochs=1, verbose=0)
    lr_object = model.optimizer._learning_rate
    lr_before = float(model.optimizer.learning_rate)
    before = state_of(model)

    find_learning_rate(model, x_train, y_train, num_steps=30, progress=False)

    assert_same_state(before, state_of(model))
    assert model.optimizer._learning_rate is lr_object
    assert float(model.optimizer.learning_rate) == lr_before
    # The step function was re-traced with the original learning rate: training goes on at it.
    model.fit(x_train[:32], y_train[:32], batch_size=32, epochs=1, verbose=0)
    if schedule:
        assert float(model.optimizer.learning_rate) == pytest.approx(
            float(learning_rate(model.optimizer.iterations))
        )
    else:
        assert float(model.optimizer.learning_rate) == lr_before


def test_restores_an_optimizer_that_was_never_used(digits, digits_model):
    x_train, y_train, _, _ = digits
    model = digits_model("adam")
    finder = LearningRateFinder(num_steps=10)
    model.fit(x_train, y_train, epochs=1, verbose=0, callbacks=[finder])
    assert int(model.optimizer.iterations) == 0
    slots = [v.numpy() for v in model.optimizer.variables if "momentum" in v.name]
    assert slots and all(not s.any() for s in slots)
    assert len(finder.result.losses) == 10


@pytest.mark.parametrize("wrapper", ["loss_scale", "multi"])
def test_wrapped_optimizers(digits, digits_model, state_of, assert_same_state, wrapper):
    x_train, y_train, _, _ = digits
    if wrapper == "loss_scale":
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3))
    else:
        optimizer = keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                default_optimizer=keras.optimizers.SGD(1e-2),
                optimizer_map={".*hidden.*": keras.optimizers.Adam(1e-3)},
            )
        )
    model = digits_model(optimizer)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    before = state_of(model)
    result = find_learning_rate(model, x_train, y_train, num_steps=40, progress=False)
    assert np.isfinite(result.suggestion)
    assert_same_state(before, state_of(model))


def test_under_mirrored_strategy(digits, digits_model, two_cpu_strategy, state_of,
                                 assert_same_state):
    x_train, y_train, _, _ = digits
    model = digits_model("adam", strategy=two_cpu_strategy)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    before = state_of(model)
    result = find_learning_rate(model, x_train, y_train, num_steps=40, progress=False)
    assert 1e-4 <= result.suggestion <= 1e-1
    assert_same_state(before, state_of(model))


def test_accepts_a_tf_data_dataset(digits, digits_model):
    x_train, y_train, _, _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x_train[:320], y_train[:320])).batch(32)
    result = find_learning_rate(digits_model("adam"), dataset, num_steps=25, progress=False)
    assert len(result.losses) == 25  # 10 batches, repeated as the sweep needs


def test_plot_and_json(tmp_path):
    rates = np.logspace(-5, 0, 30)
    losses = 2.0 - np.tanh(np.log10(rates) + 3.0)
    smoothed = _smooth(losses, 0.9)
    result = LearningRateFinderResult(
        rates, losses, smoothed, False, "steepest", _suggest(rates, smoothed, "steepest")
    )
    figure = result.plot(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    assert figure.axes[0].get_xscale() == "log"
    result.to_json(tmp_path / "sweep.json")
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["suggestion"] == result.suggestion
    assert len(data["learning_rates"]) == 30


def test_tfoptim_lr_find_command(tmp_path, capsys, monkeypatch):
    # Only this subcommand is wired, so the test does not depend on the others importing.
    monkeypatch.setattr(tfoptim.cli, "COMMANDS", {"lr-find": tfoptim.cli.COMMANDS["lr-find"]})
    argv = ["lr-find", "--output", str(tmp_path), "--steps", "40", "--no-progress"]
    assert tfoptim.cli.main(argv) == 0

    sweep = json.loads((tmp_path / "lr_finder.json").read_text())
    rates = sweep["learning_rates"]
    expected = [LearningRateFinder(num_steps=40).learning_rate_at(i) for i in range(len(rates))]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    # Only divergence ends a sweep early, and Adam's loss on the digits MLP still falls at 0.1
    # (docs/img/callbacks/lr_finder.png), which the 40-step sweep passes at step 29.25.
    assert len(sweep["losses"]) == 40 or sweep["diverged"]
    assert 31 <= len(sweep["losses"]) <= 40
    assert 1e-4 <= sweep["suggestion"] <= 1e-1

    out = capsys.readouterr().out
    assert f"{len(rates)} steps" in out
    assert f"steepest: {sweep['suggestion']:.3g}  <- suggestion" in out
    assert (tmp_path / "lr_finder.png").read_bytes().startswith(b"\x89PNG")
