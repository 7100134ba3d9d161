"""Stopping training after a wall-clock budget."""

import datetime
import time

import keras

from tfoptim.callbacks._state import SerializableCallback, print_message
from tfoptim._validation import check_choice, check_non_negative


@keras.saving.register_keras_serializable(package="tfoptim")
class TimeStopping(SerializableCallback):
    """Stops training once ``seconds`` of wall-clock time have passed since it began.

    The replacement for TensorFlow Addons' ``tfa.callbacks.TimeStopping`` (same arguments).
    Unlike the Addons version, which looked at the clock only between epochs, the budget is
    also checked after every batch, so one long epoch cannot overrun it by much; the last epoch
    may then be partial (validation still runs on it).

    ``stopped_epoch`` is the epoch during which time ran out (``None`` if it did not).

    Args:
        seconds: the budget in seconds (>= 0).
        verbose: 1 prints when and after how long training was stopped.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import TimeStopping

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.random.rand(256, 8), np.random.rand(256, 1)
    model.fit(x, y, epochs=10_000, verbose=0, callbacks=[TimeStopping(seconds=5, verbose=1)])
    ```
    """

    def __init__(self, seconds=86400, verbose=0):
        super().__init__()
        self.seconds = check_non_negative("seconds", seconds)
        self.verbose = check_choice("verbose", verbose, (0, 1))
        self.stopped_epoch = None

    def get_config(self):
        return {"seconds": self.seconds, "verbose": self.verbose}

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None
        self._epoch = 0
        self._start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            elapsed = datetime.timedelta(seconds=round(time.monotonic() - self._start))
            print_message(
                f"Timed stopping at epoch {self.stopped_epoch + 1} after training for {elapsed}"
            )

    def _check(self):
        if self.stopped_epoch is None and time.monotonic() - self._start >= self.seconds:
            self.stopped_epoch = self._epoch
            self.model.stop_training = True
