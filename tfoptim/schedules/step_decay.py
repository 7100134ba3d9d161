import keras

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class StepDecay(_base.Schedule):
    """Multiplies the rate by ``gamma`` every ``step_size`` steps, as PyTorch's ``StepLR``::

        lr = initial_learning_rate * gamma ** floor(step / step_size)

    ``StepDecay(...)(i)`` equals the learning rate ``torch.optim.lr_scheduler.StepLR`` sets after
    ``i`` calls to ``scheduler.step()``; also optax's ``exponential_decay(..., staircase=True)``
    and Keras's ``ExponentialDecay(..., staircase=True)`` with ``decay_rate = gamma``.

    Args:
        initial_learning_rate: the rate for steps ``0 .. step_size - 1``, >= 0.
        step_size: steps between decays, an integer >= 1.
        gamma: the factor applied at each decay, > 0.
    """

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = _validation.check_range(
            "initial_learning_rate", initial_learning_rate, 0.0
        )
        self.step_size = _validation.check_steps("step_size", step_size, 1)
        self.gamma = _validation.check_range("gamma", gamma, 0.0, low_open=True)

    def __call__(self, step):
        decays = _base.to_float(_base.as_step(step) // self.step_size)
        return self.initial_learning_rate * _base.power(self.gamma, decays)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "step_size": self.step_size,
            "gamma": self.gamma,
        }
