"""``tfoptim bench search``'s bookkeeping on made-up results (the searches themselves run in
the benchmark, not here)."""

import json
import math
import types

import keras_tuner
import numpy as np
import pytest

from tfoptim.benchmarks import search


def result(problem, method, seed, val, test, epochs, metric="accuracy", goal="max"):
    return {"problem": problem, "method": method, "seed": seed, "metric": metric,
            "goal": goal, "trials": 3, "epochs_trained": epochs, "finder_epochs": 0.0,
            "steps_per_epoch": 34, "steps_trained": 0, "seconds": 1.0, "cpu_seconds": 2.0,
            "best_val": val, "test_of_best": test,
            "best_so_far": [val], "epochs_so_far": [epochs], "best_config": {}}


def test_summary_verdict_and_files(tmp_path):
    results = [
        result("digits_mlp", "grid", 0, 0.90, 0.91, 27), result("digits_mlp", "grid", 1, 0.94, 0.93, 27),
        result("digits_mlp", "autotune", 0, 0.93, 0.92, 26.5),
        result("digits_mlp", "autotune", 1, 0.92, 0.91, 26.0),
        result("digits_cnn", "grid", 0, 0.95, 0.95, 27), result("digits_cnn", "autotune", 0, 0.96, 0.94, 28),
        result("digits_cnn", "autotune_fixed_ranges", 0, 0.97, 0.96, 27),
    ]
    summary = search.summarize(results)
    assert summary["digits_mlp"]["grid"]["best_val_mean"] == pytest.approx(0.92)
    assert summary["digits_mlp"]["autotune"]["epochs_trained"] == pytest.approx(26.25)
    # The ablation is summarised beside the methods and does not enter the verdict.
    assert summary["digits_cnn"]["autotune_fixed_ranges"]["best_val_mean"] == pytest.approx(0.97)
    assert search.verdict(summary) == {
        # 0.925 >= 0.92 on validation, 0.915 < 0.92 on test.
        "digits_mlp": {"validation": True, "test": False, "epochs_within_grid": True},
        "digits_cnn": {"validation": True, "test": False, "epochs_within_grid": False},
    }
    search.write(results, {"keras": "3"}, tmp_path, command="tfoptim bench search --epochs 3")
    with open(tmp_path / "search.json") as f:
        written = json.load(f)
    assert written["command"] == "tfoptim bench search --epochs 3" and len(written["runs"]) == 7
    markdown = (tmp_path / "search.md").read_text()
    assert "tfoptim bench search --epochs 3" in markdown
    assert "| digits_cnn | accuracy (higher is better) |" in markdown
    assert search.LABELS["autotune_fixed_ranges"] in markdown
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_a_metric_to_minimise(tmp_path):
    assert search.best_so_far([3.0, 2.5, math.nan, 2.7, 2.0], "min") == [3.0, 2.5, 2.5, 2.5, 2.0]
    assert search.best_so_far([0.5, 0.4, math.nan, 0.7], "max") == [0.5, 0.5, 0.5, 0.7]
    bits = dict(metric="bits_per_byte", goal="min")
    results = [result("gpt", "grid", 0, 3.0, 3.1, 27, **bits),
               result("gpt", "autotune", 0, 2.8, 3.2, 26, **bits)]
    # Fewer bits per byte is better: autotune's 2.8 beats the grid's 3.0, its 3.2 does not.
    assert search.verdict(search.summarize(results)) == {
        "gpt": {"validation": True, "test": False, "epochs_within_grid": True}}
    search.write(results, {"keras": "3"}, tmp_path, command="tfoptim bench search --problems gpt")
    assert "| gpt | bits per byte (lower is better) |" in (tmp_path / "search.md").read_text()


def test_a_tie_counts_as_level():
    # The same count of correct answers over two seeds, in float32 as Keras reports accuracy:
    # (357 + 353) / 359 against (355 + 355) / 359. Their means differ in the eighth digit.
    accuracy = [float(np.float32(n / 359)) for n in (357, 353, 355)]
    results = [result("digits_cnn", "grid", 0, accuracy[0], 0.9, 27),
               result("digits_cnn", "grid", 1, accuracy[1], 0.9, 27),
               result("digits_cnn", "autotune", 0, accuracy[2], 0.9, 26),
               result("digits_cnn", "autotune", 1, accuracy[2], 0.9, 26)]
    summary = search.summarize(results)
    assert summary["digits_cnn"]["autotune"]["best_val_mean"] != summary["digits_cnn"]["grid"]["best_val_mean"]
    assert search.verdict(summary)["digits_cnn"]["validation"]
    # One answer fewer over the two seeds is short, for either goal.
    assert not search.at_least_as_good(float(np.float32(354 / 359)), accuracy[2], "max")
    assert not search.at_least_as_good(4.0681, 4.0680, "min")


def test_unknown_problem_or_method():
    with pytest.raises(ValueError, match="Unknown problem 'recsys'"):
        search.run_search_benchmark(problems=("recsys",), progress=False)
    with pytest.raises(ValueError, match="Unknown method"):
        search.run_search_benchmark(methods=("random",), progress=False)
    # Every method the benchmark runs has its label in the table and the plot.
    assert set(search.LABELS) == set(search.SHORT_LABELS) == {*search.METHODS, *search.ABLATIONS}


@pytest.mark.parametrize("method, tunes_moments", [("sample_optimizer", False),
                                                   ("sample_optimizer_all_arguments", True)])
def test_the_arguments_ablation_tunes_every_argument(method, tunes_moments):
    problem = types.SimpleNamespace(compiled=lambda optimizer: optimizer)
    hp = keras_tuner.HyperParameters()
    search._build(method, problem, total_steps=100)(hp)
    names = {p.name for p in hp.space}
    assert any(n.endswith("/beta_1") for n in names) == tunes_moments
    assert any(n.endswith("/learning_rate") for n in names)


def test_best_so_far_band_reads_every_run_at_every_epoch_count():
    runs = [{"epochs_so_far": [1.0, 3.0], "best_so_far": [0.5, 0.7]},
            {"epochs_so_far": [2.0, 3.0], "best_so_far": [0.6, 0.8]}]
    epochs, mean, low, high = search.best_so_far_band(runs)
    # At 1 epoch only the first run has a figure; each holds its figure until its next trial.
    np.testing.assert_array_equal(epochs, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(mean, [0.5, 0.55, 0.75])
    np.testing.assert_allclose(low, [0.5, 0.5, 0.7])
    np.testing.assert_allclose(high, [0.5, 0.6, 0.8])


def test_repeated_default_is_one_configuration_as_many_times_as_the_grid_has_points():
    import keras

    problem = types.SimpleNamespace(compiled=lambda optimizer: optimizer)
    hp = keras_tuner.HyperParameters()
    optimizer = search._build("default_repeated", problem, total_steps=30)(hp)
    assert type(optimizer) is keras.optimizers.Adam
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert [p.name for p in hp.space] == ["repeat"] and hp.space[0].values == list(range(search.GRID_SIZE))


@pytest.mark.parametrize("method, changed", [
    ("autotune", {}),
    ("autotune_fixed_ranges", {"range_test": False}),
    ("autotune_full_length", {"min_epochs": 2}),
    ("autotune_random_first", {"suggestion_first": False}),
    ("autotune_with_momentum", {"optimizers": ("adam", "adamw", "momentum")}),
    ("autotune_no_refine", {"refine": False}),
    ("autotune_constant_suggestions", {"decay_peak": None}),
    ("autotune_refine_third", {"refine": 1 / 3}),
])
def test_each_autotune_ablation_changes_one_argument(autotune_arguments, method, changed):
    import tfoptim.tuning

    with pytest.raises(ValueError, match="stop before training"):
        search.run_method(method, 0, problem="digits_mlp", epochs=2)
    defaults = {"range_test": True, "min_epochs": 1, "suggestion_first": True, "refine": True,
                "decay_peak": tfoptim.tuning.DECAY_PEAK, "optimizers": tfoptim.tuning.AUTOTUNE_OPTIMIZERS}
    assert {k: autotune_arguments[k] for k in defaults} == {**defaults, **changed}
    assert autotune_arguments["budget_epochs"] == search.GRID_SIZE * 2 and autotune_arguments["max_epochs"] == 2


def test_plot_draws_at_most_four_curves_and_ranks_every_method(tmp_path, monkeypatch):
    import matplotlib.axes

    colours, ticks = {}, []
    step, set_yticks = matplotlib.axes.Axes.step, matplotlib.axes.Axes.set_yticks

    def recording_step(self, *args, label=None, color=None, **kwargs):
        colours[label.rsplit(" (", 1)[0]] = color  # less " (N seeds)"
        return step(self, *args, label=label, color=color, **kwargs)

    def recording_set_yticks(self, positions, labels=None, **kwargs):
        ticks.append([label.rsplit(" (", 1)[0] for label in labels])
        return set_yticks(self, positions, labels, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "step", recording_step)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_yticks", recording_set_yticks)
    results = [result("gpt", "grid", 0, 4.1, 4.0, 27, "bits_per_byte", "min"),
               result("gpt", "grid", 1, 3.9, 4.0, 27, "bits_per_byte", "min"),
               result("gpt", "autotune", 0, 4.2, 4.1, 26, "bits_per_byte", "min"),
               result("gpt", "autotune", 1, 4.02, 4.1, 26, "bits_per_byte", "min"),
               result("gpt", "autotune_no_refine", 0, 4.05, 4.1, 26, "bits_per_byte", "min"),
               result("gpt", "default", 0, 4.3, 4.2, 3, "bits_per_byte", "min"),
               result("gpt", "sample_optimizer", 0, 4.4, 4.3, 27, "bits_per_byte", "min")]
    search.plot(results, tmp_path / "search.png")
    # Five methods: curves for the four only, each its own colour; the ablation only in the
    # ranking.
    assert colours == {search.LABELS[m]: f"C{i}" for i, m in enumerate(search.METHODS)}
    # Ranked by the mean best validation figure less the grid's on the same seed, the smallest
    # first where lower is better: the ablation, run on seed 0 only, is 0.05 ahead of the grid
    # there (by the figures alone it would be behind the grid's mean, 4.0, over an easier seed).
    assert ticks == [[search.SHORT_LABELS[m] for m in
                      ("autotune_no_refine", "grid", "autotune", "default", "sample_optimizer")]]
    ranked = {method: (val, test) for method, _, val, test in search.ranking(results, "gpt")}
    np.testing.assert_allclose(ranked["autotune"], [[0.1, 0.12], [0.1, 0.1]])
    np.testing.assert_allclose(ranked["grid"], [[0.0, 0.0], [0.0, 0.0]])
    # No more than four: a curve for each, ablations in colours after the four methods'.
    colours.clear()
    search.plot([r for r in results if r["method"] in ("autotune", "autotune_no_refine")], tmp_path / "two.png")
    assert colours == {search.LABELS["autotune"]: "C3", search.LABELS["autotune_no_refine"]: "C4"}
