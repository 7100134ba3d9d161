import numpy as np
import pytest
from schedules.schedule_testing import assert_close, evaluate

from tfoptim.schedules import WarmupStableDecay


def wsd_reference(step, peak, warmup, stable, decay, minimum, decay_type):
    """Warmup-stable-decay in float64, as written in Hu et al. 2024 (MiniCPM) for the linear
    and cosine decays and Hägele et al. 2024, eq. 1, for "1-sqrt"; the same formula as
    ``transformers.get_wsd_schedule`` (with ``min_lr_ratio = minimum / peak``)."""
    step = np.asarray(step, dtype=np.float64)
    progress = np.clip((step - warmup - stable) / decay, 0.0, 1.0)
    shape = {
        "linear": 1.0 - progress,
        "cosine": 0.5 * (1.0 + np.cos(np.pi * progress)),
        "1-sqrt": 1.0 - np.sqrt(progress),
    }[decay_type]
    decayed = minimum + (peak - minimum) * shape
    warm = peak * step / warmup if warmup else np.full_like(step, peak)
    return np.where(step < warmup, warm, np.where(step < warmup + stable, peak, decayed))


PHASES = {
    "all_phases": (3e-4, 100, 400, 300, 0.0),
    "no_warmup_with_floor": (1.0, 0, 50, 1000, 1e-3),
    "no_stable_stretch": (0.02, 7, 0, 13, 0.002),
}


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("phases", PHASES)
def test_matches_the_reference_formula_at_every_step(decay_type, phases):
    peak, warmup, stable, decay, minimum = PHASES[phases]
    schedule = WarmupStableDecay(peak, warmup, stable, decay, minimum, decay_type)
    steps = np.arange(warmup + stable + decay + 100)
    expected = wsd_reference(steps, peak, warmup, stable, decay, minimum, decay_type)
    assert_close(evaluate(schedule, steps), expected)
