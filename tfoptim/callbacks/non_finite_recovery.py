"""Recovering from NaN/Inf losses and gradients without losing the run."""

import math
import warnings

import keras
import tensorflow as tf

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
    """Rolls training back to the last good state when a step goes NaN/Inf, skips the batch if
    its data is to blame or lowers the learning rate if training diverged, and carries on.

    Every ``snapshot_every`` batches (and at the start of every epoch) the callback copies to host
    memory the model's variables, the optimizer's variables (slots, iteration counters, a
    float learning rate, the loss scale) and the metrics' running state. A batch *fails* when
    it ends with a non-finite loss, or with a non-finite gradient reaching an optimizer that
    would apply it. The callback then writes the last copy back, bit for bit (the weights are a
    state training really passed through, never a patched one, and the epoch's running metrics
    match them), and tells bad data from divergence:

    * **Bad data: skip the batch, learning rate unchanged.** The batch's inputs, targets or
      sample weights hold a NaN/Inf (counted inside the training step itself). Or the batch
      *fails again from a good state*: the batch at the same position of an earlier epoch
      failed with finite data too (the rate has been lowered for it once already), the batch
      before this one ran clean, and the copy was taken right before it (always so with the
      default ``snapshot_every=1``), so skipping it rolls back nothing else. Corrupt records
      are the common cause of a NaN, and a lower rate cannot mend them: lowering it at every
      recurrence would only starve the rest of training.
    * **Divergence: lower the learning rate.** Any other failure (finite data, a loss or a
      gradient that overflowed after good steps) multiplies the learning rate by ``factor``
      (schedules too, see :class:`~tfoptim.callbacks.ScaledSchedule`). Failures of finite data
      in a row never count as bad data: a state that fails on every batch needs a lower rate.

    Either way it takes a fresh copy and lets training continue with the next batch. The batches
    between the copy and the failure are rolled back with it; with the default
    ``snapshot_every=1`` that is only the failing batch. After ``max_retries`` rate reductions in
    one ``fit``, the next divergence restores the last good state and stops training with a
    warning that says why; the weights left in the model are finite. Skipped batches are not
    limited: each is reported (``verbose=1``) and listed.

    The cause of a failure is decided in a fixed order, whatever the machine: ``"inputs"`` when
    the batch's data held a NaN/Inf (even where the forward pass happened to hide it, as
    ``relu(nan)`` may), else ``"loss"`` when the loss is non-finite, else ``"gradient"``.
    A batch is identified by its position in the epoch, so "fails again" means the same data
    when batches are fixed (``shuffle=False``, a dataset that does not reshuffle); with shuffled
    batches a recurring failure of finite data is treated as divergence each time.

    Gradients are checked in the real training step (see ``_gradient_probe.py``). A
    ``LossScaleOptimizer``, or tfoptim optimizers built with ``skip_nonfinite=True``, already
    skip steps with non-finite gradients, so for them only a non-finite loss counts.

    ``recoveries`` lists what happened, one dict per failure: ``epoch`` and ``batch`` (0-based),
    ``cause`` (``"inputs"``, ``"loss"`` or ``"gradient"``), ``action`` (``"skipped"`` or
    ``"lowered"``) and ``learning_rates`` (``(optimizer name, before, after)`` of each rate
    lowered; empty for a skip). ``skipped_batches`` lists the ``(epoch, batch)`` skipped;
    ``stop_reason`` is set when training was stopped.

    Args:
        max_retries: learning-rate reductions allowed per ``fit`` (integer >= 0).
        factor: learning-rate multiplier at each divergence, in (0, 1] (1: restore and carry
            on at the same rate).
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
    x[40] = np.nan  # one poisoned sample: its batch is skipped in every epoch
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
        self._input_check = None
        self.recoveries = []
        self.stop_reason = None

    @property
    def skipped_batches(self):
        """``(epoch, batch)`` of every batch skipped as bad data, 0-based."""
        return [(r["epoch"], r["batch"]) for r in self.recoveries if r["action"] == "skipped"]

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
        # Position in the epoch -> epoch of its last failure; whether a batch ran clean since
        # the last failure.
        self._failed_at = {}
        self._clean_since_failure = True
        optimizer = self.model.optimizer
        self._gradients_guarded = isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or all(
            getattr(leaf, "skip_nonfinite", False) for leaf in leaf_optimizers(optimizer)
        )
        # Before the first step, so that it is counted too; the step is traced lazily, so
        # rebuilding the train function here costs nothing.
        self._input_check = _InputCheck(self.model)
        self.model.make_train_function(force=True)
        if build_optimizer(self.model):
            self._start()

    def _start(self):
        self._probe = _gradient_probe.attach(self.model)
        self._seen_nonfinite = self._probe.nonfinite_total
        self._seen_inputs = self._input_check.total
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
                what = "inputs" if self._input_check.total else "loss"
                self._give_up(batch, what, "before any good state existed")
            else:
                self._start()
            return
        bad_loss = self._is_bad(logs)
        nonfinite = self._probe.nonfinite_total
        bad_gradient = nonfinite > self._seen_nonfinite and not self._gradients_guarded
        self._seen_nonfinite = nonfinite
        inputs = self._input_check.total
        bad_inputs = inputs > self._seen_inputs
        self._seen_inputs = inputs
        if bad_loss or bad_gradient:
            # Fixed order: the data first (a NaN input may reach the loss or, through a
            # `relu(nan) = 0` of one CPU's kernels, only the gradient).
            self._recover(batch, "inputs" if bad_inputs else "loss" if bad_loss else "gradient")
            return
        self._clean_since_failure = True
        self._steps_since_snapshot += 1
        if self._steps_since_snapshot >= self.snapshot_every:
            self._take_snapshot()

    def on_train_end(self, logs=None):
        if self._probe is not None:
            _gradient_probe.detach(self._probe)
            self._probe = None
        if self._input_check is not None:
            self._input_check.remove()
            self._input_check = None
        self._snapshot = None

    def _take_snapshot(self):
        self._snapshot = TrainingSnapshot(self.model)
        self._steps_since_snapshot = 0

    @staticmethod
    def _is_bad(logs):
        loss = (logs or {}).get("loss")
        return loss is not None and not math.isfinite(float(loss))

    def _lowered(self):
        return len(self.recoveries) - len(self.skipped_batches)

    def _give_up(self, batch, what, state):
        self.stop_reason = (
            f"NonFiniteRecovery: non-finite {what} at epoch {self._epoch + 1}, batch {batch + 1} "
            f"after {self._lowered()} learning-rate reductions (max_retries={self.max_retries}); "
            f"training stopped {state}. Lower the learning rate, check the data for NaN/Inf, or "
            "clip gradients."
        )
        self.model.stop_training = True
        warnings.warn(self.stop_reason, stacklevel=3)

    def _recover(self, batch, what):
        self._snapshot.restore()
        where = f"epoch {self._epoch + 1}, batch {batch + 1}"
        fails_again = (
            what != "inputs"
            and self._failed_at.get(batch, self._epoch) < self._epoch
            and self._clean_since_failure
            and self._steps_since_snapshot == 0
        )
        if what != "inputs":
            self._failed_at[batch] = self._epoch
        self._clean_since_failure = False
        if what == "inputs" or fails_again:
            self.recoveries.append(
                {"epoch": self._epoch, "batch": batch, "cause": what, "action": "skipped",
                 "learning_rates": []}
            )
            # The state is the copy again: no new copy needed.
            self._steps_since_snapshot = 0
            if self.verbose:
                why = (
                    "the batch's data holds NaN/Inf" if what == "inputs"
                    else "the batch at this position failed with finite data in an earlier "
                    "epoch too"
                )
                print_message(
                    f"\nNonFiniteRecovery: non-finite {what} at {where}; {why}, so it is taken "
                    "for bad data: restored the last good state and skipped the batch, learning "
                    f"rate unchanged ({len(self.skipped_batches)} batch(es) skipped)."
                )
            return
        lowered = self._lowered()
        if lowered >= self.max_retries:
            self._give_up(batch, what, "with the weights of the last good step")
            return
        changes = scale_learning_rate(self.model, self.factor)
        self.recoveries.append(
            {
                "epoch": self._epoch,
                "batch": batch,
                "cause": what,
                "action": "lowered",
                "learning_rates": [(leaf.name, old, new) for leaf, old, new in changes],
            }
        )
        self._take_snapshot()
        if self.verbose:
            rates = ", ".join(f"{old:.4g} -> {new:.4g}" for _, old, new in changes)
            print_message(
                f"\nNonFiniteRecovery: non-finite {what} at {where} with finite data, taken for "
                f"divergence; restored the last good state and scaled the learning rate "
                f"({rates}). Reduction {lowered + 1} of {self.max_retries}."
            )


class _InputCheck:
    """Counts, inside the training step, the steps whose data (inputs, targets, sample
    weights) holds a NaN/Inf: an instance-level ``train_step`` that checks, then calls the
    model's own. Under a multi-replica strategy the replicas' findings are summed, as the
    gradient probe's gradients are, so a NaN in any replica's share is seen. The count lives
    outside the model, so saving is unchanged."""

    def __init__(self, model):
        self.model = model
        with model.distribute_strategy.scope():
            self._count = _gradient_probe._stat_variable(0, tf.int64, "nonfinite_inputs")
        # Someone else's instance-level `train_step` is wrapped like the class's, and put back.
        self._shadowed = vars(model).get("train_step")
        original = model.train_step

        def train_step(data):
            finite = [
                tf.reduce_all(tf.math.is_finite(t))
                for t in tf.nest.flatten(data, expand_composites=True)
                if isinstance(t, tf.Tensor) and t.dtype.is_floating
            ]
            # 1.0 where this replica's share holds a NaN/Inf: float32, the dtype the gradient
            # probe all-reduces too (mixed dtypes can clash in TF's collective keys).
            bad = tf.cast(tf.logical_not(tf.reduce_all(tf.stack(finite))), tf.float32) if finite else 0.0
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                bad = context.all_reduce(tf.distribute.ReduceOp.SUM, bad)
            self._count.assign_add(tf.cast(bad > 0, tf.int64))
            return original(data)

        model.train_step = train_step

    @property
    def total(self):
        """Steps with non-finite data since the check was installed."""
        return int(self._count.numpy())

    def remove(self):
        if self._shadowed is not None:
            self.model.train_step = self._shadowed
        else:
            del self.model.train_step
        self.model.make_train_function(force=True)
