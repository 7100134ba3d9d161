"""The realistic suite's extra candidates and the ResNet without BatchNorm.

The extras are checked by what they build (the wrapper, its settings, the inner optimizer and
its rate), bfloat16 moments by their state bytes (two 2-byte moments per parameter, against
Adam's two 4-byte ones); the multiplied budget on the suite's own machinery with a stand-in
for training, so the steps each candidate is given and how its curve is judged are checked
without training; the BatchNorm-free ResNet by its layers, its parameter count written out
from its layer shapes, and SkipInit's identity blocks at initialisation.
"""

import json
import math

import numpy as np
import pytest

import tfoptim.optimizers as to
from tfoptim import cli
from tfoptim.benchmarks import realistic
from tfoptim.benchmarks.workloads import extra_workloads, get_workload, resnet, workloads


def test_extras_are_named_apart_from_the_default_candidates():
    extras = realistic.extra_candidates()
    assert set(extras).isdisjoint(realistic.candidates())
    assert set(extras) == {"SAM(AdamW)", "ASAM(AdamW)", "SAM(AdamW)+2x-steps", "ASAM(AdamW)+2x-steps",
                           "SAM(AdamW)+same-batch", "AdamW(moment_dtype=bfloat16)", "SGD(momentum=0.9)",
                           "AGC(SGD(momentum=0.9))", "AGC(AdamW)"}
    assert {n: c.budget for n, c in extras.items() if c.budget != 1} == {
        "SAM(AdamW)+2x-steps": 2, "ASAM(AdamW)+2x-steps": 2, "SAM(AdamW)+same-batch": 2}
    assert {n: c.repeat_batches for n, c in extras.items() if c.repeat_batches != 1} == {"SAM(AdamW)+same-batch": 2}


def test_same_batch_feeds_each_batch_twice_in_a_row():
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((np.arange(12.0), np.arange(12))).batch(3)
    fed = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in realistic.fed(batches, 2)]
    plain = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in batches]
    assert fed == [b for b in plain for _ in range(2)]


@pytest.mark.parametrize("name, adaptive, rho", [("SAM(AdamW)", False, realistic.SAM_RHO),
                                                  ("ASAM(AdamW)+2x-steps", True, realistic.ASAM_RHO),
                                                  ("SAM(AdamW)+same-batch", False, realistic.SAM_RHO)])
def test_sam_candidates_wrap_adamw_at_the_swept_rate(name, adaptive, rho):
    optimizer = realistic.extra_candidates()[name].make(3e-3, 100)
    assert isinstance(optimizer, to.SAM) and (optimizer.adaptive, optimizer.rho) == (adaptive, rho)
    inner = optimizer.inner_optimizer
    assert type(inner) is to.AdamW and float(inner.learning_rate) == pytest.approx(3e-3)


@pytest.mark.parametrize("name, inner_type, momentum", [("AGC(SGD(momentum=0.9))", to.SGD, 0.9),
                                                         ("AGC(AdamW)", to.AdamW, None)])
def test_agc_candidates_clip_at_the_defaults(name, inner_type, momentum):
    candidate = realistic.extra_candidates()[name]
    optimizer = candidate.make(candidate.default_learning_rate * 3, 100)
    assert isinstance(optimizer, to.AdaptiveGradientClipping)
    assert (optimizer.clip_factor, optimizer.eps) == (0.01, 1e-3)
    inner = optimizer.inner_optimizer
    assert type(inner) is inner_type
    assert float(inner.learning_rate) == pytest.approx(candidate.default_learning_rate * 3)
    if momentum is not None:
        assert inner.momentum == momentum


@pytest.mark.parametrize("name, expected", [("AdamW(moment_dtype=bfloat16)", 4.0), ("SGD(momentum=0.9)", 4.0)])
def test_extra_state_bytes_per_parameter(name, expected):
    """Two bfloat16 moments: 4 bytes a parameter, half of AdamW's 8; momentum: one float32."""
    state, parameters = realistic.state_bytes(realistic.extra_candidates()[name], "resnet", "sweep")
    assert state / parameters == pytest.approx(expected, abs=0.01)


def fake_train(calls, final):
    """A stand-in for :func:`realistic.train`: records its budget; the metric climbs linearly
    from 0 to ``final[name]`` over the run's evaluations; 0.01 CPU seconds per step."""

    def train(workload, size, candidate, rate, seed, steps, every, cpu_limit=math.inf):
        calls.append((candidate.name, seed, steps, every))
        checks = steps // every
        return list(np.linspace(0.0, final[candidate.name], checks + 1)), 0.02, 0.01, None

    return train


def test_a_multiplied_budget_runs_more_steps_and_is_judged_in_fit_steps(monkeypatch, tmp_path):
    calls = []
    final = {realistic.BASELINE: 0.8, "SAM(AdamW)+2x-steps": 0.9, "AdamW": 0.7}
    monkeypatch.setattr(realistic, "train", fake_train(calls, final))
    payload = realistic.run_suite(optimizers=[realistic.BASELINE, "SAM(AdamW)+2x-steps", "AdamW"],
                                  workloads=["resnet_nobn"], tiers=("sweep",), seeds=(0, 1), sweep=(1.0,),
                                  progress=False, with_memory=False)
    steps = get_workload("resnet_nobn").sizes["sweep"].steps
    every = steps // realistic.CHECKS
    assert set(calls) == {(n, s, b * steps, b * every) for n, b in ((realistic.BASELINE, 1), ("AdamW", 1),
                                                                     ("SAM(AdamW)+2x-steps", 2)) for s in (0, 1)}
    entry = payload["tiers"]["sweep"]
    # The baseline defines the target (0.8) and reaches it at its last evaluation.
    assert entry["problems"]["resnet_nobn"]["target"] == pytest.approx(0.8)
    tuned = {r["optimizer"]: r for r in entry["settings"] if r["tuned"]}
    checks = steps // every
    # 0.9 * k / checks >= 0.8 first at k = ceil(checks * 8 / 9), counted in fit steps of the doubled interval.
    first = math.ceil(checks * 8 / 9 - 1e-9)
    assert tuned["SAM(AdamW)+2x-steps"]["steps_to_target"] == first * 2 * every
    assert tuned["SAM(AdamW)+2x-steps"]["seconds"] == pytest.approx(0.01 * 2 * every * checks)
    assert (tuned["SAM(AdamW)+2x-steps"]["budget"], tuned["SAM(AdamW)+2x-steps"]["every"]) == (2, 2 * every)
    assert tuned[realistic.BASELINE]["steps_to_target"] == checks * every and "every" not in tuned[realistic.BASELINE]
    assert tuned["AdamW"]["status"] == "not reached"
    assert payload["optimizers"]["SAM(AdamW)+2x-steps"]["budget"] == 2
    assert "budget" not in payload["optimizers"]["AdamW"]
    realistic.write(payload, tmp_path)
    assert "| SAM(AdamW)+2x-steps |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "curves_resnet_nobn.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["tiers"]["sweep"]["problems"]["resnet_nobn"]


def test_unknown_optimizers_name_the_extras(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown optimizers \['SAM\(Adam\)'\].*the extras"):
        realistic.run_suite(optimizers=["SAM(Adam)"], workloads=["resnet"], tiers=("sweep",), progress=False)


def test_cli_takes_the_extra_workload_by_name_only_and_no_memory(monkeypatch, tmp_path):
    assert list(workloads()) == ["gpt", "resnet", "recsys"] and list(extra_workloads()) == ["resnet_nobn"]
    seen = {}

    def run_suite(**kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(realistic, "run_suite", run_suite)
    with pytest.raises(SystemExit, match="stop here"):
        cli.main(["bench", "convergence", "--suite", "realistic", "--workloads", "resnet_nobn", "--optimizers",
                  "AGC(AdamW)", "--no-memory", "--output", str(tmp_path)])
    assert seen["workloads"] == ["resnet_nobn"] and seen["optimizers"] == ["AGC(AdamW)"]
    assert seen["with_memory"] is False
    with pytest.raises(SystemExit, match="exclude each other"):
        cli.main(["bench", "convergence", "--suite", "realistic", "--memory-only", "--no-memory"])
    with pytest.raises(SystemExit, match="--no-memory belongs to --suite realistic"):
        cli.main(["bench", "convergence", "--no-memory"])


def _resnet_nobn_parameters(blocks, width):
    """Convolutions with biases, no BatchNorm, one gain per block."""
    total = 3 * 3 * 1 * width + width  # stem
    channels = width
    for stage in range(3):
        filters = width * 2**stage
        for block in range(blocks):
            total += 9 * channels * filters + filters + 9 * filters * filters + filters + 1
            if stage > 0 and block == 0:
                total += channels * filters + filters  # 1 x 1 shortcut
            channels = filters
    return total + channels * resnet.CLASSES + resnet.CLASSES


def test_resnet_without_batchnorm_starts_with_identity_blocks():
    import keras

    model = get_workload("resnet_nobn").build_model("sweep", seed=0)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert sum(math.prod(v.shape) for v in model.trainable_variables) == _resnet_nobn_parameters(1, 8)
    gains = [layer for layer in model.layers if isinstance(layer, resnet.SkipGain)]
    assert len(gains) == 3 and all(float(g.gain) == 0.0 for g in gains)
    # SkipInit: at a zero gain a block's branch does not reach the output, whatever its kernels...
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    before = model(x).numpy()
    conv = model.get_layer("stage1_block0_conv2")
    conv.kernel.assign(conv.kernel * 3.0)
    np.testing.assert_array_equal(model(x).numpy(), before)
    # ...and the gain's gradient is not zero, so the branch comes in as training starts.
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    assert float(tf.abs(tape.gradient(loss, gains[1].gain))) > 0
    # The workload with BatchNorm is unchanged, and the sizes match it apart from the model option
    # and the targets (those are the model with BatchNorm's).
    plain = get_workload("resnet")
    for size, spec in get_workload("resnet_nobn").sizes.items():
        assert spec.model == {**plain.sizes[size].model, "batch_norm": False}
        assert spec.target is None
        assert (spec.data, spec.steps) == (plain.sizes[size].data, plain.sizes[size].steps)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ASAM(AdamW)+2x-steps", "AdamW(moment_dtype=bfloat16)", "AGC(SGD(momentum=0.9))"])
def test_extras_train_on_the_workloads(name):
    """A few real ``fit`` steps of each kind of extra (the ResNet without BatchNorm for AGC)."""
    workload = get_workload("resnet_nobn" if name.startswith("AGC") else "resnet")
    candidate = realistic.extra_candidates()[name]
    rate = candidate.default_learning_rate
    curve, per_step, cpu_per_step, error = realistic.train(workload, "quick", candidate, rate, 0, 4, 2)
    assert error is None and len(curve) == 3 and all(0 <= v <= 1 for v in curve) and cpu_per_step > 0
