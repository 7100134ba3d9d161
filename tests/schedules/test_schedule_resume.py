"""The optimizer drives the schedule with its own iteration count, so training resumed from a
saved ``.keras`` model sees exactly the learning rates of an uninterrupted run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from schedules.schedule_testing import assert_close
from tfoptim.schedules import LinearWarmup, OneCycle, SequentialSchedule, StepDecay, values

BATCHES_PER_EPOCH = 4


class RecordLearningRate(keras.callbacks.Callback):
    """The rate each batch's update will use: the schedule at the optimizer's count so far."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def compiled_model(schedule, **optimizer_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(learning_rate=schedule, **optimizer_kwargs)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def fit(model, epochs, initial_epoch=0):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * BATCHES_PER_EPOCH, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    recorder = RecordLearningRate()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[recorder],
    )
    return recorder.rates


SCHEDULES = {
    "one_cycle": lambda: OneCycle(0.05, total_steps=24, pct_start=0.25),
    "nested": lambda: SequentialSchedule(
        [
            LinearWarmup(StepDecay(0.05, 3), 5),
            keras.optimizers.schedules.CosineDecayRestarts(0.02, 4),
        ],
        [14],
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_save_load_and_continue_sees_the_same_rates(name, tmp_path):
    straight = compiled_model(SCHEDULES[name]())
    straight_rates = fit(straight, epochs=6)

    first = compiled_model(SCHEDULES[name]())
    first_rates = fit(first, epochs=3)
    first.save(tmp_path / "checkpoint.keras")
    resumed = keras.saving.load_model(tmp_path / "checkpoint.keras")
    assert int(resumed.optimizer.iterations) == 3 * BATCHES_PER_EPOCH
    resumed_rates = fit(resumed, epochs=6, initial_epoch=3)

    assert len(straight_rates) == 6 * BATCHES_PER_EPOCH
    assert_close(first_rates + resumed_rates, straight_rates, rtol=0)
    assert_close(straight_rates, values(SCHEDULES[name](), 6 * BATCHES_PER_EPOCH))
    for before, after in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(after, before)


def test_with_gradient_accumulation_the_schedule_counts_micro_batches():
    # Keras calls the schedule with optimizer._iterations, which counts every apply() call
    # (micro-batch); optimizer.iterations counts real updates. The k-th real update happens on
    # micro-batch k * A + A - 1 and uses the schedule's value there.
    accumulate = 3
    schedule = StepDecay(0.1, 2, 0.5)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, gradient_accumulation_steps=accumulate)
    variable = keras.Variable([0.0])
    optimizer.build([variable])
    rates, iterations, positions = [], [], []
    for _ in range(4 * accumulate):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply([tf.constant([1.0])], [variable])
        iterations.append(int(optimizer.iterations))
        positions.append(float(variable[0]))
    expected = values(schedule, 4 * accumulate)
    assert_close(rates, expected)
    assert iterations == [(m + 1) // accumulate for m in range(4 * accumulate)]
    updates = [m for m in range(4 * accumulate) if (m + 1) % accumulate == 0]
    assert_close(positions[-1], -sum(expected[m] for m in updates))
    assert_close(positions[accumulate - 1], -expected[accumulate - 1])
