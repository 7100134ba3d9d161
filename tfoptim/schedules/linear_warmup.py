import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class LinearWarmup(_base.Schedule):
    """Prepends a linear warm-up to any schedule (or constant rate)::

        lr = initial + (schedule(0) - initial) * step / warmup_steps   step < warmup_steps
             schedule(step - warmup_steps)                             step >= warmup_steps

    The wrapped schedule starts counting when the warm-up ends, so its own step arguments
    (decay steps, first restart, ...) are lengths after the warm-up. Equivalent to optax's
    ``join_schedules([linear_schedule(initial, schedule(0), warmup_steps), schedule],
    [warmup_steps])``; with a constant it is optax's ``linear_schedule`` and PyTorch's
    ``LinearLR(start_factor=initial / rate, total_iters=warmup_steps)``. Compose with Keras's
    ``CosineDecayRestarts`` for warm restarts after a warm-up.

    Args:
        schedule: a ``keras.optimizers.schedules.LearningRateSchedule`` or a float >= 0.
        warmup_steps: integer >= 0; 0 runs ``schedule`` unchanged.
        initial_learning_rate: the rate at step 0, >= 0.
    """

    def __init__(self, schedule, warmup_steps, initial_learning_rate=0.0):
        self.schedule = _base.check_schedule("schedule", schedule)
        self.warmup_steps = _validation.check_steps("warmup_steps", warmup_steps, 0)
        self.initial_learning_rate = _validation.check_range(
            "initial_learning_rate", initial_learning_rate, 0.0
        )

    def __call__(self, step):
        step = _base.as_step(step)
        warmup = self.warmup_steps
        after = _base.evaluate(self.schedule, ops.maximum(step - warmup, 0))
        if not warmup:
            return after
        target = _base.evaluate(self.schedule, ops.zeros((), step.dtype))
        elapsed, remaining = _base.elapsed_and_remaining(step, 0, warmup)
        ramp = _base.interpolate(self.initial_learning_rate, target, elapsed, remaining, warmup)
        return ops.where(step < warmup, ramp, after)

    def get_config(self):
        return {
            "schedule": _base.serialize_schedule(self.schedule),
            "warmup_steps": self.warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, schedule=_base.deserialize_schedule(config["schedule"]))
        return cls(**config)
