"""SWA follows ``torch.optim.swa_utils.AveragedModel`` (torch 2.13.0, float64) and TF Addons'
``tfa.optimizers.SWA`` (0.23.0, TensorFlow 2.15; float32, the only precision it runs in).

References recorded once by ``tests/fixtures/record_averaging.py`` on 200 steps of
``tests/reference_problem.py``: the model's parameters and the average, at TF Addons' snapshot
steps. The inner optimizer is the exact PyTorch port (``tfoptim.compat.torch``) against torch,
Keras 3's built-in against TF Addons' legacy Keras 2 one.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from reference_problem import SHAPES
from tfoptim.compat import torch as torch_compat
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "averaging_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "averaging_trajectories.npz")
TORCH = sorted(k for k, c in MANIFEST["configs"].items() if "AveragedModel" in c["source"])
TFA = sorted(k for k, c in MANIFEST["configs"].items() if "tfa.optimizers.SWA" in c["source"])
# float64, the same formulas in another order: < 1e-13 relative after 200 steps.
RTOL = 1e-12
# float32: TF 2.15's fused legacy kernels against Keras 3's element-wise updates, and TF
# Addons' (average * n + theta) / (n + 1) against the incremental mean: a few float32 ulps per
# step, accumulated over 200 steps.
RTOL_FLOAT32 = 1e-5


def expected(config, step, kind):
    return [ARRAYS[f"{config}/step{step}/{kind}{i}"] for i in range(len(SHAPES))]


def check(config, make_inner, dtype, rtol):
    spec = MANIFEST["configs"][config]
    steps = MANIFEST["checkpoint_steps"]
    averaging = {k: spec[k] for k in ("start_averaging", "average_period") if k in spec}
    averaging.update(spec.get("kwargs", {}) if "inner_kwargs" in spec else {})
    # Before the first snapshot the references hold no average (TF Addons: zeros, torch: the
    # initial weights); tfoptim evaluates with the current weights then (tested below).
    for eval_step in [s for s in (10, 200) if s > averaging.get("start_averaging", 0)]:
        with floatx(dtype):
            optimizer = to.SWA(make_inner(spec), **averaging)
            ours = run(optimizer, [s for s in steps if s <= eval_step], dtype=dtype)
            average = optimizer.evaluation_values(optimizer._trainable_variables)
        for step, params in ours.items():
            assert_close(params, expected(config, step, "param"), rtol)
        assert_close([np.asarray(a) for a in average], expected(config, eval_step, "eval"), rtol)


@pytest.mark.parametrize("config", TORCH)
def test_matches_torch_averaged_model(config):
    def make_inner(spec):
        return getattr(torch_compat, spec["source"].split()[0].rsplit(".", 1)[1])(**spec["kwargs"])

    check(config, make_inner, "float64", RTOL)


@pytest.mark.parametrize("config", TFA)
def test_matches_tf_addons_float32(config):
    def make_inner(spec):
        name = spec["source"].rsplit(".", 1)[1].rstrip(")")
        return getattr(keras.optimizers, name)(**spec["inner_kwargs"])

    check(config, make_inner, "float32", RTOL_FLOAT32)


def test_average_is_the_mean_of_the_snapshots():
    """Snapshots after the steps with 0-based index 2, 5, 8 (start_averaging=2, period 3)."""
    with floatx("float64"):
        optimizer = to.SWA(keras.optimizers.SGD(0.05), start_averaging=2, average_period=3)
        trajectory = run(optimizer, range(1, 10))
        average = optimizer.evaluation_values(optimizer._trainable_variables)
    mean = [np.mean([trajectory[s][i] for s in (3, 6, 9)], axis=0) for i in range(len(SHAPES))]
    assert_close([np.asarray(a) for a in average], mean, 1e-15)


def test_before_the_first_snapshot_evaluation_uses_the_current_weights():
    with floatx("float64"):
        optimizer = to.SWA(keras.optimizers.SGD(0.05), start_averaging=5)
        (current,) = run(optimizer, (5,)).values()
        values = optimizer.evaluation_values(optimizer._trainable_variables)
    assert_close([np.asarray(v) for v in values], current, 0.0)


def test_assign_average_vars():
    with floatx("float64"):
        optimizer = to.SWA(keras.optimizers.SGD(0.05), average_period=4)
        run(optimizer, (20,))
        variables = optimizer._trainable_variables
        average = [np.asarray(v) for v in optimizer.evaluation_values(variables)]
        optimizer.assign_average_vars(variables)
    assert_close([v.numpy() for v in variables], average, 0.0)


@pytest.mark.parametrize(
    "make, name",
    [(lambda: to.SWA(keras.optimizers.SGD(), start_averaging=-1), "start_averaging"),
     (lambda: to.SWA(keras.optimizers.SGD(), average_period=0), "average_period"),
     (lambda: to.SWA(keras.optimizers.SGD(), average_period=1.5), "average_period"),
     (lambda: to.SWA(keras.optimizers.SGD(), weight_decay=0.1), "weight_decay"),
     (lambda: to.SWA(None), "optimizer")],
)
def test_invalid_arguments(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()
