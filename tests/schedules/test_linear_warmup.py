import keras
import numpy as np
from schedules.schedule_testing import assert_close, evaluate, from_torch, torch_rates

from tfoptim.schedules import LinearWarmup, StepDecay


def ramp_then(step, warmup, initial, after):
    """optax's ``join_schedules([linear_schedule(initial, after(0), warmup), after],
    [warmup])`` in NumPy: a linear ramp, then ``after`` counting from the ramp's end."""
    step = np.asarray(step)
    ramp = initial + (after(np.zeros(1))[0] - initial) * step / warmup
    return np.where(step < warmup, ramp, after(np.maximum(step - warmup, 0)))


def test_constant_target_is_optax_linear_schedule():
    steps = np.arange(300)
    expected = ramp_then(steps, 120, 1e-4, lambda s: np.full(s.shape, 0.01))
    assert_close(evaluate(LinearWarmup(0.01, 120, 1e-4), steps), expected)


def test_wrapped_one_cycle_starts_its_cycle_after_the_warmup():
    one_cycle = from_torch("onecycle_cos")
    torch_cycle = torch_rates("onecycle_cos")[:1000]
    steps = np.arange(1050)
    expected = ramp_then(steps, 50, 0.0, lambda s: torch_cycle[s.astype(int)])
    assert_close(evaluate(LinearWarmup(one_cycle, 50), steps), expected)


def sgdr_reference(step, initial, first_period, t_mul, m_mul, alpha):
    """SGDR (Loshchilov & Hutter 2017, eq. 5) with periods ``first_period * t_mul**i`` and
    peaks ``initial * m_mul**i``, the parametrization of Keras's ``CosineDecayRestarts``."""
    rates = []
    for s in np.asarray(step, dtype=np.float64):
        restart, start, period = 0, 0.0, float(first_period)
        while s >= start + period:
            start, period, restart = start + period, period * t_mul, restart + 1
        cosine = m_mul**restart * 0.5 * (1 + np.cos(np.pi * (s - start) / period))
        rates.append(initial * ((1 - alpha) * cosine + alpha))
    return np.array(rates)


def test_composes_with_keras_cosine_decay_restarts():
    restarts = keras.optimizers.schedules.CosineDecayRestarts(
        0.1, first_decay_steps=200, t_mul=2.0, m_mul=0.8, alpha=0.01
    )
    steps = np.arange(1600)
    expected = ramp_then(steps, 100, 0.0, lambda s: sgdr_reference(s, 0.1, 200, 2.0, 0.8, 0.01))
    # Keras computes 1 + cos(pi * x) in float32, which cancels where x nears 1 (just before
    # each restart): up to ~1e-8 absolute error there, hence the absolute tolerance.
    assert_close(evaluate(LinearWarmup(restarts, 100), steps), expected, atol=2e-8)


def test_zero_warmup_steps_runs_the_schedule_unchanged():
    wrapped = StepDecay(0.1, 7, 0.5)
    steps = np.arange(50)
    assert_close(evaluate(LinearWarmup(wrapped, 0, 0.5), steps), evaluate(wrapped, steps))
