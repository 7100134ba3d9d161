import numpy as np
import pytest
from schedules.schedule_testing import (
    assert_close,
    evaluate,
    from_torch,
    torch_config_ids,
    torch_rates,
)

from tfoptim.schedules import StepDecay


@pytest.mark.parametrize("config_id", torch_config_ids("StepLR"))
def test_matches_torch_step_lr_at_every_step(config_id):
    expected = torch_rates(config_id)
    assert_close(evaluate(from_torch(config_id), np.arange(expected.size)), expected)


def test_counts_decays_exactly_for_int64_steps_past_int32():
    schedule = StepDecay(1.0, step_size=10**9, gamma=0.5)
    steps = [10**9 - 1, 10**9, 5 * 10**9 - 1, 5 * 10**9]
    assert_close(evaluate(schedule, steps), [1.0, 0.5, 0.5**4, 0.5**5])
