import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base

_KINDS = {"linear": "linear", "cosine": "cos", "1-sqrt": "1-sqrt"}


@keras.saving.register_keras_serializable(package="tfoptim")
class WarmupStableDecay(_base.Schedule):
    """Warmup-stable-decay ("trapezoidal") schedule.

    Linear warm-up from 0 to the peak, a constant stretch, then a decay to the minimum
    (``W = warmup_steps``, ``S = stable_steps``, ``D = decay_steps``)::

        lr = peak * step / W                              step < W
             peak                                         W <= step < W + S
             min + (peak - min) * f((step - W - S) / D)   W + S <= step < W + S + D
             min                                          step >= W + S + D

        f(p) = 1 - p                  "linear"
               (1 + cos(pi * p)) / 2  "cosine"
               1 - sqrt(p)            "1-sqrt"

    Because the stable stretch runs at the peak, a run can be continued from a checkpoint
    taken before the decay and cooled down later at any length.

    References: Hu et al., "MiniCPM: Unveiling the Potential of Small Language Models with
    Scalable Training Strategies" (2024); Hägele et al., "Scaling Laws and Compute-Optimal
    Training Beyond Fixed Training Durations" (2024), for the ``"1-sqrt"`` cool-down.
    The same formula as Hugging Face ``transformers.get_wsd_schedule``.

    Args:
        peak_learning_rate: the rate of the stable stretch, > 0.
        warmup_steps: integer >= 0.
        stable_steps: integer >= 0.
        decay_steps: integer >= 1.
        min_learning_rate: the rate at the end of the decay and after, in [0, peak].
        decay_type: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
    """

    def __init__(
        self,
        peak_learning_rate,
        warmup_steps,
        stable_steps,
        decay_steps,
        min_learning_rate=0.0,
        decay_type="linear",
    ):
        self.peak_learning_rate = _validation.check_range(
            "peak_learning_rate", peak_learning_rate, 0.0, low_open=True
        )
        self.warmup_steps = _validation.check_steps("warmup_steps", warmup_steps, 0)
        self.stable_steps = _validation.check_steps("stable_steps", stable_steps, 0)
        self.decay_steps = _validation.check_steps("decay_steps", decay_steps, 1)
        self.min_learning_rate = _validation.check_range(
            "min_learning_rate", min_learning_rate, 0.0, self.peak_learning_rate
        )
        self.decay_type = _validation.check_choice("decay_type", decay_type, tuple(_KINDS))

    def __call__(self, step):
        step = _base.as_step(step)
        peak = self.peak_learning_rate
        decay_start = self.warmup_steps + self.stable_steps
        elapsed, remaining = _base.elapsed_and_remaining(step, decay_start, self.decay_steps)
        # Up to the start of the decay this is the peak, so it also covers the stable stretch.
        rate = _base.interpolate(
            peak,
            self.min_learning_rate,
            elapsed,
            remaining,
            self.decay_steps,
            _KINDS[self.decay_type],
        )
        if self.warmup_steps:
            elapsed, remaining = _base.elapsed_and_remaining(step, 0, self.warmup_steps)
            warm = _base.interpolate(0.0, peak, elapsed, remaining, self.warmup_steps)
            rate = ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "stable_steps": self.stable_steps,
            "decay_steps": self.decay_steps,
            "min_learning_rate": self.min_learning_rate,
            "decay_type": self.decay_type,
        }
