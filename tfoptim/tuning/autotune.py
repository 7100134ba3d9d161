"""``autotune``: the optimizer, its learning rate and its schedule, within a budget of epochs.

Three steps, all on KerasTuner's machinery so that a search resumes after a kill and runs
under KerasTuner's distributed mode (chief and workers) unchanged:

1. A learning-rate range test per optimizer family (:func:`finder_ranges`; AdamW shares
   Adam's) centres each family's learning-rate range on the model and the data. Its sweeps
   count against the budget (their steps, in epochs of the training data), and with a budget
   in epochs take at most :data:`FINDER_SHARE` of it.
2. The first trials train each optimizer family at the rate its range test suggested, at a
   constant rate, for ``max_epochs``, and the first family also with cosine decay from
   :data:`DECAY_PEAK` times it (:func:`suggestion_values`): the choices the range tests alone
   would make, so the search never returns a configuration that validated worse than them.
3. Successive-halving brackets (Hyperband's, Li et al., 2018) are laid out to fit the rest of
   the budget (:func:`plan_brackets`): many configurations for a few epochs, the best third
   of them for three times as many, up to ``max_epochs``.
4. The last full-length runs (half of what the suggestions leave, :data:`REFINE_SHARE`)
   refine the brackets' best configuration: its learning rate times 1.3, 1 / 1.3, 1.3 ** 2,
   ... (:func:`refine_factor`), so that the best region gets more runs where one run's
   result is noisy.
5. :class:`BudgetHyperbandOracle` (KerasTuner's ``HyperbandOracle`` on that plan) hands out
   the trials; its state, with the plan, lives in ``directory/project_name``.

Deliberate difference from KerasTuner's ``Hyperband``: a promoted configuration trains again
from scratch for its rung's epochs rather than continuing from the previous rung's weights.
The learning-rate schedule is laid out over the run it is judged on, so every rung judges a
configuration exactly as it will be used, and the configuration returned is the one that
trained the best model; continuing would judge schedules restarted mid-run (and optimizer
moments reset) that no user would train with. It costs more epochs per bracket, which the
plan accounts for.
"""

import dataclasses
import json
import math
import numbers
import os
import shutil
import time

import keras_tuner
import numpy as np

from tfoptim._validation import check_bool, check_positive
from tfoptim.tuning import sampler, space
from tfoptim.tuning import schedules as schedule_space
from tfoptim.tuning.finder import FinderRanges, _call_build, compile_config, finder_ranges, range_tests

_STATE_FILE = "autotune.json"

#: The families ``autotune`` chooses from by default: Adam and AdamW, one range test between
#: them. SGD with momentum in the list too rarely wins a search, and its draws are draws the
#: Adam family does not get (``tfoptim bench search --methods autotune_with_momentum`` measures
#: the difference; docs/tuning.md has the figures); pass ``optimizers=`` to search others.
AUTOTUNE_OPTIMIZERS = ("adam", "adamw")

#: The most of ``budget_epochs`` the range tests may take. Where an epoch is a few dozen steps
#: a 60-step sweep per family is several epochs: three sweeps took 7 and 11 of 27 epochs on
#: the realistic workloads' sweep size, leaving the brackets too little.
FINDER_SHARE = 1 / 6
#: The fewest steps a sweep is cut to by :data:`FINDER_SHARE` (fewer resolve no suggestion).
MIN_FINDER_STEPS = 20


def finder_steps_within(finder_steps, tests, budget_epochs, steps_per_epoch):
    """Steps per range test: ``finder_steps``, cut so that ``tests`` sweeps take at most
    :data:`FINDER_SHARE` of ``budget_epochs`` (``None``: no cut), but not below
    :data:`MIN_FINDER_STEPS` (or ``finder_steps`` where that is fewer)."""
    if budget_epochs is None or tests == 0:
        return finder_steps
    cap = math.floor(FINDER_SHARE * budget_epochs * steps_per_epoch / tests + 1e-9)
    return max(min(finder_steps, cap), min(finder_steps, MIN_FINDER_STEPS))


#: The decaying suggestion's peak rate, as a multiple of the range test's suggestion. A rate
#: that decays to almost nothing can start well above the best constant one: in the search
#: benchmark's trials cosine decay did best at 2 to 4 times the suggestion, constant rates at
#: about the suggestion (docs/tuning.md, "What each default buys").
DECAY_PEAK = 4.0


def suggestion_values(ranges, optimizers, schedules, decay_peak=DECAY_PEAK):
    """The configurations the range tests alone point to, each a ``{hyperparameter: value}``.

    In this order: the first family of ``optimizers`` whose sweep suggested a rate, at that
    rate, constant where ``schedules`` offers a constant rate (a decay ends lower than the
    rate the sweep found); where ``schedules`` offers both a constant rate and cosine decay
    and ``decay_peak`` is not ``None``, the same family at ``decay_peak`` times its
    suggestion (within its range) decaying to a thousandth of it; then each other family with
    a suggestion at its suggestion, as the first. Empty when no sweep suggested a rate.
    """
    names = [schedule_space.resolve_schedule(s).name for s in schedules]
    choose = len(set(names)) > 1
    decay = decay_peak is not None and choose and "constant" in names and "cosine_decay" in names
    configurations = []
    for name in optimizers:
        rate = ranges.suggestions.get(name, math.nan)
        if not (math.isfinite(rate) and rate > 0):
            continue
        values = {"optimizer": name, f"{name}/learning_rate": rate}
        if choose and "constant" in names:
            values[sampler._SCHEDULE] = "constant"
        configurations.append(values)
        if decay and len(configurations) == 1:
            configurations.append({
                "optimizer": name, f"{name}/learning_rate": min(decay_peak * rate, ranges[name][1]),
                sampler._SCHEDULE: "cosine_decay",
                f"{sampler._SCHEDULE}/cosine_decay/alpha": schedule_space.FINAL.low,
            })
    return configurations


def plan_brackets(budget_epochs, max_epochs, factor=3, min_epochs=1):
    """Successive-halving brackets whose epochs add up to at most ``budget_epochs``.

    Hyperband's brackets for ``max_epochs``, ``factor`` and ``min_epochs`` (Li et al., 2018,
    Algorithm 1, with ``R = max_epochs / min_epochs`` and ``s_max`` the largest ``s`` with
    ``max_epochs / factor**s >= min_epochs``: bracket ``s`` starts
    ``ceil((s_max + 1) / (s + 1) * factor**s)`` configurations at ``max_epochs / factor**s``
    epochs, rounded up, and keeps the best ``1 / factor`` of them at each rung), taken in
    Hyperband's order (the most exploratory first) and over again,
    each bracket only if all of it fits in what is left. Once none fits, what is left goes
    to configurations trained for ``max_epochs`` outright, as many as fit. Every rung trains
    from scratch, so a bracket costs the sum over its rungs of configurations times epochs.

    Returns:
        A list of brackets, each a list of ``(configurations, epochs)`` rungs; empty when
        ``budget_epochs < max_epochs``.
    """
    shapes = hyperband_brackets(max_epochs, factor, min_epochs)
    plan, left = [], budget_epochs
    while True:
        added = False
        for shape in shapes:
            cost = sum(n * e for n, e in shape)
            if cost <= left:
                plan.append(shape)
                left -= cost
                added = True
        if not added:
            break
    if left >= max_epochs:
        plan.append([(int(left // max_epochs), max_epochs)])
    return plan


def hyperband_brackets(max_epochs, factor=3, min_epochs=1):
    """One iteration of Hyperband's brackets, the most exploratory first (see
    :func:`plan_brackets`)."""
    s_max = 0
    while max_epochs / factor ** (s_max + 1) >= min_epochs - 1e-9:
        s_max += 1
    shapes = []
    for s in range(s_max, -1, -1):
        first = math.ceil((s_max + 1) / (s + 1) * factor**s - 1e-9)
        shapes.append([
            (max(1, first // factor**i), max(1, math.ceil(max_epochs / factor ** (s - i) - 1e-9)))
            for i in range(s + 1)
        ])
    return shapes


#: The share of what the suggestions leave of ``budget_epochs`` that the refinement takes, in
#: whole full-length runs; the brackets take the rest. Half rather than a third: ahead where a
#: narrow optimum sits near the suggestion (``gpt``), behind or level elsewhere by less than
#: the seeds' spread (docs/tuning.md; ``tfoptim bench search --methods autotune_refine_third``).
REFINE_SHARE = 1 / 2

#: The refinement's step: its ``i``-th configuration is the best so far with its learning rate
#: times ``REFINE_STEP ** k``, ``k`` = 1, -1, 2, -2, ... (:func:`refine_factor`).
REFINE_STEP = 1.3


def _refine_share(refine):
    """``autotune``'s ``refine`` as a share of the budget: True is :data:`REFINE_SHARE`,
    False 0, a number in (0, 1) itself."""
    if isinstance(refine, (bool, np.bool_)):
        return REFINE_SHARE if refine else 0.0
    if isinstance(refine, numbers.Real) and 0 < refine < 1:
        return float(refine)
    raise ValueError(f"`refine` must be True, False or a share in (0, 1). Received: refine={refine!r}")


def refine_factor(i):
    """The ``i``-th refinement's multiplier of the best learning rate: :data:`REFINE_STEP` to
    the power 1, -1, 2, -2, ...: a grid around it, nearest first."""
    power = i // 2 + 1
    return REFINE_STEP ** (power if i % 2 == 0 else -power)


def refine_values(values, factor, space=None):
    """``values`` (a trial's hyperparameters, ``tuner/`` entries left out) with the chosen
    optimizer's learning rate times ``factor``, kept inside that hyperparameter's range where
    ``space`` (a list of KerasTuner hyperparameters) declares it."""
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    bounds = {hp.name: hp for hp in space or ()}
    suffix = f"{values.get('optimizer')}/learning_rate"
    for name in [k for k in values if k.endswith(suffix)]:
        rate = values[name] * factor
        hp = bounds.get(name)
        if hp is not None and getattr(hp, "min_value", None) is not None:
            rate = min(max(rate, hp.min_value), hp.max_value)
        values[name] = rate
    return values


#: Hyperband iterations laid out for a wall-clock budget, whose deadline ends the search first.
_SECONDS_ITERATIONS = 50


def plan_cost(plan):
    """Epochs a plan trains: configurations times epochs, over every rung of every bracket."""
    return sum(n * e for bracket in plan for n, e in bracket)


class BudgetHyperbandOracle(keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's ``HyperbandOracle`` on brackets laid out in advance (:func:`plan_brackets`).

    The plan is part of the oracle's saved state, so a resumed search follows the same plan.
    ``deadline`` (a ``time.monotonic()`` value) stops handing out trials once passed.

    Args:
        plan: brackets of ``(configurations, epochs)`` rungs, run in order.
        first_values: a list of ``{name: value}``, one for each of the search's first
            configurations, every other hyperparameter at its default (empty: every
            configuration is random).
        refine: the last bracket's configurations (it must be one rung of full-length runs)
            are the best full-length configuration of the brackets before it, with its
            learning rate times :func:`refine_factor` (:func:`refine_values`), instead of
            random ones.
        other arguments: as for ``keras_tuner.oracles.HyperbandOracle``.
    """

    def __init__(self, objective=None, plan=None, deadline=None, first_values=None, refine=False, seed=None,
                 **kwargs):
        plan = [[tuple(rung) for rung in bracket] for bracket in plan or ()]
        if not plan or not all(plan):
            raise ValueError(f"`plan` must hold brackets of (configurations, epochs). Received: {plan!r}")
        # Set before HyperbandOracle's constructor, which opens the first bracket.
        self._plan = plan
        self._deadline = deadline
        self._first_values = [dict(values) for values in first_values or ()]
        self._refine = bool(refine)
        if self._refine and len(plan[-1]) != 1:
            raise ValueError(f"With `refine`, the plan's last bracket must be one rung. Received: {plan[-1]!r}")
        max_epochs = max(e for bracket in plan for _, e in bracket)
        super().__init__(objective=objective, max_epochs=max_epochs, hyperband_iterations=1,
                         seed=seed, **kwargs)

    @property
    def plan(self):
        return [list(bracket) for bracket in self._plan]

    # HyperbandOracle counts brackets down to 0; bracket k is the plan's (len - 1 - k)-th.
    def _bracket(self, bracket_num):
        return self._plan[len(self._plan) - 1 - bracket_num]

    def _get_size(self, bracket_num, round_num):
        return self._bracket(bracket_num)[round_num][0]

    def _get_epochs(self, bracket_num, round_num):
        return self._bracket(bracket_num)[round_num][1]

    def _get_num_rounds(self, bracket_num):
        return len(self._bracket(bracket_num))

    def _get_num_brackets(self):
        return len(self._plan)

    def _random_values(self):
        # KerasTuner's create_trial populates a trial before adding it to `trials`: their count
        # is this configuration's index.
        if len(self.trials) >= len(self._first_values):
            return super()._random_values()
        first = self._first_values[len(self.trials)]
        # The space in declaration order, so a conditional hyperparameter is reached after
        # the choice it depends on has its value.
        values = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            values.merge([hp])
            if values.is_active(hp):
                values.values[hp.name] = first.get(hp.name, hp.default)
        return values.values

    def _random_trial(self, trial_id, bracket):
        # HyperbandOracle numbers brackets down: 0 is the plan's last.
        if not (self._refine and bracket["bracket_num"] == 0):
            return super()._random_trial(trial_id, bracket)
        epochs = self._get_epochs(0, 0)
        # The best full-length configuration before the refinement (never a refined one, so
        # that the refinement is a small grid around one configuration and repeats no rate).
        done = [t for t in self.trials.values() if t.status == "COMPLETED" and t.score is not None
                and t.hyperparameters.values.get("tuner/epochs") == epochs
                and t.hyperparameters.values.get("tuner/bracket") != 0]
        if not done:
            return super()._random_trial(trial_id, bracket)
        best = sorted(done, key=lambda t: t.score, reverse=self.objective.direction == "max")[0]
        values = refine_values(best.hyperparameters.values, refine_factor(len(bracket["rounds"][0])),
                               self.hyperparameters.space)
        values.update({"tuner/epochs": epochs, "tuner/initial_epoch": 0,
                       "tuner/bracket": self._current_bracket, "tuner/round": 0})
        bracket["rounds"][0].append({"past_id": None, "id": trial_id})
        return {"status": "RUNNING", "values": values}

    def populate_space(self, trial_id):
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}
        return super().populate_space(trial_id)

    def get_state(self):
        return {**super().get_state(), "plan": self.plan, "refine": self._refine}

    def set_state(self, state):
        super().set_state(state)
        self._plan = [[tuple(rung) for rung in bracket] for bracket in state["plan"]]
        self._refine = state.get("refine", False)


class _Tuner(keras_tuner.Tuner):
    """Trains each trial from scratch for its rung's epochs, and reports progress."""

    def __init__(self, *args, progress=None, budget=None, finder_epochs=0.0, deadline=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._progress = progress
        self._budget = budget
        self._finder_epochs = finder_epochs
        self._deadline = deadline

    def run_trial(self, trial, *args, **kwargs):
        kwargs["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        kwargs["initial_epoch"] = 0
        if self._deadline is not None:
            from tfoptim.callbacks import TimeStopping

            left = max(1e-3, self._deadline - time.monotonic())
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), TimeStopping(seconds=left)]
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self._progress:
            self._progress(self, trial)


def search_epochs(tuner):
    """Epochs the trials of a search have trained (or, if unfinished, are training); ``nan``
    on a distributed worker, whose oracle is the chief's."""
    trials = getattr(tuner.oracle, "trials", None)
    if trials is None:
        return math.nan
    return sum(t.hyperparameters.values.get("tuner/epochs", 0) for t in trials.values())


def _distributed_worker():
    """Whether this process is a worker of KerasTuner's distributed mode (not the chief)."""
    from keras_tuner.src.distribute import utils

    return utils.has_chief_oracle() and not utils.is_chief_oracle()


def _progress_line(budget, finder_epochs):
    def show(tuner, trial):
        values = trial.hyperparameters.values
        optimizer = values.get("optimizer", "?")
        rate = values.get(f"{optimizer}/learning_rate", math.nan)
        best = tuner.oracle.get_best_trials(1)
        best = best[0].score if best else math.nan
        score = trial.score if trial.score is not None else math.nan
        used = search_epochs(tuner) + finder_epochs
        of = f"/{budget:g}" if budget else ""
        used = f"  epochs used {used:.1f}{of}" if math.isfinite(used) else ""
        print(
            f"trial {trial.trial_id:>4}  {optimizer:<9} lr={rate:<9.3g} "
            f"{values.get('schedule', 'constant'):<13} {values.get('tuner/epochs', 0):>3} epochs  "
            f"{tuner.oracle.objective.name}={score:.4f}  best={best:.4f}{used}  "
            f"[{trial.status}]",
            flush=True,
        )

    return show


@dataclasses.dataclass
class AutotuneResult:
    """What :func:`autotune` found.

    Attributes:
        optimizer: a fresh optimizer with the best configuration, its schedule laid out over
            ``epochs`` epochs of ``steps_per_epoch`` steps: pass it to ``model.compile`` and
            train ``epochs`` epochs at ``batch_size``.
        epochs: the run length the best configuration was judged on.
        batch_size, steps_per_epoch: of that run.
        values: the best trial's hyperparameters.
        score: its objective.
        objective: the objective's name.
        epochs_used: epochs trained by the search and the finder's sweeps (in epochs of the
            training data), over the search's whole life, resumed runs included.
        finder_epochs: the sweeps' share of ``epochs_used``.
        ranges: the learning-rate ranges the finder centred (:class:`FinderRanges`).
        plan: the brackets, as :func:`plan_brackets` returns them.
        report: the :class:`tfoptim.tuning.Report` (table, plot, files); ``None`` on a
            worker of KerasTuner's distributed mode, where the chief writes it (and
            ``epochs_used`` is ``nan``).
        tuner: the KerasTuner tuner (``get_best_models``, ``oracle``).
    """

    optimizer: object
    epochs: int
    batch_size: int
    steps_per_epoch: int
    values: dict
    score: float
    objective: str
    epochs_used: float
    finder_epochs: float
    ranges: FinderRanges
    plan: list
    report: object
    tuner: object


def _is_int(value, low):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_dataset(x):
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset)


def _steps_per_epoch(x, batch_size, validation_split):
    import keras

    if _is_dataset(x):
        steps = int(x.cardinality())
        if steps < 1:
            raise ValueError(
                "`x` is a dataset of unknown or infinite length: autotune counts epochs, so "
                "give it a finite dataset (or arrays)."
            )
        return steps
    leaves = keras.tree.flatten(x)
    if not leaves or not all(hasattr(a, "shape") for a in leaves):
        raise ValueError(f"`x` must be arrays or a finite tf.data.Dataset. Received: {type(x).__name__}")
    examples = math.ceil(len(leaves[0]) * (1.0 - validation_split))
    return max(1, math.ceil(examples / batch_size))


def _objective(objective, names, has_validation):
    """The ``keras_tuner.Objective`` for ``objective``, checked against the metrics' names."""
    if isinstance(objective, keras_tuner.Objective):
        name = objective.name
    elif isinstance(objective, str):
        name = objective
    else:
        raise ValueError(f"`objective` must be a metric name or a keras_tuner.Objective. Received: {objective!r}")
    known = [*names, *(f"val_{n}" for n in names)]
    if name not in known:
        raise ValueError(f"Unknown objective {name!r}: the model logs {', '.join(known)}.")
    if name.startswith("val_") and not has_validation:
        raise ValueError(f"The objective {name!r} needs `validation_data` or `validation_split`.")
    if isinstance(objective, keras_tuner.Objective):
        return objective
    from keras_tuner.src.engine.objective import create_objective

    try:
        return create_objective(name)
    except ValueError:
        raise ValueError(
            f"Cannot tell whether {name!r} is to be minimized or maximized: pass "
            f'`objective=keras_tuner.Objective("{name}", direction="min" or "max")`.'
        ) from None


def _metric_names(build_model, loss, metrics, x, y, batch_size):
    """The names ``fit`` logs, from one evaluation of a freshly built model on one batch."""
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    model = _call_build(build_model, kt.HyperParameters())
    model_loss, model_metrics = compile_config(model, loss, metrics)
    model.compile(optimizer="sgd", loss=model_loss, metrics=model_metrics)
    if isinstance(x, tf.data.Dataset):
        logs = model.evaluate(x.take(1), verbose=0, return_dict=True)
    else:
        first = keras.tree.map_structure(lambda a: a[:batch_size], x)
        labels = None if y is None else keras.tree.map_structure(lambda a: a[:batch_size], y)
        logs = model.evaluate(first, labels, verbose=0, return_dict=True)
    return list(logs)


def autotune(
    build_model,
    x,
    y=None,
    validation_data=None,
    validation_split=0.0,
    budget_epochs=None,
    budget_seconds=None,
    max_epochs=None,
    objective="val_loss",
    optimizers=AUTOTUNE_OPTIMIZERS,
    schedules=sampler.DEFAULT_SCHEDULES,
    wrappers=None,
    batch_size=32,
    loss=None,
    metrics=None,
    factor=3,
    min_epochs=1,
    finder_steps=60,
    width=10.0,
    range_test=True,
    suggestion_first=True,
    decay_peak=DECAY_PEAK,
    refine=True,
    directory=None,
    project_name="autotune",
    overwrite=False,
    seed=None,
    callbacks=None,
    report_path=None,
    verbose=1,
):
    """Chooses the optimizer, its learning rate and its schedule within a budget.

    A learning-rate range test per optimizer family centres that family's range on the model
    and data (:func:`finder_ranges`); the first trials train each family at the rate its test
    suggested; then successive-halving brackets sized to the rest of the
    budget (:func:`plan_brackets`) search optimizers, rates and schedules on KerasTuner's
    oracle, every configuration trained from scratch for its rung's epochs so that its
    schedule spans the run it is judged on. The search lives in ``directory/project_name``:
    calling again with the same arguments resumes it (finished trials are not repeated, the
    finder is not rerun), and it runs under KerasTuner's distributed mode unchanged.

    ```python
    result = tfoptim.tuning.autotune(build_model, x, y, validation_data=(x_val, y_val),
                                     budget_epochs=90, max_epochs=10, directory="tuning")
    model = build_model()
    model.compile(optimizer=result.optimizer, loss=..., metrics=...)
    model.fit(x, y, batch_size=result.batch_size, epochs=result.epochs)
    ```

    Args:
        build_model: ``build_model()`` or ``build_model(hp)``, returning a fresh Keras model
            (compiled for its loss and metrics, or not, with ``loss=``); ``hp`` lets it tune
            its own hyperparameters too.
        x, y, validation_data, validation_split: as for ``model.fit`` (arrays or a finite
            ``tf.data`` dataset).
        budget_epochs: the most epochs the search may train, the finder's sweeps included
            (int >= 1). Exactly one of ``budget_epochs`` and ``budget_seconds``.
        budget_seconds: a wall-clock budget for this call instead, the finder's sweeps
            included: no trial starts after it, the one running is stopped at it (> 0; needs
            ``max_epochs``).
        max_epochs: the longest a configuration trains: the run length the result is for.
            Default: a ninth of ``budget_epochs`` (at least 1), so that about as many
            full-length runs as a 9-point grid's fit, plus the shorter ones.
        objective: a name ``fit`` logs (``"val_loss"``, ``"val_accuracy"``, ...) or a
            ``keras_tuner.Objective``.
        optimizers: names as in :func:`sample_optimizer` (default:
            :data:`AUTOTUNE_OPTIMIZERS`, Adam and AdamW).
        schedules: schedule names as in :func:`sample_optimizer`.
        wrappers: wrapper names as in :func:`sample_optimizer` (``["none", "sam"]``: the
            search decides whether SAM helps); the range tests run without them.
        batch_size: for arrays (not tuned).
        loss, metrics: for ``model.compile``; default: the compiled model's own.
        factor: successive halving keeps the best ``1 / factor`` at each rung (int >= 2).
        min_epochs: the shortest rung, the fewest epochs after which a configuration is judged
            (Hyperband's minimum resource; int, 1 to ``max_epochs``). Raise it where the first
            epochs say little about the end of a run; ``max_epochs`` trains every
            configuration for the whole run (no halving).
        finder_steps: steps per range test (int >= 3); with ``budget_epochs``, cut so that the
            tests take at most :data:`FINDER_SHARE` of it, to no fewer than
            :data:`MIN_FINDER_STEPS` (:func:`finder_steps_within`).
        width: each family's range is the finder's suggestion times ``1 / width`` to
            ``width`` (> 1).
        range_test: False skips the range tests and searches each family's fixed range
            (:data:`FAMILY_LEARNING_RATES`, else three decades around its default), the whole
            budget going to the brackets: what the range tests buy, measured
            (``tfoptim bench search --methods autotune_fixed_ranges``).
        suggestion_first: the first trials train each of ``optimizers`` at the rate its
            range test suggested, constant, for ``max_epochs``, and the first of them also
            with cosine decay from ``decay_peak`` times it where ``schedules`` offers both
            (:func:`suggestion_values`; as many as the budget holds, in that order), and the
            brackets share what is left: where a narrow optimum sits at the suggestion,
            random draws over the range may all miss it. False: every configuration is drawn
            at random (``tfoptim bench search --methods autotune_random_first``). Without
            range tests there is no suggestion, and no such trial.
        decay_peak: the decaying suggestion's first rate, as a multiple of the suggestion
            (> 0; default :data:`DECAY_PEAK`); ``None``: no decaying suggestion, the
            suggestions all constant (``tfoptim bench search --methods
            autotune_constant_suggestions``).
        refine: with ``budget_epochs``, a share of what the suggestions leave (True:
            :data:`REFINE_SHARE`, half; or a number in (0, 1)), in whole runs of
            ``max_epochs``, goes last to the brackets' best full-length configuration at its
            learning rate times 1.3, 1 / 1.3, 1.3 ** 2, ... (:func:`refine_factor`), the rest
            of it unchanged. False: random draws instead (``tfoptim bench search --methods
            autotune_no_refine``). A budget in seconds has no refinement.
        directory, project_name, overwrite, seed: as for KerasTuner's tuners
            (``directory=None``: the working directory).
        callbacks: passed to every trial's ``fit``.
        report_path: folder for the report's ``trials.png``, ``trials.json`` and
            ``best_optimizer.json``; default: ``directory/project_name``.
        verbose: 1 prints one line per finished trial and the report's table; 0 nothing.

    Returns:
        An :class:`AutotuneResult`.

    Raises:
        ValueError: bad budgets (both, neither, or too small for one trial of ``max_epochs``
            with the finder's sweeps), an unknown objective or one needing validation data
            that is not given, unknown optimizers or schedules, or a search in ``directory``
            laid out for other arguments (pass ``overwrite=True`` or another
            ``project_name``).
    """
    from tfoptim.tuning.hypermodel import OptimizerHyperModel
    from tfoptim.tuning.report import report as write_report

    started = time.monotonic()
    if not callable(build_model):
        raise ValueError(f"`build_model` must be callable. Received: {build_model!r}")
    if (budget_epochs is None) == (budget_seconds is None):
        raise ValueError("Pass exactly one of `budget_epochs` and `budget_seconds`.")
    if budget_epochs is not None and not _is_int(budget_epochs, 1):
        raise ValueError(f"`budget_epochs` must be an int >= 1. Received: budget_epochs={budget_epochs!r}")
    if budget_seconds is not None and (
        isinstance(budget_seconds, bool) or not isinstance(budget_seconds, (int, float))
        or not budget_seconds > 0
    ):
        raise ValueError(f"`budget_seconds` must be > 0. Received: budget_seconds={budget_seconds!r}")
    if max_epochs is None:
        if budget_epochs is None:
            raise ValueError("With `budget_seconds`, pass `max_epochs` (the run length to tune for).")
        max_epochs = max(1, budget_epochs // 9)
    if not _is_int(max_epochs, 1):
        raise ValueError(f"`max_epochs` must be an int >= 1. Received: max_epochs={max_epochs!r}")
    if not _is_int(factor, 2):
        raise ValueError(f"`factor` must be an int >= 2. Received: factor={factor!r}")
    if not (_is_int(min_epochs, 1) and min_epochs <= max_epochs):
        raise ValueError(f"`min_epochs` must be an int from 1 to max_epochs={max_epochs}. "
                         f"Received: min_epochs={min_epochs!r}")
    if not _is_int(batch_size, 1):
        raise ValueError(f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}")
    if not (isinstance(validation_split, (int, float)) and 0.0 <= validation_split < 1.0):
        raise ValueError(f"`validation_split` must be in [0, 1). Received: {validation_split!r}")
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    if not _is_int(finder_steps, 3):
        raise ValueError(f"`finder_steps` must be an int >= 3. Received: finder_steps={finder_steps!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 1:
        raise ValueError(f"`width` must be a number > 1. Received: width={width!r}")
    range_test = check_bool("range_test", range_test)
    suggestion_first = check_bool("suggestion_first", suggestion_first)
    refine_share = _refine_share(refine)
    if decay_peak is not None:
        decay_peak = check_positive("decay_peak", decay_peak)
    optimizers = [space.resolve(n).name for n in ((optimizers,) if isinstance(optimizers, str) else optimizers)]
    schedules = (schedules,) if isinstance(schedules, str) else tuple(schedules)
    # Validates the names (and the finder's arguments below) before any training.
    sampler.sample_optimizer(keras_tuner.HyperParameters(), optimizers=optimizers,
                             schedules=schedules, wrappers=wrappers, total_steps=1)
    wrappers = sampler._check_wrappers(wrappers)
    steps_per_epoch = _steps_per_epoch(x, batch_size, validation_split)
    tests = len(set(range_tests(optimizers).values())) if range_test else 0
    sweep_steps = finder_steps_within(finder_steps, tests, budget_epochs, steps_per_epoch)
    finder_bound = tests * sweep_steps / steps_per_epoch
    if budget_epochs is not None and budget_epochs < max_epochs + finder_bound:
        raise ValueError(
            f"`budget_epochs={budget_epochs}` is too small for one trial: a run of "
            f"max_epochs={max_epochs} and the finder's sweeps ({tests} x "
            f"{sweep_steps} steps, up to {finder_bound:.1f} epochs) need at least "
            f"{math.ceil(max_epochs + finder_bound)}. Raise it, or lower `max_epochs` or "
            "`finder_steps`."
        )
    has_validation = validation_data is not None or validation_split > 0
    objective = _objective(objective, _metric_names(build_model, loss, metrics, x, y, batch_size),
                           has_validation)

    directory = os.fspath(directory) if directory is not None else "."
    project = os.path.join(directory, project_name)
    if overwrite and os.path.exists(project):
        shutil.rmtree(project)
    os.makedirs(project, exist_ok=True)
    settings = {
        "optimizers": optimizers, "schedules": list(schedules), "max_epochs": max_epochs,
        "budget_epochs": budget_epochs, "factor": factor, "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch, "objective": objective.name,
        "finder_steps": finder_steps, "width": float(width),
        # Only where they differ from the defaults, so searches saved before they existed resume.
        **({"range_test": False} if not range_test else {}),
        **({"suggestion_first": False} if not suggestion_first else {}),
        # False as before shares existed; a share only where it is not the default.
        **({"refine": refine_share or False} if refine_share != REFINE_SHARE else {}),
        **({"decay_peak": decay_peak} if decay_peak != DECAY_PEAK else {}),
        **({"min_epochs": min_epochs} if min_epochs != 1 else {}),
        **({"wrappers": wrappers} if wrappers else {}),
    }
    state_file = os.path.join(project, _STATE_FILE)
    if os.path.exists(state_file):
        with open(state_file) as f:
            saved = json.load(f)
        changed = sorted(k for k in {*settings, *saved["settings"]} if saved["settings"].get(k) != settings.get(k))
        if changed:
            raise ValueError(
                f"{project} holds a search with other {', '.join(changed)}: pass the same "
                "arguments to resume it, `overwrite=True` to start afresh, or another "
                "`project_name`."
            )
        ranges = FinderRanges.from_dict(saved["ranges"])
    else:
        if range_test:
            ranges = finder_ranges(build_model, x, y, optimizers=optimizers, batch_size=batch_size,
                                   loss=loss, metrics=metrics, num_steps=sweep_steps, width=width,
                                   seed=seed)
        else:
            ranges = FinderRanges({n: space.resolve(n).learning_rate_range for n in optimizers},
                                  {n: math.nan for n in optimizers}, {n: 0 for n in optimizers}, width)
        # A worker's ranges only declare its copy of the space (the chief's oracle chooses the
        # values), so the chief's are the ones kept.
        if not _distributed_worker():
            with open(state_file, "w") as f:
                json.dump({"settings": settings, "ranges": ranges.to_dict()}, f, indent=1)
    finder_epochs = ranges.total_steps / steps_per_epoch
    if verbose:
        source = "from the range test" if range_test else "fixed (no range test)"
        print(f"Learning-rate ranges {source}: " + ", ".join(
            f"{n} [{lo:.2g}, {hi:.2g}]" for n, (lo, hi) in ranges.items()), flush=True)

    first_values = suggestion_values(ranges, optimizers, schedules, decay_peak) if suggestion_first else []
    if budget_epochs is not None:
        left = math.floor(budget_epochs - finder_epochs + 1e-9)
        # As many of the suggestions as fit (one always does: the budget was checked above).
        first_values = first_values[: left // max_epochs]
    first = [[(len(first_values), max_epochs)]] if first_values else []
    refined = 0
    if budget_epochs is not None:
        left -= plan_cost(first)
        # Whole full-length runs; the 1e-9 keeps a share that is a whole number of runs (9 epochs
        # times a float 1/3) from rounding down to one run fewer.
        refined = math.floor(left * refine_share / max_epochs + 1e-9)
        plan = (first + plan_brackets(left - refined * max_epochs, max_epochs, factor, min_epochs)
                + ([[(refined, max_epochs)]] if refined else []))
        deadline = None
    else:
        plan = first + hyperband_brackets(max_epochs, factor, min_epochs) * _SECONDS_ITERATIONS
        deadline = started + budget_seconds

    hypermodel = OptimizerHyperModel(
        lambda hp: _call_build(build_model, hp), optimizers=optimizers, learning_rate=dict(ranges),
        schedules=schedules, wrappers=wrappers, batch_sizes=None, loss=loss, metrics=metrics,
    )
    oracle = BudgetHyperbandOracle(objective=objective, plan=plan, deadline=deadline,
                                   first_values=first_values, refine=refined > 0, seed=seed)
    tuner = _Tuner(
        oracle=oracle, hypermodel=hypermodel, directory=directory, project_name=project_name,
        overwrite=False,
        progress=_progress_line(budget_epochs, finder_epochs) if verbose else None,
        budget=budget_epochs, finder_epochs=finder_epochs, deadline=deadline,
    )
    if verbose:
        done = sum(t.status == "COMPLETED" for t in getattr(tuner.oracle, "trials", {}).values())
        budget = f"{budget_epochs} epochs" if budget_epochs else f"{budget_seconds:g} s"
        first_note = ", ".join(
            f"{v['optimizer']} at {v[v['optimizer'] + '/learning_rate']:.3g}"
            + (" decaying" if v.get(sampler._SCHEDULE) == "cosine_decay" else "")
            for v in first_values)
        first_note = f" (first the suggested rates: {first_note})" if first_note else ""
        print(f"Successive halving within {budget}: {len(oracle.plan)} brackets{first_note}, "
              f"{plan_cost(oracle.plan)} epochs planned, runs of up to {max_epochs} epochs"
              + (f"; resuming, {done} trials done" if done else ""), flush=True)
    fit_kwargs = dict(verbose=0, callbacks=list(callbacks or []))
    if not _is_dataset(x):
        fit_kwargs["batch_size"] = batch_size
    if validation_data is not None:
        fit_kwargs["validation_data"] = validation_data
    if validation_split:
        fit_kwargs["validation_split"] = validation_split
    tuner.search(x, y, **fit_kwargs)

    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise RuntimeError(
            "The search finished no trial within its budget (the finder's sweeps took "
            f"{time.monotonic() - started:.0f} s): raise `budget_seconds`."
        )
    values = best[0].hyperparameters.values
    epochs = int(values["tuner/epochs"])
    total_steps = epochs * steps_per_epoch
    result_report = None
    if not _distributed_worker():
        result_report = write_report(tuner, path=report_path or project, total_steps=total_steps,
                                     print_table=bool(verbose))
    return AutotuneResult(
        optimizer=sampler.optimizer_from_values(values, total_steps=total_steps),
        epochs=epochs,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        values=dict(values),
        score=float(best[0].score),
        objective=objective.name,
        epochs_used=search_epochs(tuner) + finder_epochs,
        finder_epochs=finder_epochs,
        ranges=ranges,
        plan=oracle.plan,
        report=result_report,
        tuner=tuner,
    )
