"""The learning-rate range test (Smith, 2017; popularised by fast.ai's ``lr_find``)."""

import dataclasses
import json
import math

import keras
import numpy as np
import tensorflow as tf

from tfoptim.callbacks._state import (
    SerializableCallback,
    TrainingSnapshot,
    build_optimizer,
    has_variable_learning_rate,
    leaf_optimizers,
    print_message,
)
from tfoptim.callbacks.progress_bar import ProgressBar
from tfoptim._validation import check_choice, check_positive, check_range, check_steps

METHODS = ("steepest", "minimum/10")


@dataclasses.dataclass(frozen=True)
class LearningRateFinderResult:
    """What a range test measured, and the learning rate it suggests.

    Attributes:
        learning_rates: the rate used at each step of the sweep.
        losses: the training loss of each step.
        smoothed_losses: ``losses`` smoothed with the moving average's weights on both sides of
            each step, so that it does not lag (see ``_smooth``).
        diverged: the sweep stopped early because the loss blew up.
        method: how ``suggestion`` was chosen: ``"steepest"`` (where the smoothed loss falls
            fastest against log(lr)) or ``"minimum/10"`` (a tenth of the rate at the lowest
            smoothed loss).
        suggestion: the suggested learning rate (``nan`` if the loss never went down: start
            the sweep lower).
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    diverged: bool
    method: str
    suggestion: float

    def suggest(self, method):
        """The learning rate that ``method`` (one of ``"steepest"``, ``"minimum/10"``) picks."""
        check_choice("method", method, METHODS)
        return _suggest(self.learning_rates, self.smoothed_losses, method)

    @property
    def suggestions(self):
        """``{method: learning rate}`` for every method."""
        return {method: self.suggest(method) for method in METHODS}

    def to_dict(self):
        return {
            "learning_rates": self.learning_rates.tolist(),
            "losses": self.losses.tolist(),
            "smoothed_losses": self.smoothed_losses.tolist(),
            "diverged": self.diverged,
            "method": self.method,
            "suggestion": self.suggestion,
            "suggestions": self.suggestions,
        }

    def to_json(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    def plot(self, path=None, ax=None):
        """Plots loss against learning rate (log scale) and marks the suggestions.

        Draws on ``ax`` if given, else on a new figure; saves to ``path`` if given. Returns the
        ``matplotlib`` figure.
        """
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 4.0), layout="constrained") if ax is None else ax.figure
        ax = ax if ax is not None else figure.subplots()
        ax.plot(self.learning_rates, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.learning_rates, self.smoothed_losses, color="C0", lw=2, label="smoothed loss")
        markers = {"steepest": ("C3", "o"), "minimum/10": ("C2", "s")}
        for method, rate in self.suggestions.items():
            if not math.isfinite(rate):
                continue
            color, marker = markers[method]
            loss = np.interp(np.log(rate), np.log(self.learning_rates), self.smoothed_losses)
            chosen = " (suggestion)" if method == self.method else ""
            ax.plot([rate], [loss], marker=marker, color=color, ls="none", ms=8,
                    label=f"{method}: {rate:.2g}{chosen}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        raw = self.losses[np.isfinite(self.losses)]
        if raw.size:
            # From the lowest loss to a little above the starting one: the divergence at the
            # end would otherwise squash the part of the curve that matters.
            start = float(np.max(self.smoothed_losses[np.isfinite(self.smoothed_losses)]))
            low = float(raw.min())
            span = max(start - low, 1e-12)
            ax.set_ylim(low - 0.05 * span, start + 0.25 * span)
        ax.set_title("Learning-rate range test")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left")
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


def _exponential_sums(values, smoothing):
    """``out[i] = sum_{j <= i} smoothing**(i - j) * values[j]``."""
    total, out = 0.0, np.empty(len(values))
    for i, value in enumerate(values):
        total = smoothing * total + value
        out[i] = total
    return out


def _smooth(losses, smoothing):
    """The losses smoothed without delay: a weighted mean with weights ``smoothing**|i - j|``.

    These are the exponential moving average's weights, put on both sides of each step. The
    one-way average lags by about ``smoothing / (1 - smoothing)`` steps (49 at 0.98, half a
    100-step sweep), which moves the steepest descent a decade or more to the right; the
    two-sided one does not lag, and normalising by the weights present handles both ends of
    the sweep. Losses above the starting level are clipped to it first, so the blow-up at the
    end of the sweep does not bleed backwards into the part that matters.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0:
        return losses
    head = losses[: max(3, losses.size // 10)]
    head = head[np.isfinite(head)]
    start = float(np.median(head)) if head.size else np.inf
    clipped = np.where(np.isfinite(losses), np.minimum(losses, start), start)
    ones = np.ones_like(clipped)
    numerator = (
        _exponential_sums(clipped, smoothing)
        + _exponential_sums(clipped[::-1], smoothing)[::-1]
        - clipped
    )
    weights = _exponential_sums(ones, smoothing) + _exponential_sums(ones, smoothing)[::-1] - 1.0
    return numerator / weights


def _suggest(learning_rates, smoothed, method):
    finite = np.isfinite(smoothed)
    if finite.sum() < 3:
        return float("nan")
    lowest = int(np.nanargmin(np.where(finite, smoothed, np.nan)))
    if method == "minimum/10":
        return float(learning_rates[lowest] / 10.0)
    if lowest < 2:
        # The loss never went down: the sweep started too high.
        return float("nan")
    segment = slice(0, lowest + 1)
    slope = np.gradient(smoothed[segment], np.log(learning_rates[segment]))
    return float(learning_rates[segment][int(np.argmin(slope))])


class _SweepRate(keras.optimizers.schedules.LearningRateSchedule):
    """Stands in for a schedule during the sweep: the rate held in ``variable``."""

    def __init__(self, variable):
        self.variable = variable

    def __call__(self, step):
        return keras.ops.convert_to_tensor(self.variable)


@keras.saving.register_keras_serializable(package="tfoptim")
class LearningRateFinder(SerializableCallback):
    """The learning-rate range test, as a callback.

    For ``num_steps`` training steps the learning rate grows exponentially from
    ``min_learning_rate`` to ``max_learning_rate`` while the loss of each step is recorded.
    The sweep stops early when the loss diverges (non-finite, or its running average above
    ``divergence_factor`` times the best so far). Then everything is put back exactly as it
    was: model variables, optimizer variables (slots, iteration counters, a float learning
    rate), the metrics' state and the learning-rate object itself (a schedule is swapped out
    during the sweep and back in afterwards), so the sweep leaves no trace on the model.

    The result is in ``result`` (a :class:`LearningRateFinderResult`) once training ends.
    ``tfoptim.find_learning_rate`` wraps this in one call; use the callback directly to sweep
    with your own ``fit`` arguments (it stops training when done, so give ``fit`` enough
    epochs, and no callbacks that save the model mid-sweep). With several optimizers (a
    ``MultiOptimizer``) they all get the swept rate.

    Args:
        min_learning_rate: first rate of the sweep (> 0).
        max_learning_rate: last rate of the sweep (> ``min_learning_rate``).
        num_steps: steps in the sweep (integer >= 3).
        smoothing: coefficient of the exponential moving average of the loss, in [0, 1). The
            running average judges divergence during the sweep; afterwards the same weights,
            put on both sides of each step (no lag), give ``smoothed_losses`` and the
            suggestion.
        divergence_factor: stop once the running average exceeds this multiple of its best
            (> 1).
        method: how ``result.suggestion`` is chosen: ``"steepest"`` or ``"minimum/10"``.
        verbose: 1 prints the suggestion at the end.

    Example:

    ```python
    import keras
    import numpy as np
    from tfoptim.callbacks import LearningRateFinder

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.random.rand(2048, 8), np.random.rand(2048, 1)
    finder = LearningRateFinder(num_steps=60)
    model.fit(x, y, batch_size=32, epochs=10, verbose=0, callbacks=[finder])
    print(finder.result.suggestion)
    ```
    """

    def __init__(
        self,
        min_learning_rate=1e-7,
        max_learning_rate=10.0,
        num_steps=100,
        smoothing=0.98,
        divergence_factor=4.0,
        method="steepest",
        verbose=0,
    ):
        super().__init__()
        self.min_learning_rate = check_positive("min_learning_rate", min_learning_rate)
        self.max_learning_rate = check_range(
            "max_learning_rate", max_learning_rate, self.min_learning_rate, low_open=True
        )
        self.num_steps = check_steps("num_steps", num_steps, 3)
        self.smoothing = check_range("smoothing", smoothing, 0.0, 1.0, high_open=True)
        self.divergence_factor = check_range(
            "divergence_factor", divergence_factor, 1.0, low_open=True
        )
        self.method = check_choice("method", method, METHODS)
        self.verbose = check_choice("verbose", verbose, (0, 1))
        self.result = None

    def get_config(self):
        return {
            "min_learning_rate": self.min_learning_rate,
            "max_learning_rate": self.max_learning_rate,
            "num_steps": self.num_steps,
            "smoothing": self.smoothing,
            "divergence_factor": self.divergence_factor,
            "method": self.method,
            "verbose": self.verbose,
        }

    def learning_rate_at(self, step):
        """The rate of sweep step ``step`` (0-based)."""
        ratio = self.max_learning_rate / self.min_learning_rate
        return self.min_learning_rate * ratio ** (step / (self.num_steps - 1))

    def on_train_begin(self, logs=None):
        self.result = None
        model = self.model
        if not build_optimizer(model):
            raise ValueError(
                "LearningRateFinder needs a built model, so that the weights it restores exist "
                "before the sweep: create the model with `keras.Input`, or call it on a batch "
                "first (`tfoptim.find_learning_rate` does this for you)."
            )
        self._snapshot = TrainingSnapshot(model)
        self._leaves = leaf_optimizers(model.optimizer)
        self._swapped = {}
        with model.distribute_strategy.scope():
            self._rate = keras.Variable(
                self.min_learning_rate, dtype="float32", trainable=False, name="sweep_rate"
            )
        for leaf in self._leaves:
            if not has_variable_learning_rate(leaf):
                self._swapped[id(leaf)] = leaf._learning_rate
                leaf.learning_rate = _SweepRate(self._rate)
        if self._swapped:
            model.make_train_function(force=True)
        self._step = 0
        self._average = 0.0
        self._best = math.inf
        self._rates, self._losses = [], []
        self._diverged = False

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.learning_rate_at(self._step)
        self._rate.assign(rate)
        for leaf in self._leaves:
            if id(leaf) not in self._swapped:
                leaf.learning_rate = rate
        # So that the logged loss is this batch's, not the epoch's running mean.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        self._rates.append(self.learning_rate_at(self._step))
        self._losses.append(loss)
        self._step += 1
        # Divergence has to be judged online, so on the one-way (lagging) average.
        self._average = self.smoothing * self._average + (1.0 - self.smoothing) * loss
        smoothed = self._average / (1.0 - self.smoothing**self._step)
        if not math.isfinite(smoothed) or smoothed > self.divergence_factor * self._best:
            self._diverged = True
            self.model.stop_training = True
            return
        self._best = min(self._best, smoothed)
        if self._step >= self.num_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for leaf in self._leaves:
            if id(leaf) in self._swapped:
                leaf.learning_rate = self._swapped[id(leaf)]
        self._snapshot.restore()
        if self._swapped:
            self.model.make_train_function(force=True)
        self._snapshot = None
        rates = np.array(self._rates)
        smoothed = _smooth(self._losses, self.smoothing)
        self.result = LearningRateFinderResult(
            learning_rates=rates,
            losses=np.array(self._losses),
            smoothed_losses=smoothed,
            diverged=self._diverged,
            method=self.method,
            suggestion=_suggest(rates, smoothed, self.method) if len(rates) else float("nan"),
        )
        if self.verbose:
            print_message(
                f"LearningRateFinder: suggested learning rate {self.result.suggestion:.3g} "
                f"({self.method}, {len(rates)} steps{', diverged' if self._diverged else ''})."
            )


def find_learning_rate(
    model,
    x,
    y=None,
    batch_size=32,
    min_learning_rate=1e-7,
    max_learning_rate=10.0,
    num_steps=100,
    smoothing=0.98,
    divergence_factor=4.0,
    method="steepest",
    sample_weight=None,
    progress=True,
):
    """Runs a learning-rate range test on a compiled model and returns its result.

    The model, its optimizer (state and learning rate, float or schedule) and its metrics are
    left exactly as they were. ``x``/``y``/``sample_weight`` are what ``model.fit`` takes:
    arrays (cycled through in shuffled epochs as long as the sweep needs), a ``tf.data``
    dataset (repeated; ``batch_size`` is then ignored) or a ``keras.utils.PyDataset``.

    Args:
        model: a compiled Keras model.
        progress: show a tqdm bar over the sweep.
        other arguments: as for :class:`LearningRateFinder`.

    Returns:
        A :class:`LearningRateFinderResult`: ``learning_rates``, ``losses``,
        ``smoothed_losses``, ``suggestion`` (and ``suggestions`` for every method),
        ``plot(path)``.

    Example:

    ```python
    import keras
    import tfoptim
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    result = tfoptim.find_learning_rate(model, x, y)
    print(result.suggestion)
    result.plot("lr_finder.png")
    ```
    """
    finder = LearningRateFinder(
        min_learning_rate=min_learning_rate,
        max_learning_rate=max_learning_rate,
        num_steps=num_steps,
        smoothing=smoothing,
        divergence_factor=divergence_factor,
        method=method,
    )
    callbacks = [finder]
    if progress:
        callbacks.append(ProgressBar(total_steps=num_steps, description="lr-find", leave=False))
    if not model.built:
        with model.distribute_strategy.scope():
            model(_first_inputs(x, batch_size), training=False)
    previous_history = getattr(model, "history", None)
    fit_args = {"callbacks": callbacks, "verbose": 0}
    if isinstance(x, tf.data.Dataset):
        model.fit(x.repeat(), epochs=1, steps_per_epoch=num_steps, shuffle=False, **fit_args)
    elif isinstance(x, keras.utils.PyDataset):
        epochs = math.ceil(num_steps / len(x)) if len(x) else 1
        model.fit(x, epochs=epochs, shuffle=False, **fit_args)
    else:
        samples = len(keras.tree.flatten(x)[0])
        steps_per_epoch = math.ceil(samples / batch_size)
        model.fit(
            x,
            y,
            batch_size=batch_size,
            sample_weight=sample_weight,
            epochs=math.ceil(num_steps / steps_per_epoch),
            shuffle=True,
            **fit_args,
        )
    model.history = previous_history
    return finder.result


def _first_inputs(x, batch_size):
    """A batch of model inputs from whatever ``fit`` would take, to build the model with."""
    if isinstance(x, tf.data.Dataset):
        data = next(iter(x.take(1)))
    elif isinstance(x, keras.utils.PyDataset):
        data = x[0]
    else:
        return keras.tree.map_structure(lambda a: a[:batch_size], x)
    return data[0] if isinstance(data, tuple) else data
