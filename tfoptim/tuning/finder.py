"""Learning-rate ranges centred on the model and the data by a learning-rate range test.

A family's fixed range (Adam-like [1e-5, 1e-2], SGD [1e-3, 1]) spans three decades because it
must serve every model; on one model and one data set, a short range test (Smith, 2017;
``tfoptim.callbacks.LearningRateFinder``) tells where that family's useful rates lie. Each
family gets one sweep, from a tenth of the bottom of its fixed range to ten times its top, and
its range is the finder's suggestion (where the smoothed loss falls fastest) times
``1 / width`` to ``width``: two decades around it with the default ``width=10``, inside the
swept interval. A family whose sweep suggests nothing (the loss never went down) keeps its
fixed range. Families whose rates share a scale share a sweep (:data:`SHARED_RANGE_TEST`).
"""

import inspect
import math

from tfoptim.tuning import space


#: ``{name: name whose range test serves it}`` when both are searched. AdamW is Adam with its
#: weight decay decoupled from the gradient: the decay shrinks the weights by ``rate * decay``
#: a step (4e-6 at Adam's default rate and AdamW's default decay), which over a range test's
#: few dozen steps does not move the loss, so the two sweeps would measure the same curve
#: (their suggestions on the realistic workloads differed by no more than between seeds).
SHARED_RANGE_TEST = {"adamw": "adam", "keras.adamw": "keras.adam"}


def range_tests(names):
    """``{name: the name whose sweep gives its range}`` for the optimizers ``names``: itself,
    or its :data:`SHARED_RANGE_TEST` partner where that is searched too."""
    return {n: SHARED_RANGE_TEST[n] if SHARED_RANGE_TEST.get(n) in names else n for n in names}


class FinderRanges(dict):
    """``{optimizer name: (low, high)}``, ready for ``sample_optimizer(hp, learning_rate=...)``.

    Attributes:
        suggestions: ``{name: suggested learning rate}`` (``nan`` where the sweep suggested
            nothing and the family kept its fixed range).
        steps: ``{name: training steps its sweep took}`` (a sweep stops early once the loss
            diverges; 0 for a name served by another's sweep).
        width: the factor each side of the suggestion.
    """

    def __init__(self, ranges, suggestions, steps, width):
        super().__init__(ranges)
        self.suggestions = dict(suggestions)
        self.steps = dict(steps)
        self.width = width

    @property
    def total_steps(self):
        """Training steps all sweeps took together."""
        return sum(self.steps.values())

    def to_dict(self):
        return {"ranges": {k: list(v) for k, v in self.items()}, "suggestions": self.suggestions,
                "steps": self.steps, "width": self.width}

    @classmethod
    def from_dict(cls, data):
        return cls({k: tuple(v) for k, v in data["ranges"].items()}, data["suggestions"],
                   data["steps"], data["width"])


def centred_range(suggestion, width, swept, fallback):
    """``[suggestion / width, suggestion * width]`` inside ``swept`` (the sweep's interval);
    ``fallback`` when the suggestion is not a finite positive rate."""
    if not (math.isfinite(suggestion) and suggestion > 0):
        return tuple(fallback)
    low = max(suggestion / width, swept[0])
    high = min(suggestion * width, swept[1])
    return (low, high)


def _call_build(build_model, hp):
    parameters = [
        p for p in inspect.signature(build_model).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return build_model(hp) if parameters else build_model()


def compile_config(model, loss=None, metrics=None):
    """The loss and metrics to compile with: the given ones, else the model's own."""
    if loss is None:
        config = getattr(model, "_compile_config", None)
        config = config.config if config is not None else {}
        loss = config.get("loss")
        metrics = metrics if metrics is not None else config.get("metrics")
    if loss is None:
        raise ValueError(
            "Tuning needs a loss: pass `loss=` (and `metrics=`), or return a compiled model "
            "from `build_model`."
        )
    return loss, metrics


def finder_ranges(
    build_model,
    x,
    y=None,
    optimizers=space.DEFAULT_OPTIMIZERS,
    batch_size=32,
    loss=None,
    metrics=None,
    num_steps=60,
    width=10.0,
    seed=None,
    progress=False,
):
    """Runs a learning-rate range test per optimizer family; returns the ranges around them.

    Args:
        build_model: ``build_model()`` or ``build_model(hp)`` (called with default
            hyperparameters), returning a Keras model, compiled or not; a fresh one per sweep.
        x, y: training data, as for ``model.fit`` (arrays or a ``tf.data`` dataset).
        optimizers: names as in :func:`sample_optimizer`.
        batch_size: for arrays.
        loss, metrics: for ``model.compile``; default: the compiled model's own.
        num_steps: steps per sweep (>= 3); it stops earlier once the loss diverges.
        width: factor each side of the suggestion (> 1).
        seed: seeds each sweep's initial weights and shuffling (``None``: as it comes).
        progress: show each sweep's progress bar.

    Returns:
        A :class:`FinderRanges`: ``{name: (low, high)}`` with ``suggestions`` and ``steps``.

    Example:

    ```python
    ranges = tfoptim.tuning.finder_ranges(build_model, x, y)
    def build(hp):
        model = build_model()
        model.compile(optimizer=tfoptim.tuning.sample_optimizer(hp, learning_rate=ranges), ...)
        return model
    ```
    """
    import keras
    import keras_tuner

    from tfoptim.callbacks.lr_finder import find_learning_rate

    if not callable(build_model):
        raise ValueError(f"`build_model` must be callable. Received: {build_model!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 1:
        raise ValueError(f"`width` must be a number > 1. Received: width={width!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3:
        raise ValueError(f"`num_steps` must be an int >= 3. Received: num_steps={num_steps!r}")
    names = [space.resolve(n).name for n in ((optimizers,) if isinstance(optimizers, str) else optimizers)]
    if not names:
        raise ValueError("`optimizers` must name at least one; received an empty list.")
    ranges, suggestions, steps = {}, {}, {}
    owners = range_tests(names)
    for index, name in enumerate(names):
        spec = space.resolve(name)
        if owners[name] != name:
            continue
        if seed is not None:
            keras.utils.set_random_seed(seed + index)
        model = _call_build(build_model, keras_tuner.HyperParameters())
        model_loss, model_metrics = compile_config(model, loss, metrics)
        family_low, family_high = spec.learning_rate_range
        swept = (family_low / 10.0, family_high * 10.0)
        model.compile(optimizer=spec.build(learning_rate=spec.default_learning_rate),
                      loss=model_loss, metrics=model_metrics)
        result = find_learning_rate(
            model, x, y, batch_size=batch_size, min_learning_rate=swept[0],
            max_learning_rate=swept[1], num_steps=num_steps, progress=progress,
        )
        suggestions[name] = float(result.suggestion)
        steps[name] = int(len(result.losses))
        ranges[name] = centred_range(result.suggestion, width, swept, spec.learning_rate_range)
    for name, owner in owners.items():
        if owner != name:
            ranges[name], suggestions[name], steps[name] = ranges[owner], suggestions[owner], 0
    return FinderRanges({n: ranges[n] for n in names}, {n: suggestions[n] for n in names},
                        {n: steps[n] for n in names}, float(width))
