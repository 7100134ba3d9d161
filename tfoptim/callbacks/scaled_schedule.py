"""A learning rate scaled by a factor that can change during training."""

import keras

from tfoptim._validation import check_non_negative
from tfoptim.schedules._base import deserialize_schedule, serialize_schedule


@keras.saving.register_keras_serializable(package="tfoptim")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate(step) = factor * schedule(step)``, with ``factor`` held in a variable.

    This is how :class:`ScheduleAwareReduceLROnPlateau` and :class:`NonFiniteRecovery` lower a
    learning rate that Keras will not let them set (a schedule): the optimizer's schedule is
    wrapped once, and from then on only the factor changes. The factor lives in a variable that
    the traced training step reads, so changing it costs no re-tracing.

    Saving: the factor is written into the schedule's config, which is part of the optimizer's
    config, so a ``.keras`` file restores it (``keras.models.load_model`` rebuilds the schedule
    with the saved factor; import ``tfoptim`` first so the class is registered). It is kept out
    of ``optimizer.variables`` on purpose: Keras loads optimizer variables by position and
    count, and adding one would make files saved before the wrap unloadable into the wrapped
    optimizer and the other way round.

    Args:
        schedule: a ``LearningRateSchedule``, a float, or a callable without arguments.
        factor: the initial factor, a float >= 0.

    Example:

    ```python
    import keras
    from tfoptim.callbacks import ScaledSchedule

    decay = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=100, decay_rate=0.9)
    schedule = ScaledSchedule(decay)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    schedule.factor = 0.5  # from now on the optimizer runs at half the scheduled rate
    ```
    """

    def __init__(self, schedule, factor=1.0):
        if not (
            isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
            or callable(schedule)
        ):
            schedule = check_non_negative("schedule", schedule)
        self.schedule = schedule
        self._factor = keras.Variable(
            check_non_negative("factor", factor),
            dtype="float32",
            trainable=False,
            name="learning_rate_factor",
        )

    @property
    def factor(self):
        return float(self._factor.numpy())

    @factor.setter
    def factor(self, value):
        self._factor.assign(check_non_negative("factor", value))

    @property
    def factor_variable(self):
        return self._factor

    def __call__(self, step):
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            base = self.schedule(step)
        elif callable(self.schedule):
            base = self.schedule()
        else:
            base = self.schedule
        base = keras.ops.cast(base, "float32")
        return keras.ops.multiply(base, keras.ops.convert_to_tensor(self._factor))

    def get_config(self):
        return {"schedule": serialize_schedule(self.schedule), "factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "schedule": deserialize_schedule(config["schedule"])})
