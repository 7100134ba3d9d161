import keras
import numpy as np
import pytest

from tfoptim.callbacks import NonFiniteRecovery, ScaledSchedule

BATCH = 32
BAD_BATCH = 3


class _StepStarts(keras.callbacks.Callback):
    """The model and optimizer state at the start of every step."""

    def __init__(self):
        super().__init__()
        self.states = []

    def on_train_batch_begin(self, batch, logs=None):
        self.states.append(
            [v.numpy().copy() for v in self.model.variables]
            + [v.numpy().copy() for v in self.model.optimizer.variables]
        )


def _poisoned(digits, samples=320):
    x_train, y_train, _, _ = digits
    x, y = x_train[:samples].copy(), y_train[:samples]
    x[BAD_BATCH * BATCH + 5, 10] = np.nan
    return x, y


def _all_finite(model):
    return all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_retries": -1}, "max_retries"),
        ({"factor": 0.0}, "factor"),
        ({"factor": 1.5}, "factor"),
        ({"snapshot_every": 0}, "snapshot_every"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NonFiniteRecovery(**kwargs)


def test_recovers_from_a_planted_nan_batch(digits, digits_model):
    x, y = _poisoned(digits)
    model = digits_model(keras.optimizers.Adam(1e-2))
    starts = _StepStarts()
    recovery = NonFiniteRecovery(max_retries=3, factor=0.5, verbose=0)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                        callbacks=[starts, recovery])

    steps = len(x) // BATCH
    assert [(r["epoch"], r["batch"], r["cause"]) for r in recovery.recoveries] == [
        (0, BAD_BATCH, "loss"), (1, BAD_BATCH, "loss")
    ]
    # After each recovery the next step starts from exactly the state the bad step started
    # from: a state training really passed through. Only the learning rate differs.
    lr_index = next(
        i for i, v in enumerate(model.variables + model.optimizer.variables)
        if v is model.optimizer._learning_rate
    )
    for epoch in range(2):
        bad = epoch * steps + BAD_BATCH
        for i, (a, b) in enumerate(zip(starts.states[bad], starts.states[bad + 1])):
            if i != lr_index:
                np.testing.assert_array_equal(a, b)
        assert starts.states[bad + 1][lr_index] == pytest.approx(
            starts.states[bad][lr_index] * 0.5
        )
    assert all(all(np.all(np.isfinite(v)) for v in state) for state in starts.states)
    assert _all_finite(model)
    assert np.all(np.isfinite(history.history["loss"]))
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2 * 0.25)
    assert recovery.stop_reason is None


def test_stops_after_max_retries_with_finite_weights(digits, digits_model):
    x, y = _poisoned(digits)
    model = digits_model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100)))
    starts = _StepStarts()
    recovery = NonFiniteRecovery(max_retries=1, factor=0.5, verbose=0)
    with pytest.warns(UserWarning, match="max_retries=1"):
        history = model.fit(x, y, batch_size=BATCH, epochs=5, shuffle=False, verbose=0,
                            callbacks=[starts, recovery])
    assert len(history.history["loss"]) == 2
    assert len(recovery.recoveries) == 1
    assert "training stopped with the weights of the last good step" in recovery.stop_reason
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, ScaledSchedule) and schedule.factor == 0.5
    assert _all_finite(model)
    steps = len(x) // BATCH
    last_good = starts.states[steps + BAD_BATCH]
    for a, b in zip(last_good, [v.numpy() for v in model.variables]):
        np.testing.assert_array_equal(a, b)


class _SqrtScale(keras.layers.Layer):
    """``x * sqrt(|s|)`` with ``s`` starting at 0: finite output, NaN gradient for ``s``."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(), initializer="zeros", name="s")

    def call(self, x):
        return x * keras.ops.sqrt(keras.ops.abs(self.s)) + x


def test_detects_nonfinite_gradients_with_a_finite_loss(regression):
    x, y, _, _ = regression
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), _SqrtScale(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    recovery = NonFiniteRecovery(max_retries=2, verbose=0)
    with pytest.warns(UserWarning, match="non-finite gradient"):
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[recovery])
    assert [r["cause"] for r in recovery.recoveries] == ["gradient", "gradient"]
    assert _all_finite(model)


def test_loss_scale_optimizer_overflows_are_left_to_it(digits, digits_model):
    x_train, y_train, _, _ = digits
    model = digits_model(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=1e38)
    )
    recovery = NonFiniteRecovery(verbose=0)
    model.fit(x_train[:320], y_train[:320], batch_size=BATCH, epochs=1, verbose=0,
              callbacks=[recovery])
    assert recovery.recoveries == []
    assert float(model.optimizer.dynamic_scale) < 1e38
    assert _all_finite(model)


def test_under_mirrored_strategy(digits, digits_model, two_cpu_strategy):
    x, y = _poisoned(digits, samples=256)
    model = digits_model("adam", strategy=two_cpu_strategy)
    recovery = NonFiniteRecovery(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recovery])
    assert [r["batch"] for r in recovery.recoveries] == [BAD_BATCH]
    assert _all_finite(model)
