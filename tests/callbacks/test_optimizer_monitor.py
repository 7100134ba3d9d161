import contextlib
import csv
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfoptim.callbacks import OptimizerMonitor


class _TrueStep(keras.callbacks.Callback):
    """Records, around every step, the gradient of the batch loss at the weights the step
    starts from (computed separately here) and the weights before and after."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y
        self.norms, self.ratios = [], []

    def on_train_batch_begin(self, batch, logs=None):
        model = self.model
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=self.x, y=self.y, y_pred=model(self.x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        self.norms.append(float(tf.linalg.global_norm(gradients)))
        self._before = [v.numpy() for v in model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        after = [v.numpy() for v in self.model.trainable_variables]
        update = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, self._before)))
        weight = np.sqrt(sum((b**2).sum() for b in self._before))
        self.ratios.append(update / weight)


def _regression_model(make_optimizer, strategy=None):
    keras.utils.set_random_seed(0)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        optimizer = make_optimizer()
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
        )
        model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.parametrize(
    "kwargs, name",
    [({"log_every": 0}, "log_every"), ({"histograms": True}, "log_dir"),
     ({"per_layer": "yes"}, "per_layer")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OptimizerMonitor(**kwargs)


@pytest.mark.parametrize("wrapper", [None, "loss_scale"])
def test_figures_come_from_the_real_step(regression, wrapper):
    x, y, _, _ = regression
    x, y = x[:64], y[:64]
    def make_optimizer():
        optimizer = keras.optimizers.Adam(1e-2)
        if wrapper == "loss_scale":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    model = _regression_model(make_optimizer)
    truth = _TrueStep(x, y)
    history = model.fit(
        x, y, batch_size=64, epochs=4, shuffle=False, verbose=0,
        callbacks=[truth, OptimizerMonitor()],
    )
    logs = history.history
    np.testing.assert_allclose(logs["grad_norm"], truth.norms, rtol=1e-5)
    np.testing.assert_allclose(logs["update_ratio"], truth.ratios, rtol=1e-4)
    assert logs["nonfinite_grads"] == [0, 0, 0, 0]
    assert logs["learning_rate"] == pytest.approx([1e-2] * 4)
    assert "apply" not in vars(model.optimizer), "the hook outlived training"


@pytest.mark.slow
def test_under_mirrored_strategy_the_norm_is_of_the_global_batch(regression, two_cpu_strategy):
    x, y, _, _ = regression
    x, y = x[:64], y[:64]
    model = _regression_model(lambda: keras.optimizers.SGD(0.05), strategy=two_cpu_strategy)
    truth = _TrueStep(x, y)
    history = model.fit(
        x, y, batch_size=64, epochs=3, shuffle=False, verbose=0,
        callbacks=[truth, OptimizerMonitor()],
    )
    np.testing.assert_allclose(history.history["grad_norm"], truth.norms, rtol=1e-5)
    np.testing.assert_allclose(history.history["update_ratio"], truth.ratios, rtol=1e-4)


def test_logs_reach_history_and_csv(tmp_path, digits, digits_model):
    x_train, y_train, _, _ = digits
    model = digits_model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100)))
    monitor = OptimizerMonitor(log_every=5, per_layer=True)

    class Before(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.traces = monitor._probe.traces

    class After(keras.callbacks.Callback):
        batch_keys = []

        def on_train_batch_end(self, batch, logs=None):
            self.batch_keys.append("grad_norm" in logs)

    before, after = Before(), After()
    history = model.fit(
        x_train[:320], y_train[:320], batch_size=32, epochs=2, verbose=0,
        callbacks=[
            before,
            monitor,
            after,
            keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        ],
    )
    logs = history.history
    for key in ("learning_rate", "grad_norm", "update_ratio", "nonfinite_grads",
                "grad_norm/mlp/hidden", "update_ratio/mlp/logits"):
        assert len(logs[key]) == 2, key
    per_layer = logs["grad_norm/mlp/hidden"][-1] ** 2 + logs["grad_norm/mlp/logits"][-1] ** 2
    assert per_layer == pytest.approx(logs["grad_norm"][-1] ** 2, rel=1e-5)
    schedule = model.optimizer._learning_rate
    assert logs["learning_rate"][-1] == pytest.approx(float(schedule(20)), rel=1e-6)
    # Every 5th batch: the monitor adds figures to the logs seen by callbacks after it.
    assert after.batch_keys[10:20] == [False, False, False, False, True] * 2
    # Traced once per step-function shape, not once per step.
    assert before.traces <= 2

    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[-1]["grad_norm"]) == pytest.approx(logs["grad_norm"][-1])


def test_tensorboard_scalars_and_histograms(tmp_path, digits, digits_model):
    pytest.importorskip("tensorboard")
    x_train, y_train, _, _ = digits
    model = digits_model("adam")
    model.fit(
        x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0,
        callbacks=[
            OptimizerMonitor(histograms=True, log_dir=tmp_path / "tb"),
            keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        ],
    )
    tags = set()
    for path in glob.glob(os.path.join(tmp_path, "tb", "train", "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_grad_norm", "epoch_update_ratio"} <= tags
    assert "mlp/hidden/kernel/gradient" in tags


def test_counts_nonfinite_gradients_entry_by_entry(regression):
    x, y, _, _ = regression
    x = x[:64].copy()
    # An infinite feature in the second batch saturates that sample's tanh units: the loss
    # stays finite and their local gradient is exactly 0, so only the kernel row of feature 0
    # gets inf * 0 = NaN: 8 of the step's 49 gradient entries.
    x[40, 0] = np.inf
    model = _regression_model(lambda: keras.optimizers.SGD(0.01))

    batch_counts = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_counts.append(logs["nonfinite_grads"])
    )
    history = model.fit(x, y[:64], batch_size=32, epochs=1, shuffle=False, verbose=0,
                        callbacks=[OptimizerMonitor(), record])
    assert np.isfinite(history.history["loss"][0])
    assert batch_counts == [0, 8]
    assert history.history["nonfinite_grads"] == [8]
    kernel = model.layers[0].kernel.numpy()
    assert np.isnan(kernel[0]).all() and np.isfinite(kernel[1:]).all()


def test_multi_optimizer_learning_rates(digits, digits_model):
    x_train, y_train, _, _ = digits
    optimizer = keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            default_optimizer=keras.optimizers.SGD(0.05, name="head"),
            optimizer_map={".*hidden.*": keras.optimizers.Adam(1e-3, name="body")},
        )
    )
    model = digits_model(optimizer)
    history = model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0,
                        callbacks=[OptimizerMonitor()])
    assert history.history["learning_rate_head"] == pytest.approx([0.05])
    assert history.history["learning_rate_body"] == pytest.approx([1e-3])
    assert history.history["grad_norm"][0] > 0


def test_callbacks_share_one_probe(regression):
    from tfoptim.callbacks import ConvergenceStopping

    x, y, _, _ = regression
    model = _regression_model(lambda: keras.optimizers.SGD(0.01))
    stop = ConvergenceStopping(grad_norm_tolerance=1e-12, patience=None, verbose=0)
    monitor = OptimizerMonitor()

    class Check(keras.callbacks.Callback):
        shared = []

        def on_train_batch_end(self, batch, logs=None):
            # The monitor asked for more than the stopper; the stopper's probe saw it too.
            self.shared.append(stop._probe is monitor._probe and stop._probe.track_updates)
            assert stop._probe.grad_norm() == pytest.approx(logs["grad_norm"])

    model.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=[stop, monitor, Check()])
    assert Check.shared and all(Check.shared)
    assert "apply" not in vars(model.optimizer)
