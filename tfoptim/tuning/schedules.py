"""Learning-rate schedules in the search space, each with its own hyperparameters.

Every schedule is laid out over the run's total number of steps, so its hyperparameters are
fractions and ratios, not step counts: a configuration found on one data size transfers to
another. The sampled learning rate is the schedule's peak. A warm-up (a fraction of the total
steps, linear from 0) goes in front of any schedule through ``tfoptim.schedules.LinearWarmup``;
``warmup_stable_decay`` and ``inverse_sqrt_decay`` use it as their own warm-up, ``one_cycle``
has its rise built in.

Names are the snake-cased class names (``cosine_decay``, ``one_cycle``) or the short aliases
below (``cosine``, ``linear``, ``step``, ...).
"""

import dataclasses
import math

from tfoptim.tuning.space import Prior

#: Wrappers that the space uses itself (warm-up) rather than offering as a choice.
COMBINATORS = ("LinearWarmup", "SequentialSchedule")


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    name: str
    parameters: dict  # name -> Prior or list of choices
    build: object  # (peak_lr, params, decay_steps, warmup_steps) -> schedule or float
    own_warmup: bool = False
    #: False where the schedule's own shape has no place for a warm-up (OneCycle's rise).
    takes_warmup: bool = True


def _k():
    import keras

    return keras.optimizers.schedules


def _t():
    import tfoptim.schedules

    return tfoptim.schedules


FINAL = Prior(1e-3, 0.3, "log")  # final rate as a fraction of the peak
GAMMA = Prior(0.1, 0.5, "log")  # factor per step decay


def _piecewise(lr, p, steps, _):
    boundaries = sorted({max(1, round(steps * f)) for f in (0.5, 0.75)})
    return _k().PiecewiseConstantDecay(
        boundaries, [lr * p["gamma"] ** k for k in range(len(boundaries) + 1)]
    )


def _cyclical(lr, p, steps, _):
    half = max(1, steps // (2 * p["cycles"]))
    return _t().CyclicalLearningRate(lr / p["max_over_base"], lr, half, mode=p["mode"])


def _one_cycle(lr, p, steps, _):
    # OneCycle needs its rise to span more than one step; very short runs get a longer rise.
    steps = max(4, steps)
    pct_start = min(0.9, max(p["pct_start"], 1.5 / steps))
    return _t().OneCycle(lr, steps, pct_start=pct_start, anneal_strategy=p["anneal_strategy"])


def _wsd(lr, p, steps, warmup):
    decay = max(1, round(steps * p["decay_fraction"]))
    stable = max(0, steps - warmup - decay)
    return _t().WarmupStableDecay(
        lr, warmup, stable, decay, lr * p["final_fraction"], decay_type=p["decay_type"]
    )


SPECS = {
    "constant": ScheduleSpec("constant", {}, lambda lr, p, steps, w: lr),
    "cosine_decay": ScheduleSpec(
        "cosine_decay",
        {"alpha": FINAL},
        lambda lr, p, steps, w: _k().CosineDecay(lr, max(1, steps), alpha=p["alpha"]),
    ),
    "cosine_decay_restarts": ScheduleSpec(
        "cosine_decay_restarts",
        {"first_cycle": Prior(0.1, 0.5), "t_mul": [1.0, 2.0], "m_mul": Prior(0.5, 1.0),
         "alpha": FINAL},
        lambda lr, p, steps, w: _k().CosineDecayRestarts(
            lr, max(1, round(steps * p["first_cycle"])), p["t_mul"], p["m_mul"], p["alpha"]
        ),
    ),
    "exponential_decay": ScheduleSpec(
        "exponential_decay",
        {"final_fraction": FINAL},
        lambda lr, p, steps, w: _k().ExponentialDecay(lr, max(1, steps), p["final_fraction"]),
    ),
    "inverse_time_decay": ScheduleSpec(
        "inverse_time_decay",
        {"decay_rate": Prior(1.0, 100.0, "log")},
        lambda lr, p, steps, w: _k().InverseTimeDecay(lr, max(1, steps), p["decay_rate"]),
    ),
    "piecewise_constant_decay": ScheduleSpec("piecewise_constant_decay", {"gamma": GAMMA}, _piecewise),
    "polynomial_decay": ScheduleSpec(
        "polynomial_decay",
        {"final_fraction": FINAL, "power": [1.0, 2.0]},
        lambda lr, p, steps, w: _k().PolynomialDecay(
            lr, max(1, steps), lr * p["final_fraction"], power=p["power"]
        ),
    ),
    "linear": ScheduleSpec(
        "linear",
        {"final_fraction": FINAL},
        lambda lr, p, steps, w: _k().PolynomialDecay(lr, max(1, steps), lr * p["final_fraction"]),
    ),
    "one_cycle": ScheduleSpec(
        "one_cycle",
        {"pct_start": Prior(0.1, 0.5), "anneal_strategy": ["cos", "linear"]},
        _one_cycle,
        own_warmup=True,
        takes_warmup=False,
    ),
    "cyclical_learning_rate": ScheduleSpec(
        "cyclical_learning_rate",
        {"max_over_base": Prior(3.0, 30.0, "log"), "cycles": [1, 2, 4],
         "mode": ["triangular", "triangular2"]},
        _cyclical,
    ),
    "warmup_stable_decay": ScheduleSpec(
        "warmup_stable_decay",
        {"decay_fraction": Prior(0.1, 0.3), "final_fraction": FINAL,
         "decay_type": ["linear", "cosine"]},
        _wsd,
        own_warmup=True,
    ),
    "inverse_sqrt_decay": ScheduleSpec(
        "inverse_sqrt_decay",
        {},
        lambda lr, p, steps, w: _t().InverseSqrtDecay(lr, max(1, w)),
        own_warmup=True,
    ),
    "step_decay": ScheduleSpec(
        "step_decay",
        {"decays": [2, 3, 4], "gamma": GAMMA},
        lambda lr, p, steps, w: _t().StepDecay(
            lr, max(1, math.ceil(steps / (p["decays"] + 1))), p["gamma"]
        ),
    ),
    "multi_step_decay": ScheduleSpec(
        "multi_step_decay",
        {"gamma": GAMMA},
        lambda lr, p, steps, w: _t().MultiStepDecay(
            lr, sorted({max(1, round(steps * f)) for f in (0.5, 0.75)}), p["gamma"]
        ),
    ),
}

ALIASES = {
    "cosine": "cosine_decay",
    "cosine_restarts": "cosine_decay_restarts",
    "sgdr": "cosine_decay_restarts",
    "exponential": "exponential_decay",
    "inverse_time": "inverse_time_decay",
    "piecewise_constant": "piecewise_constant_decay",
    "polynomial": "polynomial_decay",
    "onecycle": "one_cycle",
    "cyclical": "cyclical_learning_rate",
    "wsd": "warmup_stable_decay",
    "inverse_sqrt": "inverse_sqrt_decay",
    "step": "step_decay",
    "multi_step": "multi_step_decay",
}


def resolve_schedule(name):
    if not isinstance(name, str):
        raise ValueError(f"Schedule names must be strings. Received: {name!r}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SPECS:
        raise ValueError(
            f"Unknown schedule {name!r}. Choose from: {', '.join(sorted(SPECS))} "
            f"(aliases: {', '.join(sorted(ALIASES))})."
        )
    return SPECS[key]


def build_schedule(name, learning_rate, params, total_steps, warmup_fraction):
    """The learning rate (float or schedule) for ``total_steps`` steps of training."""
    spec = SPECS[name]
    warmup = int(round(total_steps * warmup_fraction)) if total_steps else 0
    if spec.own_warmup:
        return spec.build(learning_rate, params, total_steps, warmup)
    inner = spec.build(learning_rate, params, max(1, (total_steps or 1) - warmup), warmup)
    if warmup >= 1:
        return _t().LinearWarmup(inner, warmup)
    return inner
