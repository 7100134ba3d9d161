import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class MultiStepDecay(_base.Schedule):
    """Multiplies the rate by ``gamma`` at each milestone, as PyTorch's ``MultiStepLR``::

        lr = initial_learning_rate * gamma ** (number of milestones <= step)

    ``MultiStepDecay(...)(i)`` equals the learning rate ``torch.optim.lr_scheduler.MultiStepLR``
    sets after ``i`` calls to ``scheduler.step()``: the decay takes effect *at* the milestone.

    Args:
        initial_learning_rate: the rate before the first milestone, >= 0.
        milestones: strictly increasing steps >= 0. (PyTorch also accepts a repeated
            milestone, applying ``gamma`` once per repetition; for uneven factors use Keras's
            ``PiecewiseConstantDecay``.)
        gamma: the factor applied at each milestone, > 0.
    """

    def __init__(self, initial_learning_rate, milestones, gamma=0.1):
        self.initial_learning_rate = _validation.check_range(
            "initial_learning_rate", initial_learning_rate, 0.0
        )
        self.milestones = _validation.check_increasing("milestones", milestones, 0)
        self.gamma = _validation.check_range("gamma", gamma, 0.0, low_open=True)

    def __call__(self, step):
        step = _base.as_step(step)
        # Every rate the schedule can take, computed in float64 and rounded once.
        rates = ops.convert_to_tensor(
            [self.initial_learning_rate * self.gamma**k for k in range(len(self.milestones) + 1)],
            dtype=_base.FLOAT,
        )
        milestones = ops.convert_to_tensor(self.milestones, dtype=step.dtype)
        passed = ops.sum(ops.cast(ops.expand_dims(step, -1) >= milestones, "int32"), axis=-1)
        return ops.take(rates, passed)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "milestones": self.milestones,
            "gamma": self.gamma,
        }
