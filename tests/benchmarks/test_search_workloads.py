"""``tfoptim bench search`` on the realistic workloads (``gpt``, ``resnet``): the problems match
their workloads, ``gpt`` is split by document with a test split no search sees, a metric to
minimise is judged as such, and a search runs end to end on a reduced ``gpt``."""

import functools
import math

import keras
import keras_tuner
import numpy as np
import pytest

from tfoptim.benchmarks import search
from tfoptim.benchmarks.workloads import get_workload, gpt
from tfoptim.tuning import finder_ranges

#: A ``gpt`` small enough to train in a test: one block, 16 wide, a context of 8 bytes.
TINY_GPT_MODEL = dict(layers=1, width=16, heads=2, context=8)


def tiny_gpt(steps_per_epoch=2):
    split = functools.partial(search.split_gpt, context=8, batch_size=4,
                              steps_per_epoch=steps_per_epoch, evaluation_windows=16)
    return search.workload_problem("gpt", "tiny gpt", "bits_per_byte", "min", split,
                                   model=TINY_GPT_MODEL)


@pytest.fixture
def few_documents(monkeypatch):
    """``gpt``'s documents replaced by 400 short ones, each its name over and over, so that
    every window tells which document it came from (and the standard library is not parsed)."""
    documents = tuple((f"doc{i:03d}", f"<doc{i:03d}>" * 6) for i in range(400))
    monkeypatch.setattr(gpt, "documents", lambda: documents)
    return documents


@pytest.mark.parametrize("name", ["gpt", "resnet"])
def test_workload_problems_judge_by_their_workloads_metric(name):
    problem, workload = search.PROBLEMS[name], get_workload(name)
    assert f"val_{problem.metric}" == workload.metric and problem.goal == workload.goal
    assert problem.objective.name == workload.metric and problem.objective.direction == problem.goal
    # The metric ``fit`` logs under that name is the workload's own.
    assert [m.name for m in problem.metrics()] == [m.name for m in workload.metrics()]


def test_gpt_problem_is_the_sweep_model():
    sweep = get_workload("gpt").build_model("sweep")
    model = search.PROBLEMS["gpt"].model()
    assert model.count_params() == sweep.count_params()
    assert [v.shape for v in model.weights] == [v.shape for v in sweep.weights]


def _documents_of(dataset):
    """The names of the documents a dataset's windows come from (the ``docNNN`` they show)."""
    found = set()
    for x, y in dataset:
        for row in np.concatenate([x.numpy(), y.numpy()[:, -1:]], axis=1):
            text = bytes(row.astype(np.uint8)).decode("utf-8", "ignore")
            found.update(f"doc{text[i + 4:i + 7]}" for i in range(len(text) - 6) if text[i:i + 4] == "<doc")
    return found


def test_gpt_split_by_document_with_the_workloads_validation_as_test(few_documents):
    names = [name for name, _ in few_documents]
    train, validation, test = search.split_gpt(0, context=8, batch_size=4, steps_per_epoch=1000,
                                               evaluation_windows=64)
    seen = {part: _documents_of(data) for part, data in
            (("train", train), ("validation", validation), ("test", test))}
    workload_validation = {n for n in names if gpt.in_validation(n)}
    held_out = {n for n in names if not gpt.in_validation(n)
                and search.held_out_document(n, 0, gpt.VALIDATION_FRACTION)}
    # No document is in two parts (a window straddling two documents shows both).
    assert not (seen["train"] & seen["validation"]) and not (seen["train"] & seen["test"])
    assert not (seen["validation"] & seen["test"])
    assert seen["test"] and seen["test"] <= workload_validation
    assert seen["validation"] and seen["validation"] <= held_out
    assert seen["train"].isdisjoint(workload_validation | held_out)
    # About a tenth of the documents each for test and validation.
    assert 20 <= len(workload_validation) <= 60 and 15 <= len(held_out) <= 60
    # The held-out documents change with the seed; the test documents do not.
    assert held_out != {n for n in names if not gpt.in_validation(n)
                        and search.held_out_document(n, 1, gpt.VALIDATION_FRACTION)}


def test_gpt_epoch_is_a_fixed_number_of_steps(few_documents):
    train, validation, test = search.split_gpt(0, context=8, batch_size=4, steps_per_epoch=5,
                                               evaluation_windows=16)
    assert int(train.cardinality()) == 5 and len(list(train)) == 5
    first, second = ([x.numpy() for x, _ in train] for _ in range(2))
    # Each epoch draws other windows from the whole training stream.
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    assert [x.shape for x, _ in validation] == [(4, 8)] * 4 and len(list(test)) == 4


def test_the_oracle_picks_the_lowest_bits_per_byte(tmp_path):
    objective = search.PROBLEMS["gpt"].objective
    assert objective.better_than(2.0, 3.0) and not objective.better_than(3.0, 2.0)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective=objective, max_trials=3, seed=0)
    oracle._set_project_dir(str(tmp_path), "search")
    oracle.hyperparameters.Float("x", 0.0, 1.0)
    for value in (3.0, 2.0, 4.0):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_bits_per_byte": value})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.get_best_trials(1)[0].score == 2.0


@pytest.mark.slow
def test_default_search_on_a_reduced_gpt(tmp_path):
    result = search.run_method("default", 0, problem=tiny_gpt(steps_per_epoch=3), epochs=2,
                               directory=tmp_path)
    assert result["goal"] == "min" and result["metric"] == "bits_per_byte"
    assert result["trials"] == 1 and result["epochs_trained"] == 2
    assert result["steps_per_epoch"] == 3 and result["steps_trained"] == 6
    # Near-uniform logits at initialisation cost 8 bits a byte; a few steps cannot beat 4.
    assert 4.0 < result["best_val"] < 8.5 and 4.0 < result["test_of_best"] < 8.5
    assert result["best_so_far"] == [result["best_val"]]


@pytest.mark.slow
def test_finder_and_autotune_on_a_reduced_gpt(tmp_path):
    problem = tiny_gpt(steps_per_epoch=30)
    train, _, _ = problem.split(0)
    ranges = finder_ranges(problem.compiled, train, num_steps=40, seed=0)
    for name, (low, high) in ranges.items():
        # Every family's sweep ran (AdamW's is Adam's), started from the uniform prediction's
        # ln 256 nats, and suggested a rate inside what it swept.
        assert ranges.steps[name] >= 3 or (name == "adamw" and ranges.steps[name] == 0)
        assert math.isfinite(ranges.suggestions[name]) and 0 < low < high
    keras.utils.set_random_seed(0)
    model = problem.compiled("sgd")
    assert model.evaluate(train.take(1), verbose=0, return_dict=True)["loss"] == pytest.approx(
        math.log(256), abs=0.05)

    result = search.run_method("autotune", 0, problem=problem, epochs=1, directory=tmp_path)
    assert result["epochs_trained"] <= search.GRID_SIZE * 1 and result["trials"] >= 1
    assert result["finder_epochs"] > 0
    # The best trial is the one with the fewest bits per byte.
    assert result["best_val"] == min(result["best_so_far"]) == result["best_so_far"][-1]
    # Every trial is recorded: its epochs, its score and what it tried.
    assert len(result["trial_records"]) == result["trials"]
    assert min(t["score"] for t in result["trial_records"]) == result["best_val"]
    assert all(t["epochs"] >= 1 and "optimizer" in t["values"] for t in result["trial_records"])
