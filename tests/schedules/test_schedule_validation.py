"""Bad arguments fail at construction with a ValueError naming the argument and its range."""

import numpy as np
import pytest

from tfoptim.schedules import (
    CyclicalLearningRate,
    InverseSqrtDecay,
    LinearWarmup,
    MultiStepDecay,
    OneCycle,
    SequentialSchedule,
    StepDecay,
    WarmupStableDecay,
)

# id -> (constructor, kwargs, regex the message must match)
CASES = {
    "one_cycle_pct_start_zero": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, pct_start=0.0),
        r"`pct_start` must be in \(0\.0, 1\.0\)",
    ),
    "one_cycle_pct_start_one": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, pct_start=1.0),
        r"`pct_start` must be in \(0\.0, 1\.0\)",
    ),
    "one_cycle_pct_start_three_phase": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, pct_start=0.6, three_phase=True),
        r"`pct_start` must be in \(0\.0, 0\.5\]",
    ),
    "one_cycle_empty_warmup": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=10, pct_start=0.1),
        r"`pct_start \* total_steps` must be > 1",
    ),
    "one_cycle_negative_total_steps": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=-5),
        r"`total_steps` must be an integer >= 2",
    ),
    "one_cycle_fractional_total_steps": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100.5),
        r"`total_steps` must be an integer",
    ),
    "one_cycle_zero_max": (
        OneCycle,
        dict(max_learning_rate=0.0, total_steps=100),
        r"`max_learning_rate` must be in \(0\.0, inf\]",
    ),
    "one_cycle_anneal_strategy": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, anneal_strategy="cosine"),
        r"`anneal_strategy` must be one of \['cos', 'linear'\]",
    ),
    "one_cycle_three_phase_not_bool": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, three_phase="yes"),
        r"`three_phase` must be True or False",
    ),
    "one_cycle_div_factor": (
        OneCycle,
        dict(max_learning_rate=0.1, total_steps=100, div_factor=0),
        r"`div_factor` must be in \(0\.0, inf\]",
    ),
    "cyclical_max_below_base": (
        CyclicalLearningRate,
        dict(base_learning_rate=0.1, max_learning_rate=0.01, step_size_up=10),
        r"`max_learning_rate` must be >= `base_learning_rate`",
    ),
    "cyclical_negative_base": (
        CyclicalLearningRate,
        dict(base_learning_rate=-0.1, max_learning_rate=0.01, step_size_up=10),
        r"`base_learning_rate` must be in \[0\.0, inf\]",
    ),
    "cyclical_zero_step_size": (
        CyclicalLearningRate,
        dict(base_learning_rate=0.0, max_learning_rate=0.01, step_size_up=0),
        r"`step_size_up` must be an integer >= 1",
    ),
    "cyclical_negative_step_size_down": (
        CyclicalLearningRate,
        dict(base_learning_rate=0.0, max_learning_rate=0.01, step_size_up=5, step_size_down=-5),
        r"`step_size_down` must be an integer >= 1",
    ),
    "cyclical_mode": (
        CyclicalLearningRate,
        dict(base_learning_rate=0.0, max_learning_rate=0.01, step_size_up=5, mode="exp"),
        r"`mode` must be one of",
    ),
    "cyclical_gamma": (
        CyclicalLearningRate,
        dict(base_learning_rate=0.0, max_learning_rate=0.01, step_size_up=5, gamma=1.5),
        r"`gamma` must be in \(0\.0, 1\.0\]",
    ),
    "step_decay_step_size": (
        StepDecay,
        dict(initial_learning_rate=0.1, step_size=0),
        r"`step_size` must be an integer >= 1",
    ),
    "step_decay_gamma": (
        StepDecay,
        dict(initial_learning_rate=0.1, step_size=10, gamma=-0.5),
        r"`gamma` must be in \(0\.0, inf\]",
    ),
    "step_decay_nan": (
        StepDecay,
        dict(initial_learning_rate=float("nan"), step_size=10),
        r"`initial_learning_rate` must be a finite number",
    ),
    "multi_step_not_increasing": (
        MultiStepDecay,
        dict(initial_learning_rate=0.1, milestones=[30, 30]),
        r"`milestones` must be strictly increasing; milestones\[1\]=30 follows milestones\[0\]=30",
    ),
    "multi_step_negative": (
        MultiStepDecay,
        dict(initial_learning_rate=0.1, milestones=[-1, 30]),
        r"`milestones\[0\]` must be an integer >= 0",
    ),
    "multi_step_not_a_list": (
        MultiStepDecay,
        dict(initial_learning_rate=0.1, milestones=30),
        r"`milestones` must be a list of integers",
    ),
    "wsd_negative_warmup": (
        WarmupStableDecay,
        dict(peak_learning_rate=0.1, warmup_steps=-1, stable_steps=0, decay_steps=10),
        r"`warmup_steps` must be an integer >= 0",
    ),
    "wsd_zero_decay": (
        WarmupStableDecay,
        dict(peak_learning_rate=0.1, warmup_steps=1, stable_steps=0, decay_steps=0),
        r"`decay_steps` must be an integer >= 1",
    ),
    "wsd_min_above_peak": (
        WarmupStableDecay,
        dict(
            peak_learning_rate=0.1,
            warmup_steps=1,
            stable_steps=0,
            decay_steps=10,
            min_learning_rate=0.2,
        ),
        r"`min_learning_rate` must be in \[0\.0, 0\.1\]",
    ),
    "wsd_decay_type": (
        WarmupStableDecay,
        dict(
            peak_learning_rate=0.1,
            warmup_steps=1,
            stable_steps=0,
            decay_steps=10,
            decay_type="sqrt",
        ),
        r"`decay_type` must be one of \['linear', 'cosine', '1-sqrt'\]",
    ),
    "inverse_sqrt_zero_warmup": (
        InverseSqrtDecay,
        dict(peak_learning_rate=0.1, warmup_steps=0),
        r"`warmup_steps` must be an integer >= 1",
    ),
    "linear_warmup_negative_steps": (
        LinearWarmup,
        dict(schedule=0.1, warmup_steps=-10),
        r"`warmup_steps` must be an integer >= 0",
    ),
    "linear_warmup_callable": (
        LinearWarmup,
        dict(schedule=lambda step: 0.1, warmup_steps=10),
        r"`schedule` must be a keras.optimizers.schedules.LearningRateSchedule or a float >= 0",
    ),
    "sequential_count_mismatch": (
        SequentialSchedule,
        dict(schedules=[0.1, 0.01, 0.001], boundaries=[100]),
        r"one more entry than `boundaries`.*3 schedules and 1 boundaries",
    ),
    "sequential_not_increasing": (
        SequentialSchedule,
        dict(schedules=[0.1, 0.01, 0.001], boundaries=[200, 100]),
        r"`boundaries` must be strictly increasing",
    ),
    "sequential_zero_boundary": (
        SequentialSchedule,
        dict(schedules=[0.1, 0.01], boundaries=[0]),
        r"`boundaries\[0\]` must be an integer >= 1",
    ),
    "sequential_bad_member": (
        SequentialSchedule,
        dict(schedules=[0.1, "cosine"], boundaries=[10]),
        r"`schedules\[1\]` must be a keras.optimizers.schedules.LearningRateSchedule",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_rejects_with_a_message_naming_the_argument(case):
    cls, kwargs, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_accepts_integral_floats_and_numpy_integers_as_step_counts():
    schedule = OneCycle(0.1, total_steps=1e3, pct_start=0.25)
    assert schedule.get_config()["total_steps"] == 1000
    assert MultiStepDecay(0.1, np.array([3, 7])).get_config()["milestones"] == [3, 7]
