"""Optimizer health figures in the training logs."""

import importlib.util
import math
import os

import keras
import numpy as np
import tensorflow as tf

from tfoptim.callbacks import _gradient_probe
from tfoptim.callbacks._state import SerializableCallback, build_optimizer, learning_rate_logs
from tfoptim._validation import check_bool, check_steps


@keras.saving.register_keras_serializable(package="tfoptim")
class OptimizerMonitor(SerializableCallback):
    """Adds the optimizer's vital signs to the training logs.

    Every ``log_every`` batches, and at the end of every epoch, the logs get:

    * ``learning_rate`` (``learning_rate_<name>`` per optimizer inside a ``MultiOptimizer``):
      the rate the next step will use, schedules included;
    * ``grad_norm``: the global L2 norm of the gradient of the last step;
    * ``update_ratio``: ``||w_after - w_before|| / ||w_before||`` over all trainable weights
      for the last step, the figure to watch for a learning rate that is too high (large) or
      too low (tiny);
    * ``nonfinite_grads``: how many gradient entries were NaN or Inf: in the last step for
      batch logs, over the whole epoch for epoch logs.

    The gradient is the one the real training step computed (captured inside
    ``optimizer.apply``, see ``tfoptim/callbacks/_gradient_probe.py``): of the unscaled loss
    (``LossScaleOptimizer`` and ``loss_scale_factor`` are undone), summed across replicas under a
    ``tf.distribute`` strategy, and before clipping. Because the figures are added to the logs,
    ``History``, ``CSVLogger``, ``TensorBoard`` and the progress bar all get them: put the
    monitor *before* those callbacks in the list.

    Cost: per step, a few reductions over the gradients, one copy of the trainable weights (for
    the update ratio), and under a multi-replica strategy one extra all-reduce of the gradients.

    Args:
        log_every: add the figures to the batch logs every this many batches (>= 1). Epoch logs
            always get them.
        histograms: also write TensorBoard histograms of every trainable variable's gradient
            and update, once per epoch, to ``log_dir`` (which is then required). Keeps a copy
            of the last gradient and update of every variable.
        per_layer: also add ``grad_norm/<layer>`` and ``update_ratio/<layer>`` per layer.
        log_dir: TensorBoard directory for ``histograms``; the histograms go to its ``train``
            subfolder, where Keras's ``TensorBoard`` callback writes its training scalars.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import OptimizerMonitor

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.random.rand(256, 8), np.random.rand(256, 1)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[OptimizerMonitor()])
    print(history.history["grad_norm"], history.history["update_ratio"])
    ```
    """

    def __init__(self, log_every=1, histograms=False, per_layer=False, log_dir=None):
        super().__init__()
        self.log_every = check_steps("log_every", log_every, 1)
        histograms = check_bool("histograms", histograms)
        per_layer = check_bool("per_layer", per_layer)
        if histograms and not log_dir:
            raise ValueError(
                "`log_dir` must be a directory when `histograms=True`. Received: log_dir=None"
            )
        if histograms and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "`histograms=True` writes TensorBoard summaries and needs the `tensorboard` "
                "package: `pip install tensorboard`."
            )
        self.histograms = histograms
        self.per_layer = per_layer
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._probe = None
        self._writer = None

    def get_config(self):
        return {
            "log_every": self.log_every,
            "histograms": self.histograms,
            "per_layer": self.per_layer,
            "log_dir": self.log_dir,
        }

    def on_train_begin(self, logs=None):
        self._batches = 0
        self._probe = None
        if build_optimizer(self.model):
            self._start()

    def _start(self):
        self._probe = _gradient_probe.attach(
            self.model, track_updates=True, keep_gradients=self.histograms
        )
        self._epoch_start_nonfinite = self._probe.nonfinite_total
        self._layers = self._layer_of_each_variable()
        if self.histograms:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))

    def on_epoch_begin(self, epoch, logs=None):
        if self._probe is not None:
            self._epoch_start_nonfinite = self._probe.nonfinite_total

    def on_train_batch_end(self, batch, logs=None):
        if self._probe is None:
            # The model was not built at `on_train_begin`; the first step has built it, so
            # monitoring starts with the next one.
            self._start()
            return
        self._batches += 1
        if logs is not None and self._batches % self.log_every == 0:
            logs.update(self.figures())

    def on_epoch_end(self, epoch, logs=None):
        if self._probe is None:
            return
        if logs is not None:
            figures = self.figures()
            figures["nonfinite_grads"] = self._probe.nonfinite_total - self._epoch_start_nonfinite
            logs.update(figures)
        if self._writer is not None:
            self._write_histograms(epoch)

    def on_train_end(self, logs=None):
        if self._probe is not None:
            _gradient_probe.detach(self._probe)
            self._probe = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def figures(self):
        """The figures of the last step, as a dict of Python numbers."""
        probe = self._probe
        figures = learning_rate_logs(self.model.optimizer)
        grad_sq = probe.gradient_norms() ** 2
        update_sq, weight_sq = probe.update_sq()
        figures["grad_norm"] = float(np.sqrt(grad_sq.sum()))
        figures["update_ratio"] = _ratio(update_sq.sum(), weight_sq.sum())
        figures["nonfinite_grads"] = probe.nonfinite
        if self.per_layer:
            for layer, slots in self._layers.items():
                figures[f"grad_norm/{layer}"] = float(np.sqrt(grad_sq[slots].sum()))
                figures[f"update_ratio/{layer}"] = _ratio(
                    update_sq[slots].sum(), weight_sq[slots].sum()
                )
        return figures

    def _layer_of_each_variable(self):
        layers = {}
        for slot, variable in enumerate(self._probe.variables):
            path = getattr(variable, "path", variable.name)
            layer = path.rsplit("/", 1)[0] if "/" in path else path
            layers.setdefault(layer, []).append(slot)
        return {layer: np.array(slots) for layer, slots in layers.items()}

    def _write_histograms(self, epoch):
        gradients, updates = self._probe.gradients()
        with self._writer.as_default(step=epoch):
            for variable, gradient, update in zip(self._probe.variables, gradients, updates):
                name = getattr(variable, "path", variable.name)
                tf.summary.histogram(f"{name}/gradient", gradient)
                tf.summary.histogram(f"{name}/update", update)
        self._writer.flush()


def _ratio(numerator_sq, denominator_sq):
    if denominator_sq == 0.0:
        return math.inf if numerator_sq > 0.0 else 0.0
    return float(math.sqrt(numerator_sq / denominator_sq))
