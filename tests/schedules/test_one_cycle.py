import numpy as np
import pytest
from schedules.schedule_testing import (
    assert_close,
    evaluate,
    from_torch,
    torch_config_ids,
    torch_rates,
)

from tfoptim.schedules import OneCycle


@pytest.mark.parametrize("config_id", torch_config_ids("OneCycleLR"))
def test_matches_torch_one_cycle_lr_at_every_step_of_the_cycle(config_id):
    schedule = from_torch(config_id)
    expected = torch_rates(config_id)[: schedule.total_steps]
    assert_close(evaluate(schedule, np.arange(schedule.total_steps)), expected)


@pytest.mark.parametrize("config_id", torch_config_ids("OneCycleLR"))
def test_holds_the_final_rate_after_the_cycle(config_id):
    # PyTorch raises past total_steps and, at total_steps itself, extrapolates the last phase
    # (the recorded value is below the final rate, negative for "linear"); tfoptim holds.
    schedule = from_torch(config_id)
    final = schedule.max_learning_rate / schedule.div_factor / schedule.final_div_factor
    steps = schedule.total_steps + np.array([0, 1, 2, 1000, 10**7])
    assert_close(evaluate(schedule, steps), np.full(steps.shape, final))
    assert torch_rates(config_id)[schedule.total_steps] != pytest.approx(final)


def test_three_phase_returns_to_the_initial_rate_before_annealing():
    schedule = OneCycle(1.0, 100, pct_start=0.25, three_phase=True, div_factor=10.0)
    rates = evaluate(schedule, [0, 24, 48, 99])
    assert_close(rates, [0.1, 1.0, 0.1, 0.1 / 1e4])
