"""``tfoptim bench convergence --suite realistic``: candidates, judging, targets, memory, and a tiny run.

The rules are checked on hand-made run records (steps and seconds to target, failures kept,
the baseline's target); the baseline's schedule against its formula; the state bytes against
what the rules must keep (Adam: two float32 slots per parameter). A tiny configuration of the
suite runs end to end (the default tier: one workload, two optimizers, a few steps; the second
tier: both tiers through the command line, files and plots).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from tfoptim import cli
from tfoptim.benchmarks import realistic
from tfoptim.benchmarks.convergence import Candidate
from tfoptim.benchmarks.workloads import get_workload


def test_candidates_are_every_tfoptim_optimizer_the_keras_builtins_and_the_baseline():
    import keras

    import tfoptim.optimizers as to

    found = realistic.candidates()
    assert {"Adam", "LazyAdam", "Muon", "Prodigy", "ScheduleFreeSGD", "SOAP"} <= set(found)
    assert {c.source for c in found.values()} == {"tfoptim", "keras", "reference"}
    assert all(name in to.__all__ for name, c in found.items() if c.source == "tfoptim")
    keras_names = {name for name, c in found.items() if c.source == "keras"}
    assert keras_names == {f"keras.{n}" for n in realistic.KERAS_BUILTINS if hasattr(keras.optimizers, n)}
    assert "keras.ScheduleFreeAdamW" in keras_names  # Keras 3.15 has it
    assert found[realistic.BASELINE].default_learning_rate == 1e-3


def test_baseline_warms_up_linearly_then_decays_by_a_cosine():
    steps, rate = 200, 3e-3
    warmup = int(realistic.WARMUP_FRACTION * steps)
    schedule = realistic.candidates()[realistic.BASELINE].make(rate, steps)._learning_rate
    at = np.array([float(schedule(s)) for s in range(steps + 1)])
    s = np.arange(steps + 1, dtype=float)
    expected = np.where(s < warmup, rate * s / warmup,
                        rate * 0.5 * (1 + np.cos(np.pi * np.minimum(s - warmup, steps - warmup) / (steps - warmup))))
    np.testing.assert_allclose(at, expected, rtol=1e-5, atol=1e-10)
    assert at[warmup] == pytest.approx(rate) and at[-1] == pytest.approx(0.0, abs=1e-9)


def raw(optimizer, curve, seed=0, factor=1.0, per_step=0.5, error=None, cpu_per_step=None):
    return dict(optimizer=optimizer, factor=factor, learning_rate=1e-3 * factor, seed=seed, curve=curve,
                seconds_per_step=per_step, cpu_seconds_per_step=cpu_per_step, error=error)


def test_judge_counts_steps_and_seconds_to_target_and_keeps_failures():
    problem = realistic.Problem("resnet", "max", 0.8, every=10)
    run = realistic.judge(raw("Adam", [0.1, 0.5, 0.85, 0.9], per_step=0.25), problem)
    assert (run.status, run.steps_to_target, run.final) == ("reached", 20, 0.9)
    assert run.seconds_to_target == pytest.approx(5.0) and run.seconds == pytest.approx(7.5)
    # Seconds are CPU seconds where the run recorded them (results written before kept wall-clock).
    run = realistic.judge(raw("Adam", [0.1, 0.5, 0.85, 0.9], per_step=0.25, cpu_per_step=0.4), problem)
    assert run.seconds_to_target == pytest.approx(8.0) and run.seconds == pytest.approx(12.0)
    run = realistic.judge(raw("Adam", [0.1, 0.5, math.nan, math.nan]), problem)
    assert run.status == "diverged" and run.final is None and run.steps_to_target is None
    run = realistic.judge(raw("Adam", [0.1], per_step=None, error="ValueError: no"), problem)
    assert run.status == "error" and run.error == "ValueError: no"
    run = realistic.judge(raw("Adam", [0.1, 0.2, 0.3, 0.4]), problem)
    assert run.status == "not reached" and run.final == 0.4


def test_target_is_stated_or_the_tuned_baselines_median_final():
    stated = get_workload("gpt")  # smaller is better
    assert realistic.resolve_target(stated, "sweep", [], 10) == (stated.sizes["sweep"].target, "stated")
    # Quick runs shorten the budget the stated target was set for: the baseline's final instead.
    assert realistic.resolve_target(stated, "sweep", [], 10, quick=True)[0] is None
    # A size without a stated target takes the tuned baseline's median final.
    workload = dataclasses.replace(stated, sizes={n: dataclasses.replace(s, target=None)
                                                  for n, s in stated.sizes.items()})
    raws = [
        raw(realistic.BASELINE, [5.0, 3.0, 2.0], seed=0, factor=1.0),
        raw(realistic.BASELINE, [5.0, 3.0, 2.4], seed=1, factor=1.0),
        raw(realistic.BASELINE, [5.0, 3.0, 2.2], seed=2, factor=1.0),
        raw(realistic.BASELINE, [5.0, 4.0, 3.0], seed=0, factor=3.0),
        raw("Adam", [5.0, 1.0, 1.0]),
    ]
    target, source = realistic.resolve_target(workload, "sweep", raws, 10)
    assert target == pytest.approx(2.2) and realistic.BASELINE in source
    assert realistic.resolve_target(workload, "sweep", raws[-1:], 10)[0] is None
    # In the finalist tier the baseline runs at its tuned factor only (no default run).
    assert realistic.resolve_target(workload, "full", raws[3:4], 10)[0] == pytest.approx(3.0)


def test_finalists_are_the_baseline_and_the_best_of_each_source():
    known = realistic.candidates()
    workload = get_workload("resnet")

    def record(name, steps, final, factor):
        return dict(optimizer=name, problem="resnet", tuned=True, status="reached" if steps else "not reached",
                    steps_to_target=steps, final=final, factor=factor)

    settings = [
        record(realistic.BASELINE, 200, 0.9, 3.0), record("Adam", 100, 0.92, 3.0), record("Lion", 150, 0.91, 1.0),
        record("SOAP", None, 0.5, 0.3), record("RAdam", 120, 0.9, 1.0), record("Adan", 180, 0.9, 3.0),
        record("keras.Lion", 90, 0.93, 1 / 3), record("keras.AdamW", None, 0.7, 3.0), record("keras.Lamb", 300, 0.85, 1.0),
    ]
    finals = realistic.pick_finalists(settings, workload, known, quick=False)
    assert finals == {realistic.BASELINE: 3.0, "Adam": 3.0, "RAdam": 1.0, "Lion": 1.0, "keras.AdamW": 3.0,
                      "keras.Lion": 1 / 3}


@pytest.mark.parametrize("name, expected", [("Adam", 8.0), ("SGD", 0.0), ("keras.AdamW", 8.0)])
def test_state_bytes_per_parameter(name, expected):
    """Adam and AdamW keep two float32 moments per parameter, SGD without momentum none; the
    few scalars (step count, learning rate) are a rounding error on a whole model."""
    state, parameters = realistic.state_bytes(realistic.candidates()[name], "resnet", "sweep")
    assert parameters == sum(math.prod(v.shape) for v in get_workload("resnet").build_model("sweep").trainable_variables)
    assert state / parameters == pytest.approx(expected, abs=0.01)


def failing_candidate():
    def make(rate, steps):
        raise RuntimeError("cannot build")

    return Candidate("Broken", "tfoptim", "raises", 1e-3, make)


@pytest.mark.slow
def test_a_tiny_suite_runs_and_reports_failures(monkeypatch, tmp_path):
    """One workload (ResNet-8 on digits), the sweep tier, the baseline and an optimizer that
    raises: its failure is a result, the baseline gives a curve and the target. Run again from
    its journal, it trains nothing and reports the same."""
    monkeypatch.setitem(realistic.QUICK_STEPS, "sweep", 4)
    monkeypatch.setattr(realistic, "QUICK_CHECKS", 2)
    known = {**realistic.candidates(), "Broken": failing_candidate()}
    monkeypatch.setattr(realistic, "candidates", lambda: known)

    def suite(reuse):
        return realistic.run_suite(optimizers=[realistic.BASELINE, "Broken"], workloads=["resnet"],
                                   tiers=("sweep",), quick=True, sweep=(1.0,), progress=False, with_memory=False,
                                   journal=tmp_path / "runs.jsonl", reuse=reuse)

    payload = suite(reuse=False)
    resumed = suite(reuse=True)
    assert (payload["reused_runs"], resumed["reused_runs"]) == (0, 2)
    assert resumed["tiers"]["sweep"]["settings"] == payload["tiers"]["sweep"]["settings"]
    entry = payload["tiers"]["sweep"]
    problem = entry["problems"]["resnet"]
    assert (problem["size"], problem["steps"], problem["every"]) == ("sweep", 4, 2)
    tuned = {r["optimizer"]: r for r in entry["settings"] if r["tuned"]}
    assert tuned["Broken"]["status"] == "error" and "cannot build" in tuned["Broken"]["errors"][0]
    # The target is the baseline's own final accuracy, which it therefore reaches.
    assert problem["target"] == pytest.approx(tuned[realistic.BASELINE]["final"])
    assert tuned[realistic.BASELINE]["status"] == "reached"
    curve = tuned[realistic.BASELINE]["curve"]
    assert len(curve) == 3 and all(0 <= v <= 1 for v in curve)
    assert set(entry["profile"]["tuned"]) == {realistic.BASELINE, "Broken"}
    assert "| Broken |" in realistic.format_markdown(payload)


@pytest.mark.slow
def test_cli_both_tiers_write_results(tmp_path, monkeypatch):
    monkeypatch.setitem(realistic.QUICK_STEPS, "sweep", 4)
    monkeypatch.setitem(realistic.QUICK_STEPS, "finalist", 2)
    monkeypatch.setattr(realistic, "QUICK_CHECKS", 2)
    cli.main(["bench", "convergence", "--suite", "realistic", "--quick", "--workloads", "resnet", "--optimizers",
              realistic.BASELINE, "Adam", "keras.AdamW", "keras.Lion", "--no-progress", "--output", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert set(payload["tiers"]) == {"sweep", "finalist"}
    assert payload["tiers"]["finalist"]["problems"]["resnet"]["size"] == "quick"
    # Quick mode: the baseline and the best tfoptim optimizer (the only one here) go on.
    assert {r["optimizer"] for r in payload["tiers"]["finalist"]["settings"]} == {realistic.BASELINE, "Adam"}
    # Quick mode measures the memory of the optimizers it runs.
    assert set(payload["memory"]["optimizers"]) == {realistic.BASELINE, "Adam", "keras.AdamW", "keras.Lion"}
    assert payload["memory"]["optimizers"]["Adam"]["bytes_per_parameter"] == pytest.approx(8.0, abs=0.01)
    for name in ("results.md", "curves_resnet.png", "profile.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert payload["utc"].endswith("Z") and payload["machine"]["keras"]


def test_memory_only_measures_every_candidate(tmp_path, monkeypatch):
    known = {name: c for name, c in realistic.candidates().items() if name in ("Adam", "SGD", "keras.Adafactor")}
    monkeypatch.setattr(realistic, "candidates", lambda: known)
    cli.main(["bench", "convergence", "--suite", "realistic", "--memory-only", "--output", str(tmp_path)])
    states = json.loads((tmp_path / "results.json").read_text())["memory"]["optimizers"]
    assert set(states) == set(known)
    assert states["Adam"]["bytes_per_parameter"] == pytest.approx(8.0, abs=0.01)
    assert states["SGD"]["bytes_per_parameter"] == pytest.approx(0.0, abs=0.01)
    # Keras's Adafactor keeps a full float32 velocity and, for each kernel of two or more
    # dimensions, the factors of its second moment over the last two (a fraction of its size).
    assert 4.0 < states["keras.Adafactor"]["bytes_per_parameter"] < 5.0
    assert "## Optimizer state on the full gpt" in (tmp_path / "results.md").read_text()


def test_realistic_only_options_are_rejected_elsewhere():
    with pytest.raises(SystemExit, match="--workloads belongs to --suite realistic"):
        cli.main(["bench", "convergence", "--workloads", "gpt"])
    with pytest.raises(SystemExit, match="unknown workload"):
        cli.main(["bench", "convergence", "--suite", "realistic", "--workloads", "bert"])


def payload_of(workloads, seeds=(0, 1, 2), seconds=10.0):
    problems = {w: {"target": 1.0, "goal": "min"} for w in workloads}
    settings = [dict(optimizer=name, problem=w, tuned=True, default=True, steps_to_target=steps)
                for w in workloads for name, steps in (("Adam", 50), ("SGD", None))]
    return {"command": f"tfoptim bench convergence --suite realistic --workloads {' '.join(workloads)}",
            "utc": "2026-12-07T00:00:00Z", "quick": False, "seeds": list(seeds), "finalist_seeds": [0],
            "sweep_factors": [1.0, 3.0], "seconds": seconds,
            "optimizers": {"Adam": {}, "SGD": {}},
            "tiers": {"sweep": {"problems": problems, "settings": settings, "runs": [{"problem": w} for w in workloads]}}}


def test_merge_joins_disjoint_workloads_and_refuses_the_rest():
    merged = realistic.merge([payload_of(["gpt"], seconds=30.0), payload_of(["resnet", "recsys"], seconds=50.0)])
    entry = merged["tiers"]["sweep"]
    assert list(entry["problems"]) == ["gpt", "resnet", "recsys"] and len(entry["runs"]) == 3
    # The profile is recomputed over all three workloads: Adam solves each, SGD none.
    assert entry["profile"]["tuned"]["Adam"][0] == 1.0 and entry["profile"]["tuned"]["SGD"][-1] == 0.0
    assert merged["seconds"] == 50.0 and [p["workloads"] for p in merged["parts"]] == [["gpt"], ["recsys", "resnet"]]
    assert "--workloads gpt && " in merged["command"]
    with pytest.raises(ValueError, match="more than one result"):
        realistic.merge([payload_of(["gpt"]), payload_of(["gpt"])])
    # Parts may use different seeds (each workload's entry records its own), not different sweeps.
    assert realistic.merge([payload_of(["gpt"]), payload_of(["resnet"], seeds=(0, 1))])["seeds"] == [0, 1, 2]
    other = payload_of(["resnet"])
    other["sweep_factors"] = [1.0]
    with pytest.raises(ValueError, match="sweep_factors"):
        realistic.merge([payload_of(["gpt"]), other])


def test_cli_merge_writes_the_joined_results(tmp_path, monkeypatch):
    for name, workloads in (("a", ["gpt"]), ("b", ["resnet"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(payload_of(workloads)))
    written = {}
    monkeypatch.setattr(realistic, "write", lambda payload, output: written.update(payload=payload, output=output))
    monkeypatch.setattr(realistic, "format_table", lambda payload: "")
    cli.main(["bench", "convergence", "--suite", "realistic", "--merge", str(tmp_path / "a"), str(tmp_path / "b"),
              "--output", str(tmp_path / "all")])
    assert set(written["payload"]["tiers"]["sweep"]["problems"]) == {"gpt", "resnet"}
    assert written["output"] == tmp_path / "all"
    with pytest.raises(SystemExit, match="--merge"):
        cli.main(["bench", "convergence", "--suite", "realistic", "--merge", str(tmp_path / "missing")])


@pytest.mark.slow
def test_a_run_past_the_cpu_limit_stops_as_a_failure():
    candidate = realistic.candidates()["Adam"]
    curve, per_step, cpu_per_step, error = realistic.train(get_workload("resnet"), "sweep", candidate, 1e-3, 0, 4, 2,
                                                           cpu_limit=0.0)
    assert error.startswith("time limit: ") and "after 2 of 4 steps" in error
    assert per_step is None and cpu_per_step is None and len(curve) == 2


def test_journal_resumes_only_the_same_runs(tmp_path):
    """A run recorded in the journal is reused when everything that decides it is the same."""
    adam, sgd = realistic.candidates()["Adam"], realistic.candidates()["SGD"]
    gpt = get_workload("gpt")
    journal = realistic.Journal(tmp_path / "runs.jsonl", reuse=False)
    key = realistic.Journal.key(gpt, "sweep", 100, 10, adam, 1.0, 0)
    journal.add(key, raw("Adam", [5.0, 4.0]))
    with (tmp_path / "runs.jsonl").open("a") as f:
        f.write('{"key": "cut sh')  # the line an interruption cut short
    again = realistic.Journal(tmp_path / "runs.jsonl", reuse=True)
    assert again.get(key)["curve"] == [5.0, 4.0] and again.reused == 1
    for other in (realistic.Journal.key(gpt, "sweep", 100, 10, adam, 3.0, 0),
                  realistic.Journal.key(gpt, "sweep", 100, 10, adam, 1.0, 1),
                  realistic.Journal.key(gpt, "sweep", 50, 10, adam, 1.0, 0),
                  realistic.Journal.key(gpt, "full", 100, 10, adam, 1.0, 0),
                  realistic.Journal.key(gpt, "sweep", 100, 10, sgd, 1.0, 0)):
        assert again.get(other) is None
    # Without reuse the journal starts afresh.
    realistic.Journal(tmp_path / "runs.jsonl", reuse=False)
    assert not (tmp_path / "runs.jsonl").exists()
