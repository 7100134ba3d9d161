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
    # The end-to-end figure: model.fit steps per second on both digits models.
    assert sorted(f["model"] for f in payload["fit"]) == ["cnn", "mlp"]
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
