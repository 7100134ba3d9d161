"""tfoptim's callbacks on a model whose optimizer is Keras's ``MultiOptimizer`` holding tfoptim
optimizers: the hidden layer stepped by one, the head by another."""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from tfoptim.callbacks import (
    EvaluationWeights,
    NonFiniteRecovery,
    OptimizerMonitor,
    ScheduleAwareReduceLROnPlateau,
    evaluation_values,
    find_learning_rate,
)


def multi(body, head):
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(default_optimizer=head, optimizer_map={".*hidden.*": body})
    )


def rates(optimizer):
    return [float(keras.ops.convert_to_numpy(o.learning_rate)) for o in optimizer.optimizers]


def test_monitor_plateau_and_save(digits, digits_model, tmp_path):
    x_train, y_train, _, _ = digits
    optimizer = multi(to.Adam(1e-3, name="body"), to.SGD(0.05, momentum=0.9, name="head"))
    model = digits_model(optimizer)
    history = model.fit(
        x_train[:128], y_train[:128], batch_size=32, epochs=2, verbose=0,
        callbacks=[OptimizerMonitor(),
                   ScheduleAwareReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=100.0)],
    )
    logs = history.history
    assert np.all(np.isfinite(logs["grad_norm"]))
    # One rate per sub-optimizer, each halved after the first epoch.
    assert logs["learning_rate_body"] == pytest.approx([1e-3, 5e-4])
    assert logs["learning_rate_head"] == pytest.approx([0.05, 0.025])
    assert rates(optimizer) == pytest.approx([5e-4, 0.025])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert [type(o) for o in loaded.optimizer.optimizers] == [to.Adam, to.SGD]
    assert rates(loaded.optimizer) == pytest.approx(rates(optimizer))


def test_finder_leaves_the_state(digits, digits_model, state_of, assert_same_state):
    x_train, y_train, _, _ = digits
    model = digits_model(multi(to.Lion(1e-4, name="body"), to.AdamW(1e-3, name="head")))
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    before = state_of(model)
    result = find_learning_rate(model, x_train, y_train, num_steps=30, progress=False)
    assert np.isfinite(result.suggestion)
    assert_same_state(before, state_of(model))


def test_recovery_lowers_every_rate(regression):
    """A linear model, its kernel stepped by SGD at 2.0 (the curvature is ~2: it diverges), its
    bias by Adam: every failure halves both rates, restored, training recovers."""
    x, y, _, _ = regression
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="linear")])
    optimizer = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
        default_optimizer=to.SGD(2.0, name="head"), optimizer_map={".*bias": to.Adam(1e-3, name="body")}
    ))
    model.compile(optimizer=optimizer, loss="mse")
    recovery = NonFiniteRecovery(max_retries=10, snapshot_every=4, verbose=0)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=[recovery])
    assert recovery.recoveries, "the run did not diverge"
    assert {r["action"] for r in recovery.recoveries} == {"lowered"}
    lowered = 0.5 ** len(recovery.recoveries)
    assert rates(optimizer) == pytest.approx([1e-3 * lowered, 2.0 * lowered])
    assert recovery.stop_reason is None
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)


def test_evaluation_weights_per_sub_optimizer(digits, digits_model):
    """SWA steps the hidden layer, Adam the head: the evaluation weights are SWA's average for
    the hidden layer and the trained weights for the head."""
    x_train, y_train, x_val, y_val = digits

    def make():
        return multi(to.SWA(to.SGD(0.05), start_averaging=1, average_period=2), to.Adam(1e-3))

    plain = digits_model(make())
    plain.fit(x_train[:128], y_train[:128], batch_size=32, epochs=2, verbose=0)
    model = digits_model(make())
    model.fit(x_train[:128], y_train[:128], batch_size=32, epochs=2, verbose=0,
              validation_data=(x_val, y_val), callbacks=[EvaluationWeights(final=True)])
    swa = plain.optimizer.optimizers[0]
    hidden = [v for v in plain.trainable_variables if "hidden" in v.path]
    expected = {v.path: keras.ops.convert_to_numpy(a) for v, a in zip(hidden, swa.evaluation_values(hidden))}
    for trained, final in zip(plain.trainable_variables, model.trainable_variables):
        want = expected.get(trained.path, trained.numpy())
        np.testing.assert_array_equal(final.numpy(), want)
    assert set(expected) and any(
        not np.array_equal(expected[v.path], v.numpy()) for v in hidden
    ), "the average equals the trained weights: the test would not see a missing swap"
    # Without a sub-optimizer that keeps evaluation weights there is nothing to swap.
    without = multi(to.Adam(), to.SGD())
    without.build(plain.trainable_variables)
    assert evaluation_values(without, plain.trainable_variables) is None
