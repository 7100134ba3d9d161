import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class InverseSqrtDecay(_base.Schedule):
    """Linear warm-up, then decay with the inverse square root of the step::

        lr = peak * step / warmup_steps            step < warmup_steps
             peak * sqrt(warmup_steps / step)      step >= warmup_steps

    which is ``peak * min(step / W, sqrt(W / step))``: the Transformer schedule of Vaswani et
    al., "Attention Is All You Need" (2017), section 5.3, with ``peak = d_model ** -0.5 *
    W ** -0.5``, and fairseq's ``inverse_sqrt`` scheduler with ``warmup_init_lr=0``.

    Args:
        peak_learning_rate: the rate at ``step == warmup_steps``, > 0.
        warmup_steps: integer >= 1.
    """

    def __init__(self, peak_learning_rate, warmup_steps):
        self.peak_learning_rate = _validation.check_range(
            "peak_learning_rate", peak_learning_rate, 0.0, low_open=True
        )
        self.warmup_steps = _validation.check_steps("warmup_steps", warmup_steps, 1)

    def __call__(self, step):
        step = _base.as_step(step)
        peak = self.peak_learning_rate
        warmup = self.warmup_steps
        elapsed, remaining = _base.elapsed_and_remaining(step, 0, warmup)
        warm = _base.interpolate(0.0, peak, elapsed, remaining, warmup)
        decayed = peak * ops.sqrt(warmup / _base.to_float(ops.maximum(step, warmup)))
        return ops.where(step < warmup, warm, decayed)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
        }
