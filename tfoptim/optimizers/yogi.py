import keras
from keras import ops

from tfoptim._validation import check_choice, check_non_negative, check_positive, check_unit_interval
from tfoptim.optimizers._moments import (
    add_to,
    bias_correction,
    cautious,
    constant,
    local_step,
    proximal_step,
    read,
    update_moment,
)
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class Yogi(Optimizer):
    """Yogi: Adam whose second moment moves additively, so it cannot forget large gradients fast.

    Update rule at step ``t = 1, 2, ...``::

        m     <- beta_1 * m + (1 - beta_1) * g                    (m = g when beta_1 = 0)
        v     <- v - (1 - beta_2) * sign(v - g**2) * g**2          (v starts at initial_accumulator_value)
        a     =  alpha * sqrt(1 - beta_2**t) / (1 - beta_1**t) / (sqrt(v) + eps)
        theta <- theta - a * m

    Adam's ``v <- v - (1 - beta_2) (v - g**2)`` shrinks ``v`` by a fraction of itself when the
    gradients fall; Yogi's step depends only on ``g**2``, so the effective rate grows slowly.
    ``activation="tanh"`` replaces ``sign(x)`` by ``tanh(10 x)``. With l1/l2 strengths the step is
    followed by the proximal operator, per coordinate with the rate ``a``::

        theta <- sign(theta) * max(|theta| - l1 * a, 0) / (1 + l2 * a)

    The rule, defaults (rate 0.01, epsilon 1e-3, ``v`` starting at 1e-6) and options are those
    of TFA's ``Yogi``, written by the paper's authors' group. It deviates from the paper's
    Algorithm 2 by the bias corrections ``sqrt(1 - beta_2**t) / (1 - beta_1**t)`` (Adam's), which
    tfoptim follows.

    ``cautious=True`` (Liang et al. 2024) masks ``m`` in the step where it disagrees in sign
    with ``g``, ``m * mask / max(mean(mask), 1e-3)`` with ``mask = (m * g > 0)``, as
    :class:`Adam` does (see :func:`tfoptim.optimizers._moments.cautious`), before the proximal
    operator; the moments are not masked. No other implementation offers it: tested against
    the paper's masking written in NumPy. ``moment_dtype="bfloat16"`` stores ``m`` and ``v`` in
    bfloat16 (``v`` starts at ``initial_accumulator_value`` rounded), computed in the
    variable's dtype and rounded when written, as in :class:`Adam`.

    Reference: Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex
    Optimization" (NeurIPS 2018).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.01.
        beta_1: decay of the first moment, in [0, 1); 0 keeps no momentum slot. Defaults to 0.9.
        beta_2: rate of the additive second-moment update, in [0, 1). Defaults to 0.999.
        epsilon: > 0; large by design (it bounds the adaptivity). Defaults to 1e-3.
        initial_accumulator_value: starting value of ``v``, >= 0. Defaults to 1e-6.
        activation: ``"sign"`` or ``"tanh"``. Defaults to ``"sign"``.
        l1_regularization_strength: >= 0. Defaults to 0.
        l2_regularization_strength: >= 0. Defaults to 0.
        cautious: mask the step where it disagrees with the gradient, see above. Defaults to
            False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``, see above.
            Defaults to ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-3,
        initial_accumulator_value=1e-6,
        activation="sign",
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.initial_accumulator_value = check_non_negative(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.activation = check_choice("activation", activation, ("sign", "tanh"))
        self.l1_regularization_strength = check_non_negative(
            "l1_regularization_strength", l1_regularization_strength
        )
        self.l2_regularization_strength = check_non_negative(
            "l2_regularization_strength", l2_regularization_strength
        )
        self.init_cautious(cautious)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        start = constant(self.hyperparameter(self.initial_accumulator_value))
        self._velocities = self.add_moment_variables(variables, "velocity", initializer=start)
        self._momentums = []
        if self.beta_1:
            self._momentums = self.add_moment_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        correction_1 = bias_correction(self.hyperparameter(self.beta_1), step)
        correction_2 = bias_correction(self.hyperparameter(self.beta_2), step)
        rate = ops.cast(learning_rate * ops.sqrt(correction_2) / correction_1, dtype)
        index = self._get_variable_index(variable)
        m = gradient
        if self.beta_1:
            m = update_moment(self, self._momentums[index], gradient, self.beta_1)
        if self.cautious:
            m = cautious(m, gradient)
        v_slot = self._velocities[index]
        square = ops.square(gradient)
        difference = ops.subtract(square, read(v_slot, dtype))
        if self.activation == "sign":
            direction = ops.sign(difference)
        else:
            direction = ops.tanh(10.0 * difference)
        v = add_to(self, v_slot, ops.multiply(ops.multiply(direction, square), 1.0 - self.beta_2))
        per_coordinate = ops.divide(rate, ops.add(ops.sqrt(v), self.epsilon))
        theta = ops.subtract(variable, ops.multiply(per_coordinate, m))
        if self.l1_regularization_strength or self.l2_regularization_strength:
            theta = proximal_step(
                theta,
                per_coordinate,
                self.l1_regularization_strength,
                self.l2_regularization_strength,
            )
        self.assign(variable, theta)
