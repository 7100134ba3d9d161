"""``sample_optimizer``: an optimizer, its own hyperparameters and a schedule from ``hp``.

Hyperparameter names (with the default ``name="optimizer"``; another ``name`` prefixes all of
them with ``"<name>/"`` so several optimizers can be tuned in one model):

- ``optimizer``: the optimizer's name;
- ``<optimizer>/learning_rate``, ``<optimizer>/<argument>``: that optimizer's own, each in a
  conditional scope on ``optimizer``, so a trial holds values only for the chosen one;
- ``schedule``, ``schedule/<schedule>/<parameter>``, ``warmup``: when schedules or a warm-up
  are tuned;
- ``wrapper``, ``wrapper/<wrapper>/<argument>``: when wrappers are (``wrappers=``).

Every optimizer's and schedule's hyperparameters are declared in every trial (inactive ones
stay unset), so the oracle sees the whole space from the first trial: Bayesian optimization
and grid search need it.
"""

import math

from tfoptim.tuning import schedules as schedule_space
from tfoptim.tuning import space
from tfoptim.tuning import wrappers as wrapper_space

_SCHEDULE = "schedule"
_WARMUP = "warmup"
_WRAPPER = "wrapper"

#: The schedules ``schedules="auto"`` chooses from when the run's length is known: a constant
#: rate, or cosine decay to a tuned fraction of it, the usual strong choice for a fixed budget.
DEFAULT_SCHEDULES = ("constant", "cosine_decay")


def _prefix(name):
    return "" if name == "optimizer" else f"{name}/"


def _as_prior(argument, value):
    """A user's prior: a ``Prior``, a ``(low, high)`` tuple, a list of choices, or a value."""
    if isinstance(value, space.Prior):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        low, high = float(value[0]), float(value[1])
        sampling = value[2] if len(value) == 3 else "linear"
        if not low < high:
            raise ValueError(
                f"The prior of `{argument}` must have low < high. Received: {value!r}"
            )
        return space.Prior(low, high, sampling)
    if isinstance(value, list):
        if not value:
            raise ValueError(f"The choices for `{argument}` must not be empty.")
        return list(value)
    return ("fixed", value)


def _declare(hp, name, prior, default=None):
    """Registers one hyperparameter and returns its value (None when inactive)."""
    if isinstance(prior, space.Prior):
        if prior.boolean:
            return hp.Boolean(name, default=bool(default))
        if default is not None and not prior.contains(default):
            default = None
        return hp.Float(name, prior.low, prior.high, sampling=prior.sampling, default=default)
    if isinstance(prior, list):
        return hp.Choice(name, prior, default=default if default in prior else None)
    if isinstance(prior, tuple) and prior[0] == "fixed":
        return hp.Fixed(name, prior[1])
    raise TypeError(f"unexpected prior {prior!r}")


def _learning_rate(hp, name, kind, default):
    if kind[0] == "fixed":
        return hp.Fixed(name, kind[1])
    if kind[0] == "choice":
        return hp.Choice(name, kind[1])
    low, high = kind[1], kind[2]
    default = default if low <= default <= high else math.sqrt(low * high)
    return hp.Float(name, low, high, sampling="log", default=default)


def _check_names(kind, values, resolve):
    if isinstance(values, str):
        values = (values,)
    values = list(values)
    if not values:
        raise ValueError(f"`{kind}` must name at least one; received an empty list.")
    resolved = [resolve(v).name for v in values]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"`{kind}` names the same entry twice. Received: {values!r}")
    return resolved


def _check_warmup(warmup):
    if warmup is None:
        return None
    if isinstance(warmup, (int, float)) and not isinstance(warmup, bool):
        warmup = (float(warmup), float(warmup))
    low, high = (float(v) for v in warmup)
    if not 0.0 <= low <= high < 1.0:
        raise ValueError(
            "`warmup` is a fraction of the total steps, a float or a (low, high) range with "
            f"0 <= low <= high < 1. Received: warmup={warmup!r}"
        )
    return (low, high)


def sample_optimizer(
    hp,
    optimizers=space.DEFAULT_OPTIMIZERS,
    learning_rate=(1e-5, 1e-1),
    schedules="auto",
    warmup=None,
    total_steps=None,
    tune_arguments="needed",
    priors=None,
    wrappers=None,
    name="optimizer",
):
    """Samples an optimizer and only its own hyperparameters; returns the optimizer.

    Call it inside any ``build(hp)``:

    ```python
    def build(hp):
        model = ...
        model.compile(optimizer=tfoptim.tuning.sample_optimizer(hp), loss=..., metrics=...)
        return model
    ```

    Args:
        hp: the ``keras_tuner.HyperParameters`` of the trial.
        optimizers: names to choose from: any tfoptim optimizer by its snake-cased class name
            (``"adam"``, ``"rmsprop"``, ``"radam"``), any Keras built-in as
            ``"keras.<name>"`` (plain when tfoptim has no optimizer of that name), and the
            presets ``"sgd"`` (no momentum) and ``"momentum"`` (SGD with momentum 0.9;
            momentum and Nesterov tuned when arguments are). Default:
            ``DEFAULT_OPTIMIZERS``, ``("adam", "adamw", "momentum")``.
            ``tfoptim.tuning.optimizer_names()`` lists them.
        learning_rate: ``(low, high)``: each family's log-uniform range clipped to it (SGD
            [1e-3, 1], Adam-like [1e-5, 1e-2], Lion [1e-6, 1e-3], ...; an optimizer whose
            range does not meet it keeps its default rate). A list of values (a grid), a
            float (fixed), ``None`` (the family ranges as they are), or a dict from optimizer
            name to any of these: :func:`finder_ranges` returns one centred on the model and
            data by a learning-rate range test.
        schedules: schedule names to choose from (``"constant"``, ``"cosine"``,
            ``"one_cycle"``, ``"warmup_stable_decay"``, ...; see ``schedule_names()``). Any
            other than ``"constant"`` needs ``total_steps``. ``"auto"`` (the default):
            ``DEFAULT_SCHEDULES`` (constant or cosine decay) when ``total_steps`` is given,
            ``("constant",)`` otherwise, since a decay is laid out over the run.
        warmup: the linear warm-up as a fraction of ``total_steps``: a float, or a
            ``(low, high)`` range to tune. ``None``: no warm-up.
        total_steps: the training steps the schedule spans (``OptimizerHyperModel`` fills it
            in from the data, batch size and epochs).
        tune_arguments: which of each optimizer's own arguments are tuned besides the
            learning rate (only where the optimizer tunes them at all: a prior exists and
            its constructor's default lies inside it). ``"needed"`` (the default): those a
            family needs, ``NEEDED_ARGUMENTS`` (AdamW's weight decay), so a small budget goes
            to the optimizer, its rate and the schedule. ``True``: all of them (moment
            coefficients, epsilon, momentum and Nesterov too). ``False``: none (a small space,
            for instance for ``GridSearch``). A list of argument names: those.
        priors: overrides by constructor-argument name, for every optimizer that has the
            argument: a ``tfoptim.tuning.Prior``, a ``(low, high[, sampling])`` tuple, a list
            of choices, or a value to fix.
        wrappers: wrappers to choose from around the optimizer, one per trial: ``"none"``
            (the optimizer alone), ``"sam"``, ``"asam"``, ``"lookahead"``,
            ``"gradient_centralization"`` (``"gc"``), ``"adaptive_gradient_clipping"``
            (``"agc"``); each tunes its own arguments in a conditional scope (SAM's ``rho``,
            Lookahead's ``sync_period`` and ``slow_step_size``, AGC's ``clip_factor``; see
            ``tfoptim.tuning.wrappers.WRAPPERS`` for the ranges). Name one to use it in every
            trial, ``["none", "sam"]`` to let the search decide. Under SAM a step of the
            optimizer takes two ``fit`` steps, so its schedule spans half of ``total_steps``.
            Evaluate SAM and Lookahead with their evaluation weights
            (:class:`tfoptim.callbacks.EvaluationWeights`; ``OptimizerHyperModel`` and
            ``autotune`` add it). ``None`` (the default): no wrapper, no hyperparameter.
        name: the name of the choice; other names prefix every hyperparameter.

    Raises:
        ValueError: an unknown optimizer, schedule or wrapper, an empty list, an inverted
            range, or a schedule without ``total_steps``.
    """
    optimizer_names = _check_names("optimizers", optimizers, space.resolve)
    wrapper_names = _check_wrappers(wrappers)
    if isinstance(schedules, str) and schedules == "auto":
        schedules = DEFAULT_SCHEDULES if total_steps is not None else ("constant",)
    schedule_names = _check_names("schedules", schedules, schedule_space.resolve_schedule)
    tune_arguments = _check_tune_arguments(tune_arguments)
    warmup = _check_warmup(warmup)
    user_priors = {k: _as_prior(k, v) for k, v in (priors or {}).items()}
    if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 1):
        raise ValueError(f"`total_steps` must be an int >= 1. Received: {total_steps!r}")
    if total_steps is None and (schedule_names != ["constant"] or (warmup and warmup[1] > 0)):
        raise ValueError(
            f"Schedules {schedule_names} and warm-ups are laid out over the run: pass "
            "`total_steps` (OptimizerHyperModel does it for you)."
        )
    prefix = _prefix(name)
    hp.Choice(name, optimizer_names)
    for optimizer in optimizer_names:
        spec = space.resolve(optimizer)
        with hp.conditional_scope(name, [optimizer]):
            kind = space.learning_rate_prior(spec, learning_rate)
            _learning_rate(hp, f"{prefix}{optimizer}/learning_rate", kind, spec.default_learning_rate)
            for argument, prior in _arguments(spec, tune_arguments, user_priors):
                _declare(hp, f"{prefix}{optimizer}/{argument}", prior, spec.default(argument))
    if schedule_names != ["constant"]:
        hp.Choice(f"{prefix}{_SCHEDULE}", schedule_names)
        for schedule in schedule_names:
            with hp.conditional_scope(f"{prefix}{_SCHEDULE}", [schedule]):
                for parameter, prior in schedule_space.SPECS[schedule].parameters.items():
                    _declare(hp, f"{prefix}{_SCHEDULE}/{schedule}/{parameter}", prior)
    if warmup and warmup[1] > 0:
        _declare_warmup(hp, prefix, warmup, schedule_names)
    if wrapper_names:
        _declare_wrappers(hp, prefix, wrapper_names)
    return optimizer_from_values(hp.values, total_steps=total_steps, name=name)


def _check_wrappers(wrappers):
    if wrappers is None:
        return None
    if isinstance(wrappers, str):
        wrappers = (wrappers,)
    wrappers = list(wrappers)
    if not wrappers:
        raise ValueError("`wrappers` must name at least one (or be None); received an empty list.")
    resolved = [wrapper_space.resolve_wrapper(w) for w in wrappers]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"`wrappers` names the same wrapper twice. Received: {wrappers!r}")
    return resolved


def _declare_wrappers(hp, prefix, names):
    if len(names) == 1:
        hp.Fixed(f"{prefix}{_WRAPPER}", names[0])
    else:
        hp.Choice(f"{prefix}{_WRAPPER}", names)
    for wrapper in names:
        if wrapper == wrapper_space.NONE:
            continue
        spec = wrapper_space.WRAPPERS[wrapper]
        defaults = dict(spec.defaults)
        with hp.conditional_scope(f"{prefix}{_WRAPPER}", [wrapper]):
            for argument, prior in spec.priors:
                _declare(hp, f"{prefix}{_WRAPPER}/{wrapper}/{argument}", prior, defaults.get(argument))


def _declare_warmup(hp, prefix, warmup, schedule_names):
    """The warm-up fraction, active only for schedules that take one (not OneCycle's rise)."""
    takers = [n for n in schedule_names if schedule_space.SPECS[n].takes_warmup]
    if not takers:
        return
    if schedule_names != ["constant"] and takers != schedule_names:
        with hp.conditional_scope(f"{prefix}{_SCHEDULE}", takers):
            _declare_warmup(hp, prefix, warmup, takers)
        return
    if warmup[0] == warmup[1]:
        hp.Fixed(f"{prefix}{_WARMUP}", warmup[0])
    else:
        hp.Float(f"{prefix}{_WARMUP}", warmup[0], warmup[1])


def _check_tune_arguments(tune_arguments):
    """``tune_arguments`` as the set of argument names it selects, or True (all)."""
    if tune_arguments is True or tune_arguments is False:
        return tune_arguments
    if isinstance(tune_arguments, str) and tune_arguments == "needed":
        return set(space.NEEDED_ARGUMENTS)
    if isinstance(tune_arguments, str):
        tune_arguments = (tune_arguments,)
    names = set(tune_arguments)
    unknown = sorted(n for n in names if n not in space.PRIORS or space.PRIORS[n].boolean)
    if unknown:
        raise ValueError(
            f"`tune_arguments` must be 'needed', True, False or names from "
            f"{sorted(n for n, p in space.PRIORS.items() if not p.boolean)} (others go in "
            f"`priors`). Received unknown names: {unknown}"
        )
    return names


def _arguments(spec, tune_arguments, user_priors):
    import inspect

    parameters = inspect.signature(spec.cls.__init__).parameters
    fixed = dict(spec.fixed)
    chosen = {}
    if tune_arguments is True:
        chosen = {a: space.PRIORS[a] for a in spec.tuned}
    elif tune_arguments:
        # Nesterov is a choice that goes with a tuned momentum.
        wanted = tune_arguments | ({"nesterov"} if "momentum" in tune_arguments else set())
        chosen = {a: space.PRIORS[a] for a in spec.tuned if a in wanted}
    for argument, prior in user_priors.items():
        if argument in parameters and argument not in fixed and argument != "learning_rate":
            chosen[argument] = prior
    return sorted(chosen.items())


def needs_total_steps(values, name="optimizer"):
    """Whether the configuration in ``values`` has a schedule or warm-up laid out over steps."""
    prefix = _prefix(name)
    return values.get(f"{prefix}{_SCHEDULE}", "constant") != "constant" or bool(
        values.get(f"{prefix}{_WARMUP}", 0.0)
    )


def optimizer_from_values(values, total_steps=None, name="optimizer"):
    """A fresh optimizer from a trial's hyperparameter values (``hp.values``)."""
    prefix = _prefix(name)
    if name not in values:
        raise ValueError(
            f"No optimizer choice {name!r} in the values {sorted(values)}: were they sampled "
            "by `sample_optimizer`?"
        )
    spec = space.resolve(values[name])
    own = f"{prefix}{spec.name}/"
    kwargs = {k[len(own):]: v for k, v in values.items() if k.startswith(own)}
    peak = kwargs.pop("learning_rate")
    schedule = values.get(f"{prefix}{_SCHEDULE}", "constant")
    warmup = float(values.get(f"{prefix}{_WARMUP}", 0.0))
    if needs_total_steps(values, name) and total_steps is None:
        raise ValueError(
            f"The configuration uses schedule {schedule!r} (warm-up {warmup:g}): pass `total_steps`."
        )
    params_prefix = f"{prefix}{_SCHEDULE}/{schedule}/"
    params = {k[len(params_prefix):]: v for k, v in values.items() if k.startswith(params_prefix)}
    wrapper = values.get(f"{prefix}{_WRAPPER}", wrapper_space.NONE)
    if total_steps is not None:
        # The schedule counts the inner optimizer's steps (SAM's come every second call).
        total_steps = max(1, math.ceil(total_steps / wrapper_space.calls_per_step(wrapper)))
    rate = schedule_space.build_schedule(schedule, peak, params, total_steps, warmup)
    optimizer = spec.build(learning_rate=rate, **kwargs)
    if wrapper == wrapper_space.NONE:
        return optimizer
    own = f"{prefix}{_WRAPPER}/{wrapper}/"
    wrapper_kwargs = {k[len(own):]: v for k, v in values.items() if k.startswith(own)}
    return wrapper_space.WRAPPERS[wrapper].build(optimizer, **wrapper_kwargs)


def schedule_names():
    """One name per schedule ``sample_optimizer`` offers, sorted (``schedules.ALIASES`` holds
    the short forms: ``cosine``, ``linear``, ``step``, ...)."""
    return sorted(schedule_space.SPECS)
