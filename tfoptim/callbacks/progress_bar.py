"""A tqdm progress bar over a whole training run."""

import sys

import keras
from tqdm.auto import tqdm

from tfoptim.callbacks._state import SerializableCallback
from tfoptim._validation import check_bool, check_choice, check_steps, check_string


@keras.saving.register_keras_serializable(package="tfoptim")
class ProgressBar(SerializableCallback):
    """One `tqdm <https://tqdm.github.io>`_ bar over all the steps of a ``fit``.

    Keras's own progress bar restarts every epoch and prints a line per epoch; over a long run
    (or a sweep that stops on its own, like the learning-rate finder) one bar with an
    estimated time to the end is easier to follow. It shows the epoch and the latest logs
    (loss, metrics, and whatever other callbacks add, e.g. :class:`OptimizerMonitor`'s
    figures) and works in terminals and notebooks (``tqdm.auto``). Pass ``verbose=0`` to
    ``fit`` so the two bars do not interleave.

    Args:
        total_steps: length of the bar; by default ``epochs * steps_per_epoch`` as ``fit``
            knows them (unknown for a dataset of unknown size: the bar then just counts).
        description: text in front of the bar.
        metrics: names of the logs to show; by default all scalar logs.
        file: ``"stderr"`` (tqdm's default) or ``"stdout"``: the stream the bar is drawn on.
            A name rather than a stream, so that the callback's config holds all its
            arguments and survives serialization; the stream is looked up when training
            starts, so ``contextlib.redirect_stdout`` and the like are followed.
        leave: keep the finished bar on screen.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import ProgressBar

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.random.rand(1024, 8), np.random.rand(1024, 1)
    model.fit(x, y, epochs=20, verbose=0, callbacks=[ProgressBar()])
    ```
    """

    def __init__(
        self, total_steps=None, description="train", metrics=None, file="stderr", leave=True
    ):
        super().__init__()
        self.total_steps = (
            None if total_steps is None else check_steps("total_steps", total_steps, 1)
        )
        self.description = check_string("description", description)
        if metrics is not None and (
            isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)
        ):
            raise ValueError(
                f"`metrics` must be a list of log names or None. Received: metrics={metrics!r}"
            )
        self.metrics = None if metrics is None else list(metrics)
        self.file = check_choice("file", file, ("stderr", "stdout"))
        self.leave = check_bool("leave", leave)
        self._bar = None

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "description": self.description,
            "metrics": self.metrics,
            "file": self.file,
            "leave": self.leave,
        }

    def on_train_begin(self, logs=None):
        total = self.total_steps
        if total is None:
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            total = epochs * steps if epochs and steps else None
        self._bar = tqdm(
            total=total,
            desc=self.description,
            unit="step",
            file=getattr(sys, self.file),
            leave=self.leave,
            dynamic_ncols=True,
        )
        self._epoch = 0
        self._done_in_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._done_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1, `batch` is the index of the last step run.
        done = batch + 1
        self._bar.update(max(done - self._done_in_epoch, 0))
        self._done_in_epoch = done
        self._show(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._show(logs)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self, logs):
        shown = {"epoch": self._epoch + 1}
        for name, value in (logs or {}).items():
            if self.metrics is not None and name not in self.metrics:
                continue
            if isinstance(value, (int, float)):
                shown[name] = f"{value:.4g}" if isinstance(value, float) else value
        self._bar.set_postfix(shown, refresh=False)
