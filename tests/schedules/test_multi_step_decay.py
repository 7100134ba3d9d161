import numpy as np
import pytest
from schedules.schedule_testing import (
    assert_close,
    evaluate,
    from_torch,
    torch_config_ids,
    torch_rates,
)

from tfoptim.schedules import MultiStepDecay


@pytest.mark.parametrize("config_id", torch_config_ids("MultiStepLR"))
def test_matches_torch_multi_step_lr_at_every_step(config_id):
    expected = torch_rates(config_id)
    assert_close(evaluate(from_torch(config_id), np.arange(expected.size)), expected)


def test_without_milestones_is_constant():
    assert_close(evaluate(MultiStepDecay(0.3, []), [0, 1, 10**6]), [0.3, 0.3, 0.3])
