"""The optimizer search space: which optimizers can be named, and what is tuned for each.

Nothing here lists optimizers by hand. The registry is read from ``tfoptim.optimizers.__all__``
and ``keras.optimizers`` when first needed, and what is tuned for an optimizer is read from its
constructor: an argument is tuned when :data:`PRIORS` has a prior for its name and the
constructor's default lies inside that prior (so Adam's ``beta_1=0.9`` is tuned, RMSprop's
``momentum=0.0`` is not). A new optimizer therefore joins the space without code changes.

Names. Every optimizer is named after its module, which is the snake-cased class name
(``adam``, ``rmsprop``, ``gradient_descent``, ``radam``, ``ademamix``); its lower-cased class name
works too. tfoptim's optimizers own the plain names; Keras's built-ins are always reachable as
``keras.<name>`` (``keras.adam``, ``keras.lion``) and take the plain name only when tfoptim has
no optimizer of that name. Two presets: ``sgd`` is plain SGD (no momentum) and ``momentum`` is
SGD with momentum and a Nesterov choice.
"""

import dataclasses
import functools
import inspect
import math

#: The optimizers ``sample_optimizer`` chooses from by default: a short list of strong families
#: (adaptive with coupled and with decoupled weight decay, SGD with momentum), so that a small
#: budget is spent on their learning rates and schedules rather than on weak families.
DEFAULT_OPTIMIZERS = ("adam", "adamw", "momentum")

#: The arguments tuned by default (``tune_arguments="needed"``), where a family tunes them at
#: all: decoupled weight decay, whose right strength depends on the model and the data and is
#: what sets AdamW apart from Adam. Moment coefficients and epsilon have defaults that work
#: across problems and are tuned only when asked.
NEEDED_ARGUMENTS = ("weight_decay",)


@dataclasses.dataclass(frozen=True)
class Prior:
    """A range for one hyperparameter: ``Float(low, high, sampling)``, or ``Boolean``."""

    low: float = None
    high: float = None
    sampling: str = "linear"
    boolean: bool = False

    def contains(self, value):
        if self.boolean:
            return isinstance(value, bool)
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


#: Priors by constructor-argument name. Moment coefficients sample densely near 1
#: (``reverse_log``), where their effect lives; scales sample log-uniformly.
PRIORS = {
    "beta_1": Prior(0.8, 0.99, "reverse_log"),
    "beta_2": Prior(0.9, 0.9999, "reverse_log"),
    "beta_3": Prior(0.99, 0.9999, "reverse_log"),
    "epsilon": Prior(1e-9, 1e-5, "log"),
    "momentum": Prior(0.5, 0.99, "reverse_log"),
    "rho": Prior(0.8, 0.999, "reverse_log"),
    "weight_decay": Prior(1e-5, 1e-1, "log"),
    "nesterov": Prior(boolean=True),
}

#: Log-uniform learning-rate ranges of the families whose useful rates are not "around the
#: default" (Keras's Adadelta defaults to 1e-3 but wants ~1, sign-based rules want ~1e-4).
#: Every other optimizer gets ``[default / 100, default * 10]``: Adam's 1e-3 gives [1e-5, 1e-2].
FAMILY_LEARNING_RATES = {
    "sgd": (1e-3, 1.0),
    "gradient_descent": (1e-3, 1.0),
    "dynamic_gradient_descent": (1e-3, 1.0),
    "adagrad": (1e-3, 1.0),
    "adadelta": (1e-2, 10.0),
    "ftrl": (1e-3, 1.0),
    "lion": (1e-6, 1e-3),
    "adafactor": (1e-4, 1e-1),
    "muon": (1e-4, 1e-1),
}

_KERAS_PREFIX = "keras."


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One nameable optimizer: its class, preset arguments and tuned arguments."""

    name: str
    cls: type
    family: str
    default_learning_rate: float
    tuned: tuple
    fixed: tuple = ()
    defaults: tuple = ()  # start values that differ from the constructor's (the presets')

    @property
    def learning_rate_range(self):
        if self.family in FAMILY_LEARNING_RATES:
            return FAMILY_LEARNING_RATES[self.family]
        return (self.default_learning_rate / 100, self.default_learning_rate * 10)

    def default(self, argument):
        """The value a search starts from: the preset's, else the constructor's default."""
        defaults = dict(self.defaults)
        if argument in defaults:
            return defaults[argument]
        return inspect.signature(self.cls.__init__).parameters[argument].default

    def build(self, **kwargs):
        return self.cls(**{**dict(self.defaults), **kwargs, **dict(self.fixed)})


def _module_name(cls):
    return cls.__module__.rsplit(".", 1)[-1]


def _constructible(cls):
    """Optimizer classes that take a learning rate and need nothing else (wrappers such as
    ``LossScaleOptimizer`` need an inner optimizer and are not named)."""
    import keras

    if not (inspect.isclass(cls) and issubclass(cls, keras.optimizers.Optimizer)):
        return False
    parameters = inspect.signature(cls.__init__).parameters
    if "learning_rate" not in parameters:
        return False
    required = [
        p.name
        for p in list(parameters.values())[1:]
        if p.name != "learning_rate"
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    return not required


def _tuned_arguments(cls, force=()):
    parameters = inspect.signature(cls.__init__).parameters
    tuned = []
    for name, parameter in parameters.items():
        prior = PRIORS.get(name)
        if prior is None or prior.boolean:
            continue
        if name in force or prior.contains(parameter.default):
            tuned.append(name)
    if "momentum" in tuned and "nesterov" in parameters:
        tuned.append("nesterov")
    return tuple(tuned)


def _spec(name, cls, fixed=(), force=(), defaults=()):
    default = inspect.signature(cls.__init__).parameters["learning_rate"].default
    default = default if isinstance(default, (int, float)) else 1e-3
    family = _module_name(cls) if name != "momentum" else "sgd"
    tuned = tuple(a for a in _tuned_arguments(cls, force) if a not in dict(fixed))
    return OptimizerSpec(name, cls, family, float(default), tuned, tuple(fixed), tuple(defaults))


@functools.lru_cache(maxsize=None)
def _registry():
    import keras

    import tfoptim.optimizers as tfoptim_optimizers

    specs, aliases = {}, {}

    def add(name, spec, *alias_names):
        specs[name] = spec
        for alias in alias_names:
            aliases.setdefault(alias, name)

    for class_name in sorted(tfoptim_optimizers.__all__):
        cls = getattr(tfoptim_optimizers, class_name)
        if cls is tfoptim_optimizers.Optimizer or not _constructible(cls):
            continue
        add(_module_name(cls), _spec(_module_name(cls), cls), class_name.lower())
    for class_name in sorted(dir(keras.optimizers)):
        cls = getattr(keras.optimizers, class_name)
        if cls is keras.optimizers.Optimizer or not _constructible(cls):
            continue
        name = _KERAS_PREFIX + _module_name(cls)
        add(name, _spec(name, cls), _KERAS_PREFIX + class_name.lower())
        for plain in (_module_name(cls), class_name.lower()):
            if plain not in specs:
                aliases.setdefault(plain, name)
    # The presets: SGD's own default (no momentum) is "sgd"; "momentum" tunes it.
    sgd = tfoptim_optimizers.SGD
    add("sgd", _spec("sgd", sgd, fixed=(("momentum", 0.0), ("nesterov", False))))
    add("momentum", _spec("momentum", sgd, force=("momentum",), defaults=(("momentum", 0.9),)))
    return specs, aliases


def optimizer_names():
    """Every name ``sample_optimizer`` accepts, aliases included, sorted."""
    specs, aliases = _registry()
    return sorted({*specs, *aliases})


def canonical_names():
    """One name per nameable optimizer (tfoptim's plain, Keras's with ``keras.``), plus the
    ``sgd``/``momentum`` presets."""
    return sorted(_registry()[0])


def resolve(name):
    """The :class:`OptimizerSpec` for a name (case-insensitive); ``ValueError`` if unknown."""
    specs, aliases = _registry()
    if not isinstance(name, str):
        raise ValueError(f"Optimizer names must be strings. Received: {name!r}")
    key = name.strip().lower()
    key = aliases.get(key, key)
    if key not in specs:
        raise ValueError(
            f"Unknown optimizer {name!r}. Choose from: {', '.join(canonical_names())} "
            "(class names, lower-cased, work too)."
        )
    return specs[key]


def learning_rate_prior(spec, learning_rate):
    """The learning-rate hyperparameter for one optimizer, as ``("float", low, high)``,
    ``("choice", values)`` or ``("fixed", value)``.

    ``learning_rate`` is a ``(low, high)`` envelope clipped to the family's range (when they
    do not overlap, the optimizer keeps its default rate: parameter-free rules keep 1.0), a
    list of values (a grid), a single float, ``None`` (the family's range, unclipped), or a
    dict from optimizer name to any of these.
    """
    if isinstance(learning_rate, dict):
        by_name = {resolve(k).name: v for k, v in learning_rate.items()}
        if spec.name not in by_name:
            return learning_rate_prior(spec, (1e-5, 1e-1))
        return _explicit_learning_rate(by_name[spec.name], exact=True)
    if learning_rate is None:
        return ("float", *spec.learning_rate_range)
    kind = _explicit_learning_rate(learning_rate)
    if kind[0] != "float":
        return kind
    low, high = max(kind[1], spec.learning_rate_range[0]), min(kind[2], spec.learning_rate_range[1])
    if high / low < 1.0 + 1e-9:
        return ("fixed", spec.default_learning_rate)
    return ("float", low, high)


def _explicit_learning_rate(value, exact=False):
    if isinstance(value, bool):
        raise ValueError(f"`learning_rate` must be a range, a list or a float. Received: {value!r}")
    if isinstance(value, (int, float)):
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={value!r}")
        return ("fixed", float(value))
    if isinstance(value, tuple) and len(value) == 2:
        low, high = (float(v) for v in value)
        if not 0 < low < high:
            raise ValueError(
                "`learning_rate` as a range must satisfy 0 < low < high. "
                f"Received: learning_rate={value!r}"
            )
        return ("float", low, high)
    if isinstance(value, list):
        if not value:
            raise ValueError("`learning_rate` as a list of values must not be empty.")
        for v in value:
            _explicit_learning_rate(float(v))
        return ("choice", [float(v) for v in value])
    raise ValueError(
        "`learning_rate` must be a (low, high) tuple, a list of values, a float, None or a "
        f"dict of these by optimizer name. Received: {value!r}"
    )
