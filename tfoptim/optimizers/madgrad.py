import math

import keras
from keras import ops

from tfoptim._validation import check_non_negative, check_unit_interval
from tfoptim.optimizers._moments import local_step
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import conditional_update


def _denominator(sum_of_squares, epsilon):
    """``v**(1/3) + eps``; with ``eps = 0``, infinite where ``v = 0`` (a zero step, as in the
    official code, instead of 0/0)."""
    root = ops.add(ops.power(sum_of_squares, 1 / 3), epsilon)
    return root if epsilon else ops.where(ops.equal(root, 0), math.inf, root)


@keras.saving.register_keras_serializable(package="tfoptim")
class MADGRAD(Optimizer):
    """MADGRAD: momentumized dual averaging with a cube-root AdaGrad-style scaling.

    Update rule at step ``t = 1, 2, ...``, with ``lambda_t = (alpha + eps) * sqrt(t)``::

        s     <- s + lambda_t * g                              (weighted gradient sum)
        v     <- v + lambda_t * g**2                           (weighted squared sum)
        z     <- x0 - s / (v**(1/3) + eps)                     (dual averaging iterate)
        theta <- momentum * theta + (1 - momentum) * z         (momentum: averaging of z)

    ``x0`` is the point of the first step (a slot). With ``momentum=0``, ``theta = z`` and ``x0``
    is recomputed each step as ``theta + s / (v**(1/3) + eps)`` from the state before the
    update, as in the official code, which saves the slot. With ``weight_decay`` (the official
    ``decouple_decay=True``), ``theta <- theta - (alpha + eps) * weight_decay * theta_old`` after
    the step, ``theta_old`` being the weights before it. The official default ``weight_decay``
    (L2 added to the gradient) is the base's ``coupled_weight_decay``.

    Deviations from the paper, following the official code: ``eps`` is added to the learning
    rate (when it is not 0) "for stability", so ``lambda_t`` and the decay use
    ``alpha + eps``; with ``epsilon=0`` a zero ``v`` gives a zero step instead of 0/0.

    Reference: Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive,
    Dual Averaged Gradient Method for Stochastic Optimization" (JMLR 2022, arXiv:2101.11075);
    official implementation facebookresearch/madgrad (package ``madgrad`` 1.3).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.01.
        momentum: in [0, 1). Defaults to 0.9.
        epsilon: >= 0. Defaults to 1e-6.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`; ``weight_decay`` (>= 0,
            default None: none) is applied as described above.
    """

    #: MADGRAD decays after its step, from the weights before it.
    weight_decay_in_rule = True
    per_variable_weight_decay = True

    def __init__(self, learning_rate=0.01, momentum=0.9, epsilon=1e-6, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = check_unit_interval("momentum", momentum)
        self.epsilon = check_non_negative("epsilon", epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._sums_of_squares, self._gradient_sums = self.add_optimizer_variables(
            variables, ["sum_of_squares", "gradient_sum"]
        )
        self._initial_points = []
        if self.momentum:
            self._initial_points = self.add_optimizer_variables(variables, "initial_point")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        learning_rate = ops.where(
            ops.equal(learning_rate, 0), learning_rate, ops.add(learning_rate, self.epsilon)
        )
        weight = ops.cast(ops.multiply(learning_rate, ops.sqrt(step)), dtype)
        index = self._get_variable_index(variable)
        v = self._sums_of_squares[index]
        s = self._gradient_sums[index]
        old = ops.convert_to_tensor(variable)

        if self.momentum:
            x0 = self._initial_points[index]
            # A branch, not a select: a select would read and write all of x0 on every step.
            conditional_update(ops.equal(step, 1), lambda: self.assign(x0, variable), [x0, variable])
        else:
            x0 = ops.add(variable, ops.divide(s, _denominator(v, self.epsilon)))
        self.assign_add(v, ops.multiply(ops.square(gradient), weight))
        self.assign_add(s, ops.multiply(gradient, weight))
        z = ops.subtract(x0, ops.divide(s, _denominator(v, self.epsilon)))
        if self.momentum:
            z = ops.add(ops.multiply(variable, self.momentum), ops.multiply(z, 1 - self.momentum))
        decay = self.weight_decay_of(variable)
        if decay:
            rate = ops.cast(ops.multiply(learning_rate, self.hyperparameter(decay)), dtype)
            z = ops.subtract(z, ops.multiply(old, rate))
        self.assign(variable, z)
