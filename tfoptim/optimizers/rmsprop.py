import keras
from keras import ops

from tfoptim.optimizers._moments import constant, rms_denominator, update_moment
from tfoptim._validation import (
    check_choice,
    check_non_negative,
    check_positive,
    check_unit_interval,
)
from tfoptim.optimizers.base import Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class RMSprop(Optimizer):
    """RMSprop: gradient scaled by a moving root-mean-square of recent gradients.

    Update rule::

        v     <- rho * v + (1 - rho) * g**2               (v starts at initial_accumulator_value)
        s     <- v - mg**2, with mg <- rho * mg + (1 - rho) * g   (centered)   else s <- v
        d     <- sqrt(s + eps)                            (epsilon_inside_sqrt=True: Keras, TF1)
        d     <- sqrt(s) + eps                            (epsilon_inside_sqrt=False: PyTorch)
        theta <- theta - alpha * g / d                    (momentum == 0)

    With momentum, ``momentum_buffer="step"`` (Keras, TF1) accumulates steps,
    ``m <- momentum * m + alpha * g / d; theta <- theta - m``, while ``"gradient"`` (PyTorch)
    accumulates scaled gradients, ``b <- momentum * b + g / d; theta <- theta - alpha * b``.
    TF1 starts ``v`` at 1.0; Keras and PyTorch at 0.

    The text tfoptim grew from writes ``sqrt(RMS + eps)`` and also decays the learning rate
    inside the rule; here the decay is a schedule's job (``learning_rate=...Schedule``).

    Reference: Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning"
    (Coursera, 2012); Graves, "Generating Sequences With Recurrent Neural Networks" (2013) for
    the centered variant.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        rho: decay of the moving averages, in [0, 1). Defaults to 0.9.
        momentum: in [0, 1). Defaults to 0.0.
        epsilon: > 0. Defaults to 1e-7.
        centered: normalise by the estimated variance instead of the second moment.
        epsilon_inside_sqrt: where epsilon goes, see above. Defaults to True.
        momentum_buffer: ``"step"`` or ``"gradient"``, see above. Defaults to ``"step"``.
        initial_accumulator_value: starting value of ``v``, >= 0. Defaults to 0.0.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        momentum=0.0,
        epsilon=1e-7,
        centered=False,
        epsilon_inside_sqrt=True,
        momentum_buffer="step",
        initial_accumulator_value=0.0,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = check_unit_interval("rho", rho)
        self.momentum = check_unit_interval("momentum", momentum)
        self.epsilon = check_positive("epsilon", epsilon)
        self.centered = bool(centered)
        self.epsilon_inside_sqrt = bool(epsilon_inside_sqrt)
        self.momentum_buffer = check_choice("momentum_buffer", momentum_buffer, ("step", "gradient"))
        self.initial_accumulator_value = check_non_negative(
            "initial_accumulator_value", initial_accumulator_value
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(
            variables, "velocity", initializer=constant(self.hyperparameter(self.initial_accumulator_value))
        )
        self._momentums = []
        if self.momentum:
            self._momentums = self.add_optimizer_variables(variables, "momentum")
        self._average_gradients = []
        if self.centered:
            self._average_gradients = self.add_optimizer_variables(variables, "average_gradient")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        update_moment(self, velocity, ops.square(gradient), self.rho)
        second_moment = velocity
        if self.centered:
            average_gradient = self._average_gradients[index]
            update_moment(self, average_gradient, gradient, self.rho)
            second_moment = ops.subtract(velocity, ops.square(average_gradient))
        scaled = ops.divide(
            gradient, rms_denominator(second_moment, self.epsilon, self.epsilon_inside_sqrt)
        )
        if not self.momentum:
            self.assign_sub(variable, ops.multiply(learning_rate, scaled))
            return
        momentum = self._momentums[index]
        if self.momentum_buffer == "step":
            self.assign(
                momentum,
                ops.add(ops.multiply(self.momentum, momentum), ops.multiply(learning_rate, scaled)),
            )
            self.assign_sub(variable, momentum)
        else:
            self.assign(momentum, ops.add(ops.multiply(self.momentum, momentum), scaled))
            self.assign_sub(variable, ops.multiply(learning_rate, momentum))
