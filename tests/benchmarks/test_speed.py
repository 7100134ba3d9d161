"""``tfoptim bench speed`` runs end to end (a smoke test: timings are never asserted)."""

import json
import os
import subprocess
import sys

import pytest

from tfoptim import cli
from tfoptim.benchmarks import speed


def test_bytes_per_parameter_is_the_unavoidable_traffic():
    assert speed.bytes_per_parameter(2) == 28  # Adam, float32: read g, read+write theta, m, v
    assert speed.bytes_per_parameter(0) == 12


def test_every_same_rule_pair_is_the_same_rule():
    """Those pairs time the same update: one step from the same start lands in the same place."""
    import keras
    import numpy as np

    for name in speed.SAME_RULE:
        make_ours, make_keras, _ = speed.twins()[name]
        start = np.linspace(-1, 1, 12).reshape(3, 4).astype("float32")
        ours, theirs = keras.Variable(start), keras.Variable(start)
        grad = np.full((3, 4), 0.5, "float32")
        make_ours().apply([grad], [ours])
        make_keras().apply([grad], [theirs])
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", sorted(speed.twins()))
def test_declared_state_slots_are_the_measured_ones(name):
    """The slots the README's table states are the state the optimizer allocates."""
    make_ours, _, slots = speed.twins()[name]
    assert speed.state_slots(make_ours()) == slots


def test_rules_stepped_by_a_training_kernel_are_named():
    """The table says which rules keep their fast path under a strategy; wrappers answer for
    their inner optimizer."""
    names = ["Adam", "SGD(momentum)", "Lookahead(Adam)", "SWA(SGD(momentum))", "GradientDescent"]
    assert speed.kernel_stepped(names) == ["GradientDescent", "SGD(momentum)", "SWA(SGD(momentum))"]
    assert speed.kernel_stepped(["Adam"]) == ["none here"]


@pytest.mark.slow
def test_bench_speed_command_writes_json_and_plot(tmp_path, capsys):
    cli.main(
        ["bench", "speed", "--quick", "--rounds", "1", "--optimizers", "Adam",
         "--workloads", "100x1000", "--modes", "graph", "--output", str(tmp_path)]
    )
    payload = json.loads((tmp_path / "speed.json").read_text())
    (result,) = payload["results"]
    assert result["optimizer"] == "Adam" and result["workload"] == "100x1000"
    assert result["ratio"] > 0 and payload["machine"]["streaming_bandwidth_gbs"] > 0
    assert 0 < result["stream_ratio"] < float("inf") and 0 < result["floor_ratio"] < float("inf")
    # The end-to-end figure: model.fit steps per second on the digits models.
    assert sorted((f["model"], f["batch_size"]) for f in payload["fit"]) == [("cnn", 64), ("mlp", 64), ("wide", 8)]
    assert all(f["optimizer"] == "Adam" and f["keras_steps_per_s"] > 0 and f["ratio"] > 0 for f in payload["fit"])
    assert (tmp_path / "speed.png").stat().st_size > 5_000
    out = capsys.readouterr().out
    assert "ratio" in out and "model.fit on digits" in out


@pytest.mark.slow
def test_bench_speed_runs_on_keras_jax_backend(tmp_path):
    """The GPU run's command: Keras on JAX, one mode (xla), stateless_apply under jax.jit."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run(
        [sys.executable, "-m", "tfoptim.cli", "bench", "speed", "--quick", "--rounds", "1",
         "--optimizers", "Adam", "MADGRAD", "--workloads", "100x1000", "--no-fit", "--output", str(tmp_path)],
        check=True, env=env, timeout=300,
    )
    payload = json.loads((tmp_path / "speed.json").read_text())
    assert payload["machine"]["backend"] == "jax"
    assert [(r["optimizer"], r["mode"]) for r in payload["results"]] == [("Adam", "xla"), ("MADGRAD", "xla")]
    assert all(r["tfoptim_ms"] > 0 and r["keras_ms"] > 0 for r in payload["results"])


@pytest.mark.parametrize("shapes", [[(3000,), (7,)], [(300, 40), (2048, 5)], [(3, 3, 4, 8)]])
def test_shampoo_factor_bytes_are_the_built_optimizers(shapes):
    """The figure the skip reason states is what Shampoo allocates: its 2-D slots."""
    import keras
    import numpy as np

    from tfoptim.optimizers import Shampoo

    optimizer = Shampoo()
    optimizer.build([keras.Variable(np.zeros(s, "float32")) for s in shapes])
    built = sum(4 * int(np.prod(v.shape)) for v in optimizer.variables if "_factor" in v.name or "_root" in v.name)
    assert built > 0
    assert speed.shampoo_factor_bytes(shapes) == built


def test_shampoo_is_skipped_on_vector_workloads_with_a_reason():
    for workload in [*speed.WORKLOADS, *speed.QUICK_WORKLOADS]:
        vectors = workload in ("500x1000", "2x10M", "100x1000", "2x1M")
        reason = speed.skip_reason("Shampoo", workload)
        assert (reason is not None) == vectors, workload
        assert speed.skip_reason("SOAP", workload) is None and speed.skip_reason("Adam", workload) is None
    # 2 x 10M: per vector 9765 blocks of 1024 and one of 640, a float32 factor and root each.
    expected = 2 * (9765 * 1024**2 + 640**2) * 2 * 4
    assert f"{expected / 2**30:.1f} GiB" in speed.skip_reason("Shampoo", "2x10M")


def test_per_step_names_resolve_to_tfoptim_and_keras_classes():
    import keras

    import tfoptim.optimizers as to

    assert speed.per_step_factory("Muon") is to.Muon
    assert speed.per_step_factory("keras.AdamW") is keras.optimizers.AdamW
    assert all(speed.per_step_factory(n) for n in (*speed.PER_STEP_OPTIMIZERS, speed.PER_STEP_REFERENCE))
    for wrong in ("keras.Nope", "Nope", "keras.schedules", "Optimizer_"):
        with pytest.raises(ValueError, match="unknown optimizer"):
            speed.per_step_factory(wrong)


@pytest.mark.parametrize("argv, message", [
    (["--e2e"], "does not go with --per-step"),
    (["--workloads", "gpt"], "does not go with --per-step"),
    (["--quick", "--size", "sweep"], "give one"),
    (["--optimizers", "keras.Nope"], "unknown optimizer"),
    (["--steps", "0"], "must be an integer >= 1"),
])
def test_per_step_rejects_what_it_cannot_run(argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(["bench", "speed", "--per-step", *argv])


@pytest.mark.parametrize("argv", [["--size", "sweep"], ["--steps", "5"]])
def test_per_step_options_need_per_step(argv):
    with pytest.raises(SystemExit, match=f"{argv[0]} belongs to --per-step"):
        cli.main(["bench", "speed", *argv])


@pytest.mark.slow
def test_bench_speed_times_shampoo_on_matrices_and_says_why_not_on_vectors(tmp_path, capsys):
    cli.main(["bench", "speed", "--quick", "--rounds", "1", "--optimizers", "Shampoo", "--workloads", "100x1000",
              "20x256x256", "--modes", "graph", "--no-fit", "--output", str(tmp_path)])
    payload = json.loads((tmp_path / "speed.json").read_text())
    assert [(r["optimizer"], r["workload"]) for r in payload["results"]] == [("Shampoo", "20x256x256")]
    assert payload["results"][0]["ratio"] > 0 and payload["results"][0]["state_slots"] == 2
    (skip,) = payload["skipped"]
    assert (skip["optimizer"], skip["workload"]) == ("Shampoo", "100x1000") and "GiB" in skip["reason"]
    assert "not timed: Shampoo on 100x1000: vectors" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_speed_per_step_writes_rows(tmp_path, capsys):
    cli.main(["bench", "speed", "--per-step", "--size", "sweep", "--steps", "2", "--rounds", "1", "--optimizers", "Muon",
              "--modes", "graph", "--output", str(tmp_path)])
    (row,) = json.loads((tmp_path / "per_step.json").read_text())["per_step"]
    assert (row["optimizer"], row["reference"], row["workload"], row["size"], row["mode"]) == (
        "Muon", "keras.AdamW", "gpt", "sweep", "graph")
    assert row["steps"] == 2 and row["parameters"] > 300_000 and row["ratio"] > 0 and row["ms_per_step"] > 0
    assert row["cpu_ratio"] > 0 and row["cpu_ms_per_step"] > 0 and row["warmup_s"] > 0
    # Muon's momentum on every variable, AdamW's velocity on the embeddings, head and vectors.
    assert 4 < row["state_bytes_per_parameter"] < 8
    assert "model.fit per training step" in capsys.readouterr().out
