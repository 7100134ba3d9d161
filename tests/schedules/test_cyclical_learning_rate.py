import numpy as np
import pytest
from schedules.schedule_testing import (
    assert_close,
    evaluate,
    from_torch,
    torch_config_ids,
    torch_rates,
)

from tfoptim.schedules import CyclicalLearningRate


@pytest.mark.parametrize("config_id", torch_config_ids("CyclicLR"))
def test_matches_torch_cyclic_lr_at_every_step(config_id):
    expected = torch_rates(config_id)
    assert_close(evaluate(from_torch(config_id), np.arange(expected.size)), expected)


def tfa_cyclical(step, initial, maximal, step_size, scale_fn, scale_mode):
    """TensorFlow Addons' ``CyclicalLearningRate.__call__`` (tfa.optimizers, 0.x), in NumPy."""
    cycle = np.floor(1 + step / (2 * step_size))
    x = np.abs(step / step_size - 2 * cycle + 1)
    mode_step = cycle if scale_mode == "cycle" else step
    return initial + (maximal - initial) * np.maximum(0, 1 - x) * scale_fn(mode_step)


TFA_MODES = {
    # mode -> (TFA class's scale_fn, scale_mode, gamma)
    "triangular": (lambda x: 1.0, "cycle", 1.0),
    "triangular2": (lambda x: 1 / (2.0 ** (x - 1)), "cycle", 1.0),
    "exp_range": (lambda x: 0.9993**x, "iterations", 0.9993),
}


@pytest.mark.parametrize("mode", TFA_MODES)
def test_matches_tensorflow_addons_cyclical_schedules(mode):
    scale_fn, scale_mode, gamma = TFA_MODES[mode]
    steps = np.arange(2500)
    expected = tfa_cyclical(steps.astype(np.float64), 1e-4, 1e-2, 125, scale_fn, scale_mode)
    schedule = CyclicalLearningRate(1e-4, 1e-2, 125, mode=mode, gamma=gamma)
    assert_close(evaluate(schedule, steps), expected)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_position_in_the_cycle_is_exact_far_beyond_float32_integers(dtype):
    # 2**30 + r is not a float32; the cycle position is taken in the step's integer dtype.
    schedule = CyclicalLearningRate(0.0, 1.0, step_size_up=3, step_size_down=4)
    offsets = np.arange(7)
    near = evaluate(schedule, offsets, dtype)
    far = evaluate(schedule, 7 * (2**30 // 7) + offsets, dtype)
    assert_close(far, near)
    assert_close(near, [0, 1 / 3, 2 / 3, 1, 3 / 4, 2 / 4, 1 / 4])
