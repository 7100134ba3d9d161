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


def _poisoned(digits, samples=320, row=5):
    x_train, y_train, _, _ = digits
    x, y = x_train[:samples].copy(), y_train[:samples]
    x[BAD_BATCH * BATCH + row, 10] = np.nan
    return x, y


def _all_finite(model):
    return all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


def _events(recovery):
    return [(r["epoch"], r["batch"], r["cause"], r["action"]) for r in recovery.recoveries]


def _regression_model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


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


def test_a_nan_input_is_skipped_from_the_state_before_it(digits, digits_model):
    """One NaN pixel: whether it reaches the loss or only the gradient (``relu(nan)`` is 0 on
    some CPUs) the cause is ``"inputs"``, found in the data itself, and the batch is skipped:
    the next step starts from exactly the state the bad one started from, rate included."""
    x, y = _poisoned(digits)
    model = digits_model(keras.optimizers.Adam(1e-2))
    starts = _StepStarts()
    recovery = NonFiniteRecovery(max_retries=0, factor=0.5, verbose=0)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                        callbacks=[starts, recovery])

    steps = len(x) // BATCH
    assert _events(recovery) == [(0, BAD_BATCH, "inputs", "skipped"), (1, BAD_BATCH, "inputs", "skipped")]
    assert recovery.skipped_batches == [(0, BAD_BATCH), (1, BAD_BATCH)]
    assert all(r["learning_rates"] == [] for r in recovery.recoveries)
    for epoch in range(2):
        bad = epoch * steps + BAD_BATCH
        for a, b in zip(starts.states[bad], starts.states[bad + 1]):
            np.testing.assert_array_equal(a, b)
    assert all(all(np.all(np.isfinite(v)) for v in state) for state in starts.states)
    assert np.all(np.isfinite(history.history["loss"]))
    assert float(model.optimizer.learning_rate) == np.float32(1e-2)
    assert recovery.stop_reason is None


def test_a_recurring_corrupt_batch_costs_only_its_own_steps(digits, digits_model):
    """64 NaN rows at a fixed place (batches 10 and 11), three epochs: halving the rate at each
    recurrence would leave Adam at 1/64 of its rate. Skipped, the run is the run on the data
    without those rows."""
    x_train, y_train, x_val, y_val = digits
    rows = slice(10 * BATCH, 12 * BATCH)
    x = x_train.copy()
    x[rows] = np.nan
    model = digits_model(keras.optimizers.Adam(1e-3))
    recovery = NonFiniteRecovery(max_retries=100, verbose=0)
    model.fit(x, y_train, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
              callbacks=[recovery])

    keep = np.ones(len(x), bool)
    keep[rows] = False
    clean = digits_model(keras.optimizers.Adam(1e-3))
    clean.fit(x_train[keep], y_train[keep], batch_size=BATCH, epochs=3, shuffle=False, verbose=0)

    assert recovery.skipped_batches == [(e, b) for e in range(3) for b in (10, 11)]
    assert float(model.optimizer.learning_rate) == np.float32(1e-3)
    assert int(model.optimizer.iterations) == int(clean.optimizer.iterations)
    # The same steps on the same batches: equal up to the scheduling of CPU threads.
    for ours, theirs in zip(model.get_weights(), clean.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    accuracy = model.evaluate(x_val, y_val, verbose=0)[1]
    assert accuracy == pytest.approx(clean.evaluate(x_val, y_val, verbose=0)[1], abs=0.01)
    assert accuracy > 0.7


def test_finite_data_that_fails_again_is_lowered_for_once_then_skipped(regression):
    """A target of 3e19 (finite) makes the squared error overflow float32. Its first failure
    cannot be told from divergence: the rate is lowered. When the same batch fails again from a
    good state in the next epochs, it is skipped."""
    x, y, _, _ = regression
    y = y.copy()
    y[BAD_BATCH * 64 + 5] = 3e19
    model = _regression_model(keras.optimizers.SGD(0.1))
    recovery = NonFiniteRecovery(verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0,
                        callbacks=[recovery])
    assert _events(recovery) == [
        (0, BAD_BATCH, "loss", "lowered"), (1, BAD_BATCH, "loss", "skipped"),
        (2, BAD_BATCH, "loss", "skipped"),
    ]
    assert float(model.optimizer.learning_rate) == np.float32(0.05)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_a_divergence_lowers_the_rate_until_training_recovers(regression):
    """SGD at 2.0 on a problem whose curvature is ~2 (stable below ~1): finite data, a loss
    that grows until it overflows. Every failure lowers the rate; restored up to four batches
    back, training converges once the rate is low enough."""
    x, y, _, _ = regression
    model = _regression_model(keras.optimizers.SGD(2.0))
    recovery = NonFiniteRecovery(max_retries=10, snapshot_every=4, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0,
                        callbacks=[recovery])
    assert recovery.recoveries, "the run did not diverge"
    assert {r["cause"] for r in recovery.recoveries} <= {"loss", "gradient"}
    assert {r["action"] for r in recovery.recoveries} == {"lowered"}
    assert float(model.optimizer.learning_rate) == pytest.approx(2.0 * 0.5 ** len(recovery.recoveries))
    assert recovery.stop_reason is None
    assert history.history["loss"][-1] < 0.05  # the noise's variance is 0.01


def test_stops_after_max_retries_with_finite_weights(regression):
    """A divergence under a schedule, copies every batch: the copy before the failing step
    fails on every batch, so the rate is lowered once, then training stops."""
    x, y, _, _ = regression
    model = _regression_model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(5.0, 1000)))
    starts = _StepStarts()
    recovery = NonFiniteRecovery(max_retries=1, factor=0.5, verbose=0)
    with pytest.warns(UserWarning, match="after 1 learning-rate reductions \\(max_retries=1\\)"):
        model.fit(x, y, batch_size=64, epochs=10, shuffle=False, verbose=0,
                  callbacks=[starts, recovery])
    assert [r["action"] for r in recovery.recoveries] == ["lowered"]
    assert "training stopped with the weights of the last good step" in recovery.stop_reason
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, ScaledSchedule) and schedule.factor == 0.5
    assert _all_finite(model)
    # The last step failed and was rolled back: the model holds the state it started from.
    for a, b in zip(starts.states[-1], [v.numpy() for v in model.variables]):
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
    # Finite data failing batch after batch: divergence, never a skip.
    assert _events(recovery) == [(0, 0, "gradient", "lowered"), (0, 1, "gradient", "lowered")]
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


def test_the_train_step_is_given_back(digits, digits_model):
    x, y = _poisoned(digits)
    model = digits_model()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[NonFiniteRecovery(verbose=0)])
    assert "train_step" not in vars(model)


@pytest.mark.parametrize("row", [5, 21], ids=["first replica", "second replica"])
def test_under_mirrored_strategy(digits, digits_model, two_cpu_strategy, row):
    """Each replica checks its half of the batch; the NaN is seen wherever it is."""
    x, y = _poisoned(digits, samples=256, row=row)
    model = digits_model("adam", strategy=two_cpu_strategy)
    recovery = NonFiniteRecovery(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recovery])
    assert _events(recovery) == [(0, BAD_BATCH, "inputs", "skipped")]
    assert _all_finite(model)
