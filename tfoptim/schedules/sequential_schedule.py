import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class SequentialSchedule(_base.Schedule):
    """Runs schedules one after another, each counting steps from its own start::

        lr = schedules[0](step)                        step < boundaries[0]
             schedules[k](step - boundaries[k - 1])    boundaries[k - 1] <= step < boundaries[k]
             schedules[-1](step - boundaries[-1])      step >= boundaries[-1]

    The semantics of optax's ``join_schedules``; PyTorch's ``SequentialLR`` (which restarts each
    scheduler at its milestone) means the same.

    Args:
        schedules: a list of ``keras.optimizers.schedules.LearningRateSchedule`` or floats >= 0
            (constants), one more than ``boundaries``.
        boundaries: strictly increasing steps >= 1 at which the next schedule takes over.
    """

    def __init__(self, schedules, boundaries):
        if isinstance(schedules, (str, bytes)) or not hasattr(schedules, "__iter__"):
            raise ValueError(
                f"`schedules` must be a list of schedules. Received: schedules={schedules!r}"
            )
        self.schedules = [
            _base.check_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)
        ]
        self.boundaries = _validation.check_increasing("boundaries", boundaries, 1)
        if len(self.schedules) != len(self.boundaries) + 1:
            raise ValueError(
                "`schedules` must have one more entry than `boundaries` (schedule k runs from "
                f"boundaries[k - 1]). Received: {len(self.schedules)} schedules and "
                f"{len(self.boundaries)} boundaries (boundaries={self.boundaries})"
            )

    def __call__(self, step):
        step = _base.as_step(step)
        rate = _base.evaluate(self.schedules[0], step)
        for boundary, schedule in zip(self.boundaries, self.schedules[1:], strict=True):
            value = _base.evaluate(schedule, ops.maximum(step - boundary, 0))
            rate = ops.where(step < boundary, rate, value)
        return rate

    def get_config(self):
        return {
            "schedules": [_base.serialize_schedule(s) for s in self.schedules],
            "boundaries": self.boundaries,
        }

    @classmethod
    def from_config(cls, config):
        schedules = [_base.deserialize_schedule(s) for s in config["schedules"]]
        return cls(**dict(config, schedules=schedules))
