"""``autotune``, its learning-rate ranges and its budgeted brackets, on a tiny problem."""

import importlib
import json
import math

import keras
import keras_tuner as kt
import numpy as np
import pytest

import tfoptim.cli
import tfoptim.optimizers
from tfoptim.tuning import autotune, finder_ranges, plan_brackets, sample_optimizer, space
from tfoptim.tuning.autotune import (BudgetHyperbandOracle, hyperband_brackets, plan_cost, refine_factor,
                                     refine_values, suggestion_values)
from tfoptim.tuning.finder import FinderRanges, centred_range

# The module, which the function of the same name hides as an attribute of tfoptim.tuning.
autotune_module = importlib.import_module("tfoptim.tuning.autotune")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
# 200 examples at batch size 50: 4 steps per epoch.
STEPS_PER_EPOCH = 4
FINDER_STEPS = 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)).astype("float32")
    labels = rng.integers(0, 3, size=260).astype("int32")
    x = centres[labels] + 0.5 * rng.normal(size=(260, 8)).astype("float32")
    return x[:200], labels[:200], x[200:], labels[200:]


def build():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(loss=LOSS, metrics=["accuracy"])
    return model


def EpochCounter(epochs):
    """A callback appending to ``epochs`` at the end of every epoch of every trial (KerasTuner
    deep-copies callbacks per trial; the list, held by the closure, is shared)."""

    class Counter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)

    return Counter()


def run(data, directory, budget=9, callbacks=(), **kwargs):
    x, y, x_val, y_val = data
    keras.utils.set_random_seed(0)
    kwargs = {"optimizers": ("adam",), "max_epochs": 3, "finder_steps": FINDER_STEPS,
              "batch_size": 50, "seed": 0, "verbose": 0, **kwargs}
    return autotune(build, x, y, validation_data=(x_val, y_val), budget_epochs=budget,
                    directory=directory, callbacks=list(callbacks), **kwargs)


def test_hyperband_brackets_are_the_papers():
    # Li et al. (2018), Table 1: max_epochs 81, factor 3, (configurations, epochs) per rung.
    assert hyperband_brackets(81, 3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]


def test_hyperband_brackets_with_a_minimum_rung():
    # R = max_epochs / min_epochs = 9: Hyperband's s_max = 2, every rung at least 9 epochs.
    assert hyperband_brackets(81, 3, min_epochs=9) == [[(9, 9), (3, 27), (1, 81)], [(5, 27), (1, 81)], [(3, 81)]]
    # min_epochs = max_epochs: no halving, every configuration trains the whole run.
    assert plan_brackets(22, 3, 3, min_epochs=3) == [[(1, 3)]] * 7


@pytest.mark.parametrize("max_epochs, factor, min_epochs",
                         [(1, 3, 1), (3, 3, 1), (10, 3, 1), (27, 3, 1), (8, 2, 1), (27, 3, 3), (10, 3, 10)])
def test_plans_fit_the_budget(max_epochs, factor, min_epochs):
    assert plan_brackets(max_epochs - 1, max_epochs, factor, min_epochs) == []
    for budget in range(max_epochs, 12 * max_epochs, max(1, max_epochs // 3)):
        plan = plan_brackets(budget, max_epochs, factor, min_epochs)
        cost = plan_cost(plan)
        # Within the budget, and leaving less than one full-length run unspent.
        assert budget - max_epochs < cost <= budget, (budget, plan)
        for bracket in plan:
            configurations = [n for n, _ in bracket]
            epochs = [e for _, e in bracket]
            assert configurations == sorted(configurations, reverse=True)
            assert epochs == sorted(epochs) and epochs[-1] == max_epochs and epochs[0] >= min_epochs


@pytest.fixture(scope="module")
def first_search(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("autotune")
    epochs = []
    result = run(data, directory, callbacks=[EpochCounter(epochs)])
    return directory, result, epochs


def test_finishes_within_its_budget(first_search):
    directory, result, epochs = first_search
    # Budget 9 epochs; the range test's 8 steps are 2 epochs and suggest no rate here: 7 left,
    # half of it in whole runs for the refinement (one run of 3), the brackets in the other 4
    # (one configuration for 3); the last epoch fits nothing.
    assert result.finder_epochs == pytest.approx(result.ranges.total_steps / STEPS_PER_EPOCH)
    assert result.ranges.total_steps <= FINDER_STEPS
    assert all(math.isnan(s) for s in result.ranges.suggestions.values())
    assert result.plan == [[(1, 3)], [(1, 3)]]
    assert len(epochs) == 6
    assert result.epochs_used == pytest.approx(len(epochs) + result.finder_epochs)
    assert result.epochs_used <= 9
    assert len(result.tuner.oracle.trials) == 2
    # The best configuration is a fresh optimizer with its schedule over the run it won.
    assert isinstance(result.optimizer, tfoptim.optimizers.Adam)
    assert result.values["optimizer"] == "adam" and result.epochs in (1, 3)
    if result.values.get("schedule", "constant") != "constant":
        assert result.optimizer._learning_rate.decay_steps == result.epochs * STEPS_PER_EPOCH
    low, high = result.ranges["adam"]
    assert low <= result.values["adam/learning_rate"] <= high
    with open(result.report.files["best"]) as f:
        restored = keras.optimizers.deserialize(json.load(f))
    assert {**restored.get_config(), "name": None} == {**result.optimizer.get_config(), "name": None}


def test_resumes_without_repeating_finished_trials(data, first_search, monkeypatch):
    directory, first, _ = first_search
    sweeps = []
    monkeypatch.setattr(autotune_module, "finder_ranges",
                        lambda *a, **k: sweeps.append(1) or finder_ranges(*a, **k))
    epochs = []
    again = run(data, directory, callbacks=[EpochCounter(epochs)])
    assert epochs == [] and sweeps == []  # nothing trained again, the ranges read back
    assert again.values == first.values and again.epochs_used == pytest.approx(first.epochs_used)
    with pytest.raises(ValueError, match="other budget_epochs"):
        run(data, directory, budget=12)


@pytest.mark.slow
def test_without_range_tests_the_fixed_ranges_are_searched(data, tmp_path, monkeypatch):
    monkeypatch.setattr(autotune_module, "finder_ranges", lambda *a, **k: pytest.fail("a range test ran"))
    epochs = []
    result = run(data, tmp_path, callbacks=[EpochCounter(epochs)], range_test=False, budget=3, max_epochs=1)
    assert result.finder_epochs == 0 and result.ranges == {"adam": space.resolve("adam").learning_rate_range}
    # The whole budget goes to trials: 3 runs of 1 epoch (two drawn, one refining the best).
    assert len(epochs) == 3 and result.epochs_used == 3
    low, high = space.resolve("adam").learning_rate_range
    assert all(low <= t.hyperparameters.values["adam/learning_rate"] <= high
               for t in result.tuner.oracle.trials.values())


@pytest.mark.slow
def test_searches_wrappers_and_returns_the_wrapped_optimizer(data, tmp_path):
    epochs = []
    result = run(data, tmp_path, callbacks=[EpochCounter(epochs)], wrappers=("none", "sam"),
                 schedules=("cosine_decay",))
    assert result.epochs_used <= 9 and len(epochs) == 6
    assert {t.hyperparameters.values["wrapper"] for t in result.tuner.oracle.trials.values()} <= {"none", "sam"}
    optimizer = result.optimizer
    if result.values["wrapper"] == "sam":
        assert isinstance(optimizer, tfoptim.optimizers.SAM)
        assert optimizer.rho == pytest.approx(result.values["wrapper/sam/rho"])
        # The inner optimizer's schedule spans its descents: half the run's steps.
        schedule = optimizer.inner_optimizer._learning_rate
        assert schedule.decay_steps == math.ceil(result.epochs * STEPS_PER_EPOCH / 2)
    else:
        assert isinstance(optimizer, tfoptim.optimizers.Adam)
    with pytest.raises(ValueError, match="other wrappers"):
        run(data, tmp_path, wrappers=("none", "lookahead"), schedules=("cosine_decay",))


@pytest.mark.slow
def test_resumes_an_interrupted_search(data, tmp_path):
    started = []

    class Interrupt(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # The third trial: the two before it have finished.
            if len(started) == 2:
                raise KeyboardInterrupt
            started.append(1)

    # Without the refinement the budget is one bracket, 3 configurations for 1 epoch and the
    # best for 3: a search interrupted between rungs.
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path, callbacks=[Interrupt()], refine=False)
    epochs = []
    result = run(data, tmp_path, callbacks=[EpochCounter(epochs)], refine=False)
    # Left: the interrupted 1-epoch trial and the 3-epoch one; the two finished stay finished.
    assert len(epochs) == 4
    assert len(result.tuner.oracle.trials) == 4
    assert all(t.status == "COMPLETED" for t in result.tuner.oracle.trials.values())


def test_finder_range_contains_its_suggestion(data):
    x, y, _, _ = data
    ranges = finder_ranges(build, x, y, optimizers=("adamw", "adam", "momentum"), batch_size=50,
                           num_steps=FINDER_STEPS, seed=0)
    assert list(ranges) == ["adamw", "adam", "momentum"]
    # AdamW's rates are Adam's: one sweep serves both, and its steps are counted once.
    assert ranges["adamw"] == ranges["adam"]
    assert ranges.suggestions["adamw"] == ranges.suggestions["adam"] or not math.isfinite(ranges.suggestions["adam"])
    assert ranges.steps["adamw"] == 0 and 3 <= ranges.steps["adam"] <= FINDER_STEPS
    for name, (low, high) in ranges.items():
        suggestion = ranges.suggestions[name]
        family_low, family_high = space.resolve(name).learning_rate_range
        if math.isfinite(suggestion):
            assert low <= suggestion <= high
            assert family_low / 10 <= low < high <= family_high * 10
        else:
            assert (low, high) == (family_low, family_high)
    # The ranges are what sample_optimizer takes.
    hp = kt.HyperParameters()
    sample_optimizer(hp, optimizers=("adam", "momentum"), learning_rate=dict(ranges))
    rate = next(p for p in hp.space if p.name == "adam/learning_rate")
    assert (rate.min_value, rate.max_value) == pytest.approx(ranges["adam"])


def test_suggestion_values():
    ranges = FinderRanges({"adam": (1e-5, 1e-2), "momentum": (0.01, 1.0), "adamw": (2e-4, 5e-3)},
                          {"adam": math.nan, "momentum": 0.1, "adamw": 2e-3}, {"adam": 8, "momentum": 8, "adamw": 0},
                          10.0)
    # The first family whose sweep suggested a rate (Adam's did not) at a constant rate, then
    # decaying from four times it (8e-3, capped at its range's top) to a thousandth of that,
    # then each other family at a constant rate, in the order given.
    assert suggestion_values(ranges, ["adam", "adamw", "momentum"], ("cosine", "constant")) == [
        {"optimizer": "adamw", "adamw/learning_rate": 2e-3, "schedule": "constant"},
        {"optimizer": "adamw", "adamw/learning_rate": 5e-3, "schedule": "cosine_decay",
         "schedule/cosine_decay/alpha": 1e-3},
        {"optimizer": "momentum", "momentum/learning_rate": 0.1, "schedule": "constant"}]
    assert suggestion_values(ranges, ["momentum"], ("constant", "cosine_decay"))[1][
        "momentum/learning_rate"] == pytest.approx(0.4)
    # No cosine decay to choose: the constant rates only; one schedule: no schedule to choose.
    assert suggestion_values(ranges, ["adamw", "momentum"], ("constant", "linear")) == [
        {"optimizer": "adamw", "adamw/learning_rate": 2e-3, "schedule": "constant"},
        {"optimizer": "momentum", "momentum/learning_rate": 0.1, "schedule": "constant"}]
    assert suggestion_values(ranges, ["momentum"], ("cosine_decay",)) == [
        {"optimizer": "momentum", "momentum/learning_rate": 0.1}]
    # No suggestion at all: no such configuration.
    assert suggestion_values(ranges, ["adam"], ("constant", "cosine_decay")) == []


@pytest.mark.variants("True")  # without the suggestions: the ablation, in the second tier
@pytest.mark.parametrize("suggestion_first", [True, False])
def test_first_trial_trains_the_suggested_rate(data, tmp_path, monkeypatch, suggestion_first):
    x, y, x_val, y_val = data
    suggested = FinderRanges({"adam": (3e-4, 3e-2)}, {"adam": 3e-3}, {"adam": FINDER_STEPS}, 10.0)
    monkeypatch.setattr(autotune_module, "finder_ranges", lambda *a, **k: suggested)

    def build_model(hp):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 16, default=8)),
                                  keras.layers.Dense(3)])
        model.compile(loss=LOSS)
        return model

    epochs = []
    keras.utils.set_random_seed(0)
    result = autotune(build_model, x, y, validation_data=(x_val, y_val), budget_epochs=12, max_epochs=3,
                      optimizers=("adam",), batch_size=50, seed=0, verbose=0, directory=tmp_path,
                      callbacks=[EpochCounter(epochs)], suggestion_first=suggestion_first)
    trials = sorted(result.tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    first = trials[0].hyperparameters.values
    # 12 epochs less the range test's 2: the suggested rate trained for the whole run, constant
    # and decaying from four times it, then a full-length run with what is left; drawn at
    # random, a bracket and a full-length run fit.
    if suggestion_first:
        assert result.plan == [[(2, 3)], [(1, 3)]]
        assert first["adam/learning_rate"] == 3e-3 and first["schedule"] == "constant"
        assert first["units"] == 8 and first["tuner/epochs"] == 3  # the rest at its defaults
        second = trials[1].hyperparameters.values
        assert second["adam/learning_rate"] == pytest.approx(1.2e-2) and second["schedule"] == "cosine_decay"
        assert second["tuner/epochs"] == 3
        assert len(trials) == 3
    else:
        assert result.plan == [[(3, 1), (1, 3)], [(1, 3)]]
        assert first["adam/learning_rate"] != 3e-3 and first["tuner/epochs"] == 1
        assert len(trials) == 5
    assert len(epochs) == plan_cost(result.plan) == 9 and result.epochs_used == 11
    assert all(t.status == "COMPLETED" for t in trials)


@pytest.mark.variants("15-3")  # all three; budgets that cut them short in the second tier
@pytest.mark.parametrize("budget, expected", [(15, 3), (12, 2), (9, 1)])
def test_first_trials_train_each_familys_suggestion_as_the_budget_allows(data, tmp_path, monkeypatch,
                                                                         budget, expected):
    x, y, x_val, y_val = data
    suggested = FinderRanges({"adam": (3e-4, 3e-2), "momentum": (5e-3, 0.5)}, {"adam": 3e-3, "momentum": 0.05},
                             {"adam": FINDER_STEPS, "momentum": FINDER_STEPS}, 10.0)
    monkeypatch.setattr(autotune_module, "finder_ranges", lambda *a, **k: suggested)
    epochs = []
    keras.utils.set_random_seed(0)
    result = autotune(build, x, y, validation_data=(x_val, y_val), budget_epochs=budget, max_epochs=3,
                      optimizers=("momentum", "adam"), finder_steps=FINDER_STEPS, batch_size=50, seed=0,
                      verbose=0, directory=tmp_path, callbacks=[EpochCounter(epochs)])
    # The sweeps took 4 epochs; each suggestion a run of 3, the first family's constant and
    # decaying, then the next family's, as many as the rest holds (15: all three; 12: two;
    # 9: one, and nothing else fits).
    assert result.plan == [[(expected, 3)]]
    trials = sorted(result.tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    values = [t.hyperparameters.values for t in trials]
    assert [(v["optimizer"], v["schedule"], v["tuner/epochs"]) for v in values] == [
        ("momentum", "constant", 3), ("momentum", "cosine_decay", 3), ("adam", "constant", 3)][:expected]
    assert [v[f"{v['optimizer']}/learning_rate"] for v in values] == pytest.approx([0.05, 0.2, 3e-3][:expected])
    assert len(epochs) == 3 * expected and result.epochs_used == 4 + 3 * expected


def test_refinement_is_a_grid_around_the_best_rate_nearest_first():
    assert [refine_factor(i) for i in range(4)] == pytest.approx([1.3, 1 / 1.3, 1.3**2, 1.3**-2])
    hp = kt.HyperParameters()
    hp.Float("adam/learning_rate", 1e-4, 1e-2, sampling="log")
    values = {"optimizer": "adam", "adam/learning_rate": 2e-3, "momentum/learning_rate": 0.1,
              "schedule": "constant", "tuner/epochs": 3, "tuner/trial_id": "0001"}
    # Only the chosen optimizer's rate moves; KerasTuner's bookkeeping is left out.
    assert refine_values(values, 2.0, hp.space) == {"optimizer": "adam", "adam/learning_rate": 4e-3,
                                                    "momentum/learning_rate": 0.1, "schedule": "constant"}
    # Kept inside the rate's range, where the space is given.
    assert refine_values(values, 10.0, hp.space)["adam/learning_rate"] == 1e-2
    assert refine_values(values, 10.0)["adam/learning_rate"] == pytest.approx(2e-2)
    with pytest.raises(ValueError, match="last bracket must be one rung"):
        BudgetHyperbandOracle(objective="val_loss", plan=[[(1, 3)], [(3, 1), (1, 3)]], refine=True)


def test_the_last_runs_refine_the_best_rate_of_the_brackets(data, tmp_path, monkeypatch):
    x, y, x_val, y_val = data
    suggested = FinderRanges({"adam": (3e-4, 3e-2)}, {"adam": 3e-3}, {"adam": FINDER_STEPS}, 10.0)
    monkeypatch.setattr(autotune_module, "finder_ranges", lambda *a, **k: suggested)
    epochs = []
    keras.utils.set_random_seed(0)
    result = autotune(build, x, y, validation_data=(x_val, y_val), budget_epochs=24, max_epochs=3,
                      optimizers=("adam",), finder_steps=FINDER_STEPS, batch_size=50, seed=0, verbose=0,
                      directory=tmp_path, callbacks=[EpochCounter(epochs)], decay_peak=None)
    # 24 epochs less the range test's 2: the suggestion's run (3; constant only, decay_peak=None),
    # then half of the 19 left in whole runs for the refinement (3 runs), the brackets in the
    # other 10.
    assert result.plan == [[(1, 3)], [(3, 1), (1, 3)], [(1, 3)], [(3, 3)]]
    assert plan_brackets(19, 3) == [[(3, 1), (1, 3)], [(2, 3)], [(3, 1), (1, 3)]]  # refine=False
    assert len(epochs) == plan_cost(result.plan) == 21
    trials = sorted(result.tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    before, refined = trials[:-3], trials[-3:]
    best = min((t for t in before if t.hyperparameters.values["tuner/epochs"] == 3), key=lambda t: t.score)
    best_values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    # The best's rate x 1.3, then / 1.3, then x 1.3 ** 2, inside the range [3e-4, 3e-2]; the
    # rest unchanged.
    for factor, trial in zip((1.3, 1 / 1.3, 1.3**2), refined):
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        rate = min(max(best_values["adam/learning_rate"] * factor, 3e-4), 3e-2)
        assert values == pytest.approx({**best_values, "adam/learning_rate": rate})
        assert trial.hyperparameters.values["tuner/epochs"] == 3


class _PlanLaidOut(Exception):
    pass


@pytest.mark.parametrize("refine, refinement, brackets", [
    (True, [[(3, 3)]], [[(3, 1), (1, 3)], [(1, 3)]]),  # half of 19 epochs: 3 runs, 10 left
    (1 / 3, [[(2, 3)]], [[(3, 1), (1, 3)], [(2, 3)]]),  # a third: 2 runs, 13 left
    (False, [], plan_brackets(19, 3)),
])
def test_the_refinement_takes_its_share_of_what_the_suggestions_leave(data, tmp_path, monkeypatch, refine,
                                                                       refinement, brackets):
    x, y, x_val, y_val = data
    suggested = FinderRanges({"adam": (3e-4, 3e-2)}, {"adam": 3e-3}, {"adam": FINDER_STEPS}, 10.0)
    monkeypatch.setattr(autotune_module, "finder_ranges", lambda *a, **k: suggested)
    seen = {}

    def oracle(**kwargs):
        seen.update(kwargs)
        raise _PlanLaidOut

    monkeypatch.setattr(autotune_module, "BudgetHyperbandOracle", oracle)
    with pytest.raises(_PlanLaidOut):
        autotune(build, x, y, validation_data=(x_val, y_val), budget_epochs=24, max_epochs=3,
                 optimizers=("adam",), finder_steps=FINDER_STEPS, batch_size=50, seed=0, verbose=0,
                 directory=tmp_path, decay_peak=None, refine=refine)
    # 24 epochs less the range test's 2 and the suggestion's run (3): 19 left.
    assert seen["plan"] == [[(1, 3)], *brackets, *refinement]
    assert seen["refine"] is bool(refinement)


@pytest.mark.parametrize(
    "finder_steps, tests, budget, steps_per_epoch, expected",
    [
        (60, 3, 90, 34, 60),  # a sixth of the budget is 170 steps a test: no cut
        (60, 2, 27, 17, 38),  # a sixth of 459 steps, over two tests
        (60, 3, 9, 4, 20),  # the cut would leave 2 steps: kept at MIN_FINDER_STEPS
        (8, 3, 9, 4, 8),  # never more than asked
        (60, 3, None, 4, 60),  # a budget in seconds: no cut
    ],
)
def test_range_tests_take_at_most_their_share_of_the_budget(finder_steps, tests, budget, steps_per_epoch,
                                                             expected):
    steps = autotune_module.finder_steps_within(finder_steps, tests, budget, steps_per_epoch)
    assert steps == expected
    if expected < finder_steps and expected > autotune_module.MIN_FINDER_STEPS:
        assert tests * steps <= autotune_module.FINDER_SHARE * budget * steps_per_epoch < tests * (steps + 1)


def test_centred_range():
    assert centred_range(1e-2, 10.0, (1e-6, 1.0), (1e-5, 1e-2)) == pytest.approx((1e-3, 1e-1))
    # Clipped to the sweep, so the range never leaves what was measured.
    assert centred_range(0.5, 10.0, (1e-6, 1.0), (1e-5, 1e-2)) == pytest.approx((0.05, 1.0))
    # No suggestion (the loss never went down): the family's fixed range.
    assert centred_range(math.nan, 10.0, (1e-6, 1.0), (1e-5, 1e-2)) == (1e-5, 1e-2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budget": None}, "exactly one of `budget_epochs` and `budget_seconds`"),
        ({"budget_seconds": 10.0}, "exactly one"),
        ({"budget": 0}, "budget_epochs` must be an int >= 1"),
        ({"budget": 4}, "too small for one trial"),
        ({"budget": None, "budget_seconds": 5.0, "max_epochs": None}, "pass `max_epochs`"),
        ({"budget": None, "budget_seconds": -1.0}, "budget_seconds` must be > 0"),
        ({"objective": "val_acc"}, "Unknown objective 'val_acc'"),
        ({"validation_data": None}, "needs `validation_data`"),
        ({"factor": 1}, "factor"),
        ({"min_epochs": 0}, "min_epochs"),
        ({"min_epochs": 4}, "min_epochs"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"finder_steps": 2}, "finder_steps"),
        ({"width": 1.0}, "width"),
        ({"optimizers": ("adam", "nosuch")}, "Unknown optimizer"),
        ({"schedules": ("nosuch",)}, "Unknown schedule"),
        ({"wrappers": ("nosuch",)}, "Unknown wrapper"),
        ({"range_test": "no"}, "range_test"),
        ({"suggestion_first": 1}, "suggestion_first"),
        ({"refine": "yes"}, "refine"),
        ({"refine": 1}, r"`refine` must be True, False or a share in \(0, 1\)"),
        ({"refine": 0.0}, "refine"),
        ({"refine": float("nan")}, "refine"),
        ({"decay_peak": 0}, "decay_peak"),
        ({"decay_peak": "4"}, "decay_peak"),
        ({"decay_peak": float("inf")}, "decay_peak"),
    ],
)
def test_bad_input_is_refused_before_training(data, tmp_path, kwargs, message):
    x, y, x_val, y_val = data
    epochs = []
    kwargs = dict(kwargs)
    budget = kwargs.pop("budget", 9)
    validation = kwargs.pop("validation_data", (x_val, y_val))
    arguments = dict(optimizers=("adam",), max_epochs=3, finder_steps=FINDER_STEPS, batch_size=50,
                     verbose=0)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        autotune(build, x, y, validation_data=validation, budget_epochs=budget,
                 directory=tmp_path, callbacks=[EpochCounter(epochs)], **arguments)
    assert epochs == []


def test_build_model_without_a_loss_is_refused(data, tmp_path):
    x, y, x_val, y_val = data

    def uncompiled():
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])

    with pytest.raises(ValueError, match="loss"):
        autotune(uncompiled, x, y, validation_data=(x_val, y_val), budget_epochs=9, max_epochs=3,
                 optimizers=("adam",), finder_steps=FINDER_STEPS, batch_size=50,
                 directory=tmp_path, verbose=0)


@pytest.mark.slow
def test_seconds_budget(data, tmp_path):
    result = run(data, tmp_path, budget=None, budget_seconds=60.0, max_epochs=3)
    assert result.tuner.oracle.trials and result.score > 0


@pytest.mark.slow
def test_autotune_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tfoptim.cli, "COMMANDS", {"autotune": tfoptim.cli.COMMANDS["autotune"]})
    argv = ["autotune", "--budget-epochs", "12", "--max-epochs", "2", "--optimizers", "adam",
            "--output", str(tmp_path)]
    assert tfoptim.cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Best: adam" in out and "test accuracy" in out
    assert (tmp_path / "search" / "trials.png").exists()
    assert tfoptim.cli.main(argv) == 0
    assert "resuming" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    ([], {}),
    (["--no-refine"], {"refine": False}),
    (["--refine-share", "0.25"], {"refine": 0.25}),
    (["--decay-peak", "2.5"], {"decay_peak": 2.5}),
    (["--decay-peak", "none"], {"decay_peak": None}),
])
def test_autotune_command_passes_its_switches(tmp_path, monkeypatch, autotune_arguments, argv, expected):
    monkeypatch.setattr(tfoptim.cli, "COMMANDS", {"autotune": tfoptim.cli.COMMANDS["autotune"]})
    with pytest.raises(SystemExit, match="stop before training"):
        tfoptim.cli.main(["autotune", *argv, "--output", str(tmp_path)])
    assert {k: autotune_arguments[k] for k in ("refine", "decay_peak") if k in autotune_arguments} == expected
