import keras
from keras import ops

from tfoptim._validation import check_positive, check_range
from tfoptim.optimizers._moments import constant
from tfoptim.optimizers.base import Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class COCOB(Optimizer):
    """COCOB-Backprop: learning-rate-free steps from betting on the gradient's sign (coin betting).

    Each coordinate bets a fraction of its "wealth" (the reward its past moves earned plus a
    stake ``L``) on the direction of its summed gradients. With ``w_1`` the starting weights,
    ``x = theta - w_1`` the current offset, and ``L`` starting at ``epsilon``::

        L      <- max(L, |g|)                          (largest gradient seen)
        G      <- G + |g|                              (sum of gradient magnitudes)
        S      <- S + g                                (sum of gradients)
        reward <- max(reward - g * x, 0)               (what the moves so far earned)
        x'     <- -S / (L * max(G + L, alpha * L)) * (reward + L)
        theta  <- theta + lr * (x' - x);  x <- x + lr * (x' - x)

    ``alpha`` caps the bet in the first steps (while ``G`` is small). With the default
    ``learning_rate=1.0`` the rule is the paper's and TFA's exactly; another rate (or a
    schedule, e.g. a warmup) scales each move, and ``x`` sums the moves actually made, so
    the reward is earned on the weights where the gradients were taken (Optax's ``cocob``
    does the same). Keras's decoupled ``weight_decay`` shrinks ``theta`` by
    ``lr * weight_decay`` each step, outside the bet.

    The paper states the rule for negative gradients, hence its opposite signs; TFA's code,
    followed here, uses the gradient itself (the same rule). Five slots per parameter.

    Reference: Orabona & Tommasi, "Training Deep Networks without Learning Rates Through Coin
    Betting" (NeurIPS 2017), Algorithm 2; TensorFlow Addons' ``tfa.optimizers.COCOB``.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable, a multiplier on the
            rule's moves (not a step size). Defaults to 1.0.
        alpha: >= 1, bounds the first steps. Defaults to 100 (paper, TFA).
        epsilon: > 0, starting value of ``L``. Defaults to 1e-8 (paper, TFA).
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(self, learning_rate=1.0, alpha=100.0, epsilon=1e-8, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.alpha = check_range("alpha", alpha, 1.0)
        self.epsilon = check_positive("epsilon", epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._max_gradients = self.add_optimizer_variables(
            variables, "max_gradient", initializer=constant(self.hyperparameter(self.epsilon))
        )
        self._gradient_norm_sums, self._gradient_sums, self._offsets, self._rewards = (
            self.add_optimizer_variables(
                variables, ["gradient_norm_sum", "gradient_sum", "offset", "reward"]
            )
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        index = self._get_variable_index(variable)
        max_gradient = self._max_gradients[index]
        norm_sum = self._gradient_norm_sums[index]
        gradient_sum = self._gradient_sums[index]
        offset = self._offsets[index]
        reward = self._rewards[index]

        self.assign(max_gradient, ops.maximum(max_gradient, ops.abs(gradient)))
        self.assign_add(norm_sum, ops.abs(gradient))
        self.assign_add(gradient_sum, gradient)
        self.assign(reward, ops.maximum(ops.subtract(reward, ops.multiply(gradient, offset)), 0))
        bet = ops.multiply(
            max_gradient,
            ops.maximum(ops.add(norm_sum, max_gradient), ops.multiply(max_gradient, self.alpha)),
        )
        target = ops.multiply(
            ops.divide(ops.negative(gradient_sum), bet), ops.add(reward, max_gradient)
        )
        move = ops.multiply(ops.subtract(target, offset), learning_rate)
        self.assign_add(variable, move)
        self.assign_add(offset, move)
