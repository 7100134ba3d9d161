"""``tfoptim bench convergence``: the rules it reports by, and a smoke run of the command."""

import json
import math

import numpy as np
import pytest

from tfoptim import cli
from tfoptim.benchmarks import convergence, problems


def _record(factor, finals, steps, statuses=None, goal="min"):
    problem = problems.Problem("p", "", "loss", goal, 1.0, 100, 10, 10, False, None)
    runs = [
        convergence.Run("opt", "p", factor, 0.1 * factor, seed, status or ("reached" if s is not None else "not reached"),
                        s, f, 1.0, None, [])
        for seed, (f, s, status) in enumerate(zip(finals, steps, statuses or [None] * len(finals)))
    ]
    (record,) = convergence.summarize(runs, problem)
    return record, problem


def test_a_run_that_diverges_after_reaching_the_target_has_failed():
    problem = problems.PROBLEMS["linear-regression"]
    curve = np.array([5.0, 1.0, 1.0, np.nan, np.nan])
    run = convergence._judge("opt", problem, 1.0, 0.1, 0, curve, seconds=1.0)
    assert (run.status, run.steps_to_target, run.final) == ("diverged", None, None)
    run = convergence._judge("opt", problem, 1.0, 0.1, 0, np.array([5.0, 2.0, 1.0, 1.0]), seconds=3.0)
    assert (run.status, run.steps_to_target, run.final) == ("reached", 2 * problem.every, 1.0)
    assert run.seconds_to_target == pytest.approx(2.0)  # 2 of the 3 recorded intervals


def test_medians_count_failures_as_the_worst():
    # Two of three seeds diverge: the setting diverged, whatever the third did.
    record, _ = _record(1.0, [0.5, None, None], [10, None, None], [None, "diverged", "diverged"])
    assert (record["status"], record["final"], record["steps_to_target"]) == ("diverged", None, None)
    # One seed misses the target: the median still reaches it.
    record, _ = _record(1.0, [0.5, 0.7, 2.0], [10, 30, None])
    assert (record["status"], record["steps_to_target"], record["final"]) == ("reached", 30, 0.7)
    assert record["final_range"] == [0.5, 2.0]
    # For accuracy, a diverged seed is the lowest value.
    record, _ = _record(1.0, [0.9, 0.95, None], [None, 10, None], [None, None, "diverged"], goal="max")
    assert (record["final"], record["steps_to_target"]) == (0.9, None)


def test_tuned_point_is_the_best_median_final_metric_then_fewer_steps_then_closer_to_default():
    problem = problems.Problem("p", "", "loss", "min", 1.0, 100, 10, 10, False, None)
    records = [
        _record(0.1, [0.2, 0.2], [50, 50])[0],
        _record(1.0, [0.3, 0.3], [20, 20])[0],
        _record(10.0, [0.2, 0.2], [30, 30])[0],
        _record(100.0, [None, None], [None, None], ["diverged"] * 2)[0],
    ]
    default, tuned = convergence.pick(records, problem)
    assert (default["factor"], tuned["factor"]) == (1.0, 10.0)
    records[0]["steps_to_target"] = 30
    assert convergence.pick(records, problem)[1]["factor"] == 0.1  # equal steps: |log 0.1| < |log 10|


def test_performance_profile():
    table = {"a": {"p": 100, "q": None, "r": 10}, "b": {"p": 150, "q": 40, "r": 50}, "c": {"p": None, "q": None, "r": None}}
    rho = convergence.profile(table, ["p", "q", "r", "s"], [1.0, 2.0, 5.0, 100.0])
    # "s": nobody reaches it, it still counts in the denominator.
    assert rho == {"a": [0.5, 0.5, 0.5, 0.5], "b": [0.25, 0.5, 0.75, 0.75], "c": [0.0, 0.0, 0.0, 0.0]}


def test_candidates_are_every_standalone_optimizer_of_tfoptim_and_keras():
    import keras

    import tfoptim.optimizers as to

    found = convergence.candidates()
    for module, prefix in ((to, ""), (keras.optimizers, "keras.")):
        for name in dir(module):
            cls = getattr(module, name)
            if convergence._standalone(cls) and cls not in (to.Optimizer, keras.optimizers.Optimizer):
                assert prefix + name in found
    assert {"Adam", "SGD", "keras.Adam", "keras.SGD", "keras.SGD(momentum=0.9)+cosine"} <= set(found)
    assert "keras.LossScaleOptimizer" not in found  # needs an inner optimizer
    assert "Optimizer" not in found and "keras.Optimizer" not in found


def test_quadratic_spectrum():
    eigenvalues, rotation = problems.quadratic_spectrum()
    assert np.sum((eigenvalues > 0) & (eigenvalues < 1)) == 90
    assert np.sum((eigenvalues > 30) & (eigenvalues < 60)) == 10
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(100), atol=1e-12)
    assert problems.QUADRATIC_TARGET == pytest.approx(0.005 * eigenvalues.sum(), abs=0.01)


@pytest.mark.parametrize("name", list(problems.PROBLEMS))
def test_problem_starts_finite_and_away_from_its_target(name):
    problem = problems.PROBLEMS[name]
    setup = problem.setup()
    starts = []
    for seed in (0, 1):
        setup.init(seed)
        starts.append([v.numpy().copy() for v in setup.variables])
        metric = float(setup.metric([v.value for v in setup.variables]))
        assert math.isfinite(metric) and not problem.reached([metric])
        assert math.isfinite(float(setup.loss(seed, 0)))
    same = all(np.array_equal(a, b) for a, b in zip(*starts))
    assert same == (problem.deterministic or name == "rosenbrock-noisy")  # its seed draws only noise


def test_schedule_free_is_judged_at_its_evaluation_weights():
    import tensorflow as tf

    from tfoptim.callbacks import evaluation_values

    candidate = convergence.candidates()["keras.ScheduleFreeAdamW"]
    problem = problems.PROBLEMS["noisy-quadratic"]
    setup = problem.setup()
    setup.init(0)
    optimizer = candidate.make(0.01, 20)
    curve = convergence._train_function(optimizer, setup)(tf.constant(0), tf.constant(1), tf.constant(20)).numpy()
    at_x = float(setup.metric(evaluation_values(optimizer, setup.variables)))
    at_y = float(setup.metric([v.value for v in setup.variables]))
    assert curve[-1] == pytest.approx(at_x, rel=1e-6) and at_x != pytest.approx(at_y, rel=1e-3)


@pytest.mark.parametrize("name", ["Adam", "DynamicGradientDescent", "Prodigy", "keras.SGD(momentum=0.9)+cosine"])
def test_reused_trace_gives_the_run_of_a_fresh_optimizer(name):
    """Reruns copy a freshly built optimizer's state into the traced one and set the rate in
    place (or retrace, for DynamicGradientDescent's schedule): the last run must equal a run
    from scratch, also for rules whose state copies the starting weights (Prodigy)."""
    import tensorflow as tf

    candidate = convergence.candidates().get(name)
    if candidate is None:
        pytest.skip(f"{name} is not available")
    problem = problems.PROBLEMS["linear-regression"]
    runs, _ = convergence.run_problem(candidate, problem, [10.0, 1.0], (0, 1), 30)
    assert len({tuple(run.curve) for run in runs}) == 4
    last = runs[-1]
    setup = problem.setup()
    setup.init(last.seed)
    train = convergence._train_function(candidate.make(last.learning_rate, 30), setup)
    expected = train(tf.constant(last.seed), tf.constant(3), tf.constant(problem.every)).numpy()
    np.testing.assert_array_equal(last.curve, expected)


def test_bench_convergence_command(tmp_path, capsys):
    cli.main(
        ["bench", "convergence", "--quick", "--optimizers", "GradientDescent", "keras.Adam",
         "--problems", "linear-regression", "rosenbrock", "--seeds", "0", "1", "--sweep", "10",
         "--output", str(tmp_path), "--no-progress"]
    )
    out = capsys.readouterr().out
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["seeds"] == [0, 1] and payload["sweep_factors"] == [1.0, 10.0]
    assert set(payload["problems"]) == {"linear-regression", "rosenbrock"}
    assert set(payload["optimizers"]) == {"GradientDescent", "keras.Adam"}
    settings = payload["settings"]
    assert len(settings) == 2 * 2 * 2
    for record in settings:
        assert record["status"] in ("reached", "not reached", "diverged", "error")
        seeds = [0] if record["problem"] == "rosenbrock" else [0, 1]  # deterministic: one run
        assert record["seeds"] == seeds and len(record["steps_to_target_per_seed"]) == len(seeds)
    for name in payload["optimizers"]:
        for problem in payload["problems"]:
            mine = [r for r in settings if r["optimizer"] == name and r["problem"] == problem]
            assert sum(r["default"] for r in mine) == 1 and sum(r["tuned"] for r in mine) == 1
    assert len(payload["runs"]) == 2 * (2 + 1) * 2
    # Gradient descent at its default rate 0.01 diverges on Rosenbrock: reported, not dropped.
    failed = next(r for r in settings if r["optimizer"] == "GradientDescent" and r["problem"] == "rosenbrock"
                  and r["default"])
    assert failed["status"] == "diverged" and failed["final"] is None
    solved = next(r for r in settings if r["optimizer"] == "GradientDescent"
                  and r["problem"] == "linear-regression" and r["tuned"])
    assert solved["status"] == "reached" and solved["seconds_to_target"] > 0
    for rho in payload["profile"]["tuned"].values():
        assert len(rho) == len(payload["profile"]["taus"]) and all(0 <= a <= b <= 1 for a, b in zip(rho, rho[1:]))
    markdown = (tmp_path / "results.md").read_text()
    assert "## rosenbrock" in markdown and "**diverged**" in markdown
    assert "DIVERGED" in out and "GradientDescent" in out
    for png in ("profile.png", "curves_linear-regression.png", "curves_rosenbrock.png"):
        assert (tmp_path / png).stat().st_size > 10_000
