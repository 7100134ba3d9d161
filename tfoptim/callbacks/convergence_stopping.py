"""Stopping when training has converged."""

import keras
import numpy as np

from tfoptim.callbacks import _gradient_probe
from tfoptim.callbacks._state import (
    SerializableCallback,
    build_optimizer,
    monitored_value,
    print_message,
    resolve_mode,
)
from tfoptim._validation import (
    check_choice,
    check_non_negative,
    check_positive,
    check_range,
    check_steps,
    check_string,
)


@keras.saving.register_keras_serializable(package="tfoptim")
class ConvergenceStopping(SerializableCallback):
    """Stops training once it has converged, by the tests asked for, and says which one fired.

    Each test runs only when its argument is given (at least one must be):

    * **Threshold** (``threshold``): at the end of an epoch, the monitored value has reached
      ``threshold`` (``<=`` in ``"min"`` mode, ``>=`` in ``"max"`` mode): a loss under a
      tolerance, an accuracy at a target.
    * **Stall** (``patience``): the monitored value has not improved on its best by more than
      ``min_delta`` for more than ``patience`` epochs in a row (``patience=0``: the first epoch
      without improvement stops). Off by default: a loss on its way to a threshold may rise
      for an epoch (Adam's overshoot) without having converged.
    * **Gradient** (``grad_norm_tolerance``): after any step, the global norm of the gradient
      the optimizer just applied is below ``grad_norm_tolerance`` (a stationary point). The
      norm is captured from the real training step, like :class:`OptimizerMonitor`'s; with
      mini-batches it is the norm of the batch gradient, so this test is meant for full-batch
      or low-noise problems.

    The reason, which names the test, is kept in ``stop_reason`` (``None`` while training goes
    on), the test in ``stopped_by`` (``"threshold"``, ``"stall"`` or ``"gradient"``), the epoch
    in ``stopped_epoch``, and, with ``verbose=1``, printed.

    Args:
        monitor: name of the logged quantity, e.g. ``"loss"``, ``"val_loss"``,
            ``"val_accuracy"``.
        threshold: value to reach, or ``None``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (losses are minimised, accuracies maximised,
            other metrics as Keras declares them).
        min_delta: smallest change that counts as an improvement (>= 0).
        patience: epochs without improvement tolerated (integer >= 0), or ``None`` (the
            default): no stall test.
        grad_norm_tolerance: gradient-norm tolerance (> 0), or ``None``.
        verbose: 1 prints the reason when training stops, 0 stays quiet.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import ConvergenceStopping

    x = np.random.rand(512, 3)
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    stop = ConvergenceStopping(monitor="loss", threshold=1e-4)
    model.fit(x, y, epochs=500, batch_size=512, verbose=0, callbacks=[stop])
    print(stop.stop_reason)
    ```
    """

    def __init__(
        self,
        monitor="loss",
        threshold=None,
        mode="auto",
        min_delta=0.0,
        patience=None,
        grad_norm_tolerance=None,
        verbose=1,
    ):
        super().__init__()
        self.monitor = check_string("monitor", monitor, allow_empty=False)
        self.threshold = None if threshold is None else check_range("threshold", threshold)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = check_non_negative("min_delta", min_delta)
        self.patience = None if patience is None else check_steps("patience", patience)
        self.grad_norm_tolerance = (
            None
            if grad_norm_tolerance is None
            else check_positive("grad_norm_tolerance", grad_norm_tolerance)
        )
        self.verbose = check_choice("verbose", verbose, (0, 1))
        if threshold is None and patience is None and grad_norm_tolerance is None:
            raise ValueError(
                "ConvergenceStopping has no test to stop on: pass `threshold`, `patience` or "
                "`grad_norm_tolerance`. Received: all None."
            )
        self._probe = None
        self._reset()

    def get_config(self):
        return {
            "monitor": self.monitor,
            "threshold": self.threshold,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "grad_norm_tolerance": self.grad_norm_tolerance,
            "verbose": self.verbose,
        }

    def _reset(self):
        self.best = None
        self.wait = 0
        self.stop_reason = None
        self.stopped_by = None
        self.stopped_epoch = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._reset()
        # Resolved at the first epoch end, when Keras has built the compiled metrics.
        self._direction = None
        self._probe = None
        if self.grad_norm_tolerance is not None and build_optimizer(self.model):
            self._probe = _gradient_probe.attach(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.grad_norm_tolerance is None or self.stop_reason is not None:
            return
        if self._probe is None:
            # The model was not built at `on_train_begin`; the first step has built it.
            self._probe = _gradient_probe.attach(self.model)
            return
        if self._probe.steps == 0:
            return
        norm = self._probe.grad_norm()
        if norm < self.grad_norm_tolerance:
            self._stop(
                "gradient",
                f"global gradient norm {norm:.4g} < grad_norm_tolerance "
                f"{self.grad_norm_tolerance:.4g} (epoch {self._epoch + 1}, batch {batch + 1})",
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_reason is not None:
            return
        value = monitored_value(self, logs)
        if value is None or not np.isfinite(value):
            return
        if self._direction is None:
            self._direction = resolve_mode(self.monitor, self.mode, self.model)
        sign = 1.0 if self._direction == "min" else -1.0
        if self.threshold is not None and sign * (value - self.threshold) <= 0.0:
            relation = "<=" if sign > 0 else ">="
            self._stop(
                "threshold",
                f"{self.monitor} = {value:.6g} {relation} threshold {self.threshold:.6g} "
                f"(epoch {epoch + 1})",
            )
            return
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.patience is not None and self.wait > self.patience:
            self._stop(
                "stall",
                f"{self.monitor} has not improved on {self.best:.6g} by more than "
                f"min_delta={self.min_delta:g} for {self.wait} epoch(s), more than "
                f"patience={self.patience} (epoch {epoch + 1})",
            )

    def on_train_end(self, logs=None):
        if self._probe is not None:
            _gradient_probe.detach(self._probe)
            self._probe = None

    def _stop(self, test, reason):
        self.stopped_by = test
        self.stop_reason = f"Stopped by the {test} test: {reason}."
        self.stopped_epoch = self._epoch
        self.model.stop_training = True
        if self.verbose:
            print_message(f"\nConvergenceStopping: {self.stop_reason}")
