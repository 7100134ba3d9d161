"""Shared by the schedule tests: evaluation on step vectors, the PyTorch fixture, examples.

Tolerance: the schedules compute in float32, the references are float64, and they must
agree to a relative 1e-6 (about 8 float32 ulps) at every step. Values that are exactly 0 in
the reference must be exactly 0.
"""

import json
import pathlib

import keras
import numpy as np
import tensorflow as tf

from tfoptim import schedules

RTOL = 1e-6
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "schedules"


def evaluate(schedule, steps, dtype="int64", jit_compile=False):
    """The schedule at every step of ``steps``, as one vector inside one ``tf.function``."""
    function = tf.function(schedule, jit_compile=jit_compile)
    result = function(tf.constant(np.asarray(steps), dtype=dtype)).numpy()
    assert result.dtype == np.float32, result.dtype
    return result.astype(np.float64)


def assert_close(actual, expected, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# -- PyTorch fixture ---------------------------------------------------------------------------

_MANIFEST = json.loads((FIXTURES / "torch_schedules.json").read_text())
_ARRAYS = np.load(FIXTURES / "torch_schedules.npz")

# torch argument name -> tfoptim argument name, where they differ.
_RENAMES = {
    "max_lr": "max_learning_rate",
    "base_lr": "base_learning_rate",
}
_CLASSES = {
    "OneCycleLR": schedules.OneCycle,
    "CyclicLR": schedules.CyclicalLearningRate,
    "StepLR": schedules.StepDecay,
    "MultiStepLR": schedules.MultiStepDecay,
}


def torch_config_ids(scheduler):
    """The fixture's config ids recorded from ``torch.optim.lr_scheduler.<scheduler>``."""
    return [key for key, entry in _MANIFEST["configs"].items() if entry["scheduler"] == scheduler]


def torch_rates(config_id):
    """PyTorch's rate after ``i`` scheduler steps, ``i = 0 .. steps``, float64."""
    return _ARRAYS[config_id]


def from_torch(config_id):
    """The tfoptim schedule with the same arguments as the recorded PyTorch scheduler."""
    entry = _MANIFEST["configs"][config_id]
    kwargs = {_RENAMES.get(key, key): value for key, value in entry["kwargs"].items()}
    if entry["scheduler"] in ("StepLR", "MultiStepLR"):
        kwargs["initial_learning_rate"] = entry["optimizer_lr"]
    return _CLASSES[entry["scheduler"]](**kwargs)


def torch_version():
    return _MANIFEST["torch_version"]


# -- one or more examples of every public schedule, for the shared contract tests --------------

EXAMPLES = {
    "one_cycle": lambda: schedules.OneCycle(0.1, total_steps=1000),
    "one_cycle_three_phase_linear": lambda: schedules.OneCycle(
        0.01, 333, pct_start=0.37, anneal_strategy="linear", three_phase=True
    ),
    "cyclical_triangular": lambda: schedules.CyclicalLearningRate(1e-3, 6e-3, 200),
    "cyclical_triangular2_asymmetric": lambda: schedules.CyclicalLearningRate(
        0.01, 0.1, 30, step_size_down=70, mode="triangular2"
    ),
    "cyclical_exp_range": lambda: schedules.CyclicalLearningRate(
        1e-3, 6e-3, 100, mode="exp_range", gamma=0.9995
    ),
    "step_decay": lambda: schedules.StepDecay(0.1, step_size=30, gamma=0.5),
    "multi_step_decay": lambda: schedules.MultiStepDecay(0.1, [30, 80, 400]),
    "warmup_stable_decay_linear": lambda: schedules.WarmupStableDecay(1e-3, 100, 400, 300),
    "warmup_stable_decay_cosine": lambda: schedules.WarmupStableDecay(
        1e-3, 100, 400, 300, min_learning_rate=1e-5, decay_type="cosine"
    ),
    "warmup_stable_decay_1_sqrt": lambda: schedules.WarmupStableDecay(
        1e-3, 0, 400, 300, decay_type="1-sqrt"
    ),
    "inverse_sqrt_decay": lambda: schedules.InverseSqrtDecay(1e-3, 400),
    "linear_warmup_constant": lambda: schedules.LinearWarmup(0.01, 100, 1e-4),
    "linear_warmup_cosine_restarts": lambda: schedules.LinearWarmup(
        keras.optimizers.schedules.CosineDecayRestarts(0.1, 200, t_mul=2.0, alpha=0.01), 100
    ),
    "sequential_nested": lambda: schedules.SequentialSchedule(
        [
            schedules.LinearWarmup(0.05, 50),
            schedules.SequentialSchedule([0.05, schedules.StepDecay(0.05, 100)], [150]),
            keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.5),
        ],
        [200, 700],
    ),
}

# Past every boundary above, with a few far steps that float32 cannot count exactly.
CONTRACT_STEPS = np.concatenate([np.arange(1300), [10**5, 2**24 + 1, 2**31 - 1]])
