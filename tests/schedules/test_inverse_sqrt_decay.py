import numpy as np
from schedules.schedule_testing import assert_close, evaluate

from tfoptim.schedules import InverseSqrtDecay


def transformer_reference(step, peak, warmup):
    """Vaswani et al. 2017, section 5.3: ``d_model**-0.5 * min(step**-0.5, step *
    warmup**-1.5)``, rescaled to peak at ``step == warmup``: ``peak * min(step / warmup,
    sqrt(warmup / step))``; 0 at step 0."""
    step = np.asarray(step, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return peak * np.minimum(step / warmup, np.sqrt(warmup / step))


def test_matches_the_transformer_schedule_at_every_step():
    steps = np.concatenate([np.arange(5000), [10**6, 10**9, 2**31 - 1]])
    expected = transformer_reference(steps, 7e-4, 4000)
    assert_close(evaluate(InverseSqrtDecay(7e-4, 4000), steps), expected)


def test_one_warmup_step():
    assert_close(evaluate(InverseSqrtDecay(1.0, 1), [0, 1, 4, 100]), [0.0, 1.0, 0.5, 0.1])
