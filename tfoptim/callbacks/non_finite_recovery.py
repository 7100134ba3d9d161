"""Recovering from NaN/Inf losses and gradients without losing the run."""

import math
import warnings

import keras

from tfoptim.callbacks import _gradient_probe
from tfoptim.callbacks._state import (
    SerializableCallback,
    TrainingSnapshot,
    build_optimizer,
    leaf_optimizers,
    print_message,
    scale_learning_rate,
)
from tfoptim._validation import check_choice, check_range, check_steps


@keras.saving.register_keras_serializable(package="tfoptim")
class NonFiniteRecovery(SerializableCallback):
    """Rolls training back to the last good state when a step goes NaN/Inf, lowers the learning
    rate, and carries on.

    Every ``snapshot_every`` batches (and at the start of every epoch) the callback copies to host
    memory the model's variables, the optimizer's variables (slots, iteration counters, a
    float learning rate, the loss scale) and the metrics' running state. When a batch ends with
    a non-finite loss, or with a non-finite gradient reaching an optimizer that would apply it,
    it:

    1. writes the last copy back, bit for bit: the weights are a state training really passed
       through, never a patched one, and the epoch's running metrics match them;
    2. multiplies the learning rate by ``factor`` (schedules too, see
       :class:`~tfoptim.callbacks.ScaledSchedule`);
    3. takes a fresh copy and lets training continue with the next batch.

    The batches between the copy and the failure are rolled back with it; with the default
    ``snapshot_every=1`` that is only the failing batch. After ``max_retries`` recoveries in one
    ``fit``, the next failure restores the last good state and stops training with a warning
    that says why; the weights left in the model are finite.

    Gradients are checked in the real training step (see ``_gradient_probe.py``). A
    ``LossScaleOptimizer``, or tfoptim optimizers built with ``skip_nonfinite=True``, already
    skip steps with non-finite gradients, so for them only a non-finite loss counts.

    ``recoveries`` lists what happened (epoch, batch, learning rates before and after);
    ``stop_reason`` is set when training was stopped.

    Args:
        max_retries: recoveries allowed per ``fit`` (integer >= 0).
        factor: learning-rate multiplier at each recovery, in (0, 1].
        snapshot_every: batches between in-memory copies (integer >= 1), counted as ``fit``
            reports them (with ``steps_per_execution=k`` a report covers k steps). Each copy
            moves the weights and optimizer state to host memory: raise it for large models, at
            the cost of rolling back more steps on a failure.
        verbose: 1 prints each recovery.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import NonFiniteRecovery

    x, y = np.random.rand(256, 4).astype("float32"), np.random.rand(256, 1).astype("float32")
    x[40] = np.nan  # one poisoned sample
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, callbacks=[NonFiniteRecovery()])
    ```
    """

    def __init__(self, max_retries=3, factor=0.5, snapshot_every=1, verbose=1):
        super().__init__()
        self.max_retries = check_steps("max_retries", max_retries)
        self.factor = check_range("factor", factor, 0.0, 1.0, low_open=True)
        self.snapshot_every = check_steps("snapshot_every", snapshot_every, 1)
        self.verbose = check_choice("verbose", verbose, (0, 1))
        self._probe = None
        self.recoveries = []
        self.stop_reason = None

    def get_config(self):
        return {
            "max_retries": self.max_retries,
            "factor": self.factor,
            "snapshot_every": self.snapshot_every,
            "verbose": self.verbose,
        }

    def on_train_begin(self, logs=None):
        self.recoveries = []
        self.stop_reason = None
        self._epoch = 0
        self._probe = None
        self._snapshot = None
        optimizer = self.model.optimizer
        self._gradients_guarded = isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or all(
            getattr(leaf, "skip_nonfinite", False) for leaf in leaf_optimizers(optimizer)
        )
        if build_optimizer(self.model):
            self._start()

    def _start(self):
        self._probe = _gradient_probe.attach(self.model)
        self._seen_nonfinite = self._probe.nonfinite_total
        self._take_snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._probe is not None:
            self._take_snapshot()

    def on_train_batch_end(self, batch, logs=None):
        if self._probe is None:
            # The model was not built at `on_train_begin`, so there was nothing to copy; the
            # first step has built it, and its result is the first state that can be kept.
            if self._is_bad(logs):
                self._give_up(batch, "loss", "before any good state existed")
            else:
                self._start()
            return
        bad_loss = self._is_bad(logs)
        nonfinite = self._probe.nonfinite_total
        bad_gradient = nonfinite > self._seen_nonfinite and not self._gradients_guarded
        self._seen_nonfinite = nonfinite
        if bad_loss or bad_gradient:
            self._recover(batch, "loss" if bad_loss else "gradient")
            return
        self._steps_since_snapshot += 1
        if self._steps_since_snapshot >= self.snapshot_every:
            self._take_snapshot()

    def on_train_end(self, logs=None):
        if self._probe is not None:
            _gradient_probe.detach(self._probe)
            self._probe = None
        self._snapshot = None

    def _take_snapshot(self):
        self._snapshot = TrainingSnapshot(self.model)
        self._steps_since_snapshot = 0

    @staticmethod
    def _is_bad(logs):
        loss = (logs or {}).get("loss")
        return loss is not None and not math.isfinite(float(loss))

    def _give_up(self, batch, what, state):
        self.stop_reason = (
            f"NonFiniteRecovery: non-finite {what} at epoch {self._epoch + 1}, batch {batch + 1} "
            f"after {len(self.recoveries)} recoveries (max_retries={self.max_retries}); training "
            f"stopped {state}. Lower the learning rate, check the data for NaN/Inf, or clip "
            "gradients."
        )
        self.model.stop_training = True
        warnings.warn(self.stop_reason, stacklevel=3)

    def _recover(self, batch, what):
        self._snapshot.restore()
        if len(self.recoveries) >= self.max_retries:
            self._give_up(batch, what, "with the weights of the last good step")
            return
        where = f"epoch {self._epoch + 1}, batch {batch + 1}"
        changes = scale_learning_rate(self.model, self.factor)
        self.recoveries.append(
            {
                "epoch": self._epoch,
                "batch": batch,
                "cause": what,
                "learning_rates": [(leaf.name, old, new) for leaf, old, new in changes],
            }
        )
        self._take_snapshot()
        if self.verbose:
            rates = ", ".join(f"{old:.4g} -> {new:.4g}" for _, old, new in changes)
            print_message(
                f"\nNonFiniteRecovery: non-finite {what} at {where}; restored the last good state "
                f"and scaled the learning rate ({rates}). Recovery {len(self.recoveries)} of "
                f"{self.max_retries}."
            )
