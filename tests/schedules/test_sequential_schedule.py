import numpy as np
from schedules.schedule_testing import assert_close, evaluate, from_torch, torch_rates

from tfoptim.schedules import SequentialSchedule, StepDecay


def join_schedules(schedules, boundaries):
    """optax's ``join_schedules``, in NumPy: schedule k runs from ``boundaries[k - 1]`` and sees
    ``step - boundaries[k - 1]``."""

    def schedule(step):
        output = schedules[0](step)
        for boundary, piece in zip(boundaries, schedules[1:], strict=True):
            output = np.where(step < boundary, output, piece(step - boundary))
        return output

    return schedule


def recorded(config_id):
    """A PyTorch fixture as a function of the step (clipped: ``np.where`` evaluates both arms)."""
    rates = torch_rates(config_id)
    return lambda step: rates[np.clip(step, 0, rates.size - 1)]


def test_matches_optax_join_schedules_at_every_step():
    schedule = SequentialSchedule(
        [from_torch("step_7_gamma_0.5"), from_torch("onecycle_short"), 0.003], [60, 70]
    )
    reference = join_schedules(
        [
            recorded("step_7_gamma_0.5"),
            recorded("onecycle_short"),
            lambda s: np.full(s.shape, 0.003),
        ],
        [60, 70],
    )
    steps = np.arange(200)
    assert_close(evaluate(schedule, steps), reference(steps))


def test_nested_sequences_count_from_their_own_start():
    inner = SequentialSchedule([0.5, StepDecay(0.2, 10)], [5])
    outer = SequentialSchedule([1.0, inner], [100])
    steps = np.arange(130)
    expected = np.where(
        steps < 100, 1.0, np.where(steps < 105, 0.5, 0.2 * 0.1 ** ((steps - 105) // 10))
    )
    assert_close(evaluate(outer, steps), expected)


def test_a_single_schedule_needs_no_boundaries():
    steps = np.arange(100)
    assert_close(evaluate(SequentialSchedule([0.25], []), steps), np.full(100, 0.25))
