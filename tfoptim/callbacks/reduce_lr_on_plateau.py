"""Plateau-driven learning-rate reduction that also works when the rate is a schedule."""

import keras
import numpy as np

from tfoptim.callbacks._state import (
    SerializableCallback,
    learning_rate_logs,
    monitored_value,
    print_message,
    resolve_mode,
    scale_learning_rate,
)
from tfoptim._validation import (
    check_choice,
    check_non_negative,
    check_range,
    check_steps,
    check_string,
)


@keras.saving.register_keras_serializable(package="tfoptim")
class ScheduleAwareReduceLROnPlateau(SerializableCallback):
    """Keras's ``ReduceLROnPlateau``, made to work with learning-rate schedules.

    Keras's callback assigns a new float to ``optimizer.learning_rate``, which raises
    ``TypeError`` when the optimizer was built with a ``LearningRateSchedule``. This one scales
    whatever drives the learning rate:

    * a float learning rate is multiplied in place, exactly as Keras does (it is an optimizer
      variable, so it is saved with the optimizer);
    * a schedule (or callable) is wrapped, at the first reduction, in a
      :class:`~tfoptim.callbacks.ScaledSchedule` (``factor * schedule(step)``) and the factor
      is reduced; the schedule keeps its shape, only lower. The factor is stored in the
      optimizer's config, so a ``.keras`` file saved afterwards restores it.

    Inside a ``MultiOptimizer`` every optimizer is reduced; ``LossScaleOptimizer`` is looked
    through. The arguments and their meaning are Keras's.

    Args:
        monitor: quantity to watch, e.g. ``"val_loss"``.
        factor: multiplier applied at each reduction, in (0, 1).
        patience: epochs without improvement before a reduction (integer >= 0).
        verbose: 1 prints each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: smallest change counted as an improvement (>= 0).
        cooldown: epochs to wait after a reduction before counting again (integer >= 0).
        min_lr: the rate is never reduced below this (>= 0), judged at the step of the
            reduction; a schedule may decay further by itself.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import ScheduleAwareReduceLROnPlateau

    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=1000)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    x, y = np.random.rand(256, 8), np.random.rand(256, 1)
    reduce = ScheduleAwareReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
    model.fit(x, y, epochs=5, verbose=0, callbacks=[reduce])
    ```
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__()
        self.monitor = check_string("monitor", monitor, allow_empty=False)
        self.factor = check_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_steps("patience", patience)
        self.verbose = check_choice("verbose", verbose, (0, 1))
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = check_non_negative("min_delta", min_delta)
        self.cooldown = check_steps("cooldown", cooldown)
        self.min_lr = check_non_negative("min_lr", min_lr)
        self._reset()

    def get_config(self):
        return {
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
        }

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()
        # Resolved at the first epoch end, when Keras has built the compiled metrics.
        self._direction = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        current = monitored_value(self, logs)
        if current is None:
            return
        if self._direction is None:
            self._direction = resolve_mode(self.monitor, self.mode, self.model)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        sign = 1.0 if self._direction == "min" else -1.0
        if np.isfinite(current) and (
            self.best is None or sign * (self.best - current) > self.min_delta
        ):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                changes = scale_learning_rate(self.model, self.factor, self.min_lr)
                if changes:
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
                if self.verbose:
                    for leaf, old, new in changes:
                        print_message(
                            f"\nEpoch {epoch + 1}: ScheduleAwareReduceLROnPlateau reducing the "
                            f"learning rate of {leaf.name} from {old:.4g} to {new:.4g}."
                        )
        logs.update(learning_rate_logs(self.model.optimizer))
