import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from schedules.schedule_testing import assert_close
from tfoptim.schedules import OneCycle, StepDecay, plot, values


def test_values_takes_a_count_or_explicit_steps():
    schedule = StepDecay(1.0, 2, 0.5)
    assert_close(values(schedule, 5), [1.0, 1.0, 0.5, 0.5, 0.25])
    assert_close(values(schedule, [7, 0, 2**40]), [0.125, 1.0, 0.0])
    assert values(schedule, 3).dtype == np.float32


class BranchingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Python control flow on the step: cannot take a vector of steps."""

    def __call__(self, step):
        return 0.1 if int(step) < 3 else 0.01


def test_values_falls_back_to_one_step_at_a_time():
    assert_close(values(BranchingSchedule(), 5), [0.1, 0.1, 0.1, 0.01, 0.01])
    assert_close(values(lambda step: 0.5, 3), [0.5, 0.5, 0.5])


@pytest.mark.parametrize(
    "steps, message",
    [
        (0, r"`steps` must be >= 1"),
        ([], r"non-empty 1-D sequence of integers"),
        ([0.5, 1.5], r"non-empty 1-D sequence of integers"),
        ([[1, 2]], r"non-empty 1-D sequence of integers"),
        ([3, -1], r"steps >= 0"),
    ],
)
def test_values_rejects_bad_steps(steps, message):
    with pytest.raises(ValueError, match=message):
        values(StepDecay(1.0, 2), steps)


def test_plot_writes_a_small_png(tmp_path):
    path = tmp_path / "one_cycle.png"
    figure = plot(OneCycle(0.1, 200), 250, path)
    assert isinstance(figure, Figure)
    assert figure.axes[0].get_title() == "OneCycle"
    line = figure.axes[0].lines[0]
    assert_close(line.get_ydata(), values(OneCycle(0.1, 200), 250))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (320, 200)


def test_plot_without_a_path_only_returns_the_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = plot(StepDecay(1.0, 2), [0, 5, 10], title="halving")
    assert figure.axes[0].get_title() == "halving"
    assert len(plot(StepDecay(1.0, 2), [3]).axes[0].lines[0].get_xdata()) == 1
    assert list(tmp_path.iterdir()) == []
