import math

import keras
from keras import ops

from tfoptim._validation import check_positive, check_range, check_unit_interval
from tfoptim.optimizers._moments import (
    constant,
    decay_and_add,
    distance_adapted_rate,
    statistics_dtype,
    total,
)
from tfoptim.optimizers.base import Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class DAdaptAdam(Optimizer):
    """D-Adaptation Adam: learning-rate-free Adam, its step size ``d`` grows to the distance to x*.

    ``d`` starts at ``d0`` and is raised to a lower bound on ``||x0 - x*||`` computed from the
    gradients and steps so far; ``learning_rate`` (default 1.0) only multiplies it. With sums
    running over every element of every variable, ``b = sqrt(beta_2)``, and
    ``c = sqrt(1 - beta_2**k) / (1 - beta_1**k)`` at update ``k = 1, 2, ...`` (``c = 1`` unless
    ``use_bias_correction``)::

        rate  = d * learning_rate * c                       (this step's step size)
        a     = sum(g * s / (sqrt(v) + eps))                (s and v before this step)
        m     <- beta_1 * m + rate * (1 - beta_1) * g       (m holds the step, rate included)
        v     <- beta_2 * v + (1 - beta_2) * g**2
        s     <- b * s + rate * (1 - b) * g
        r     <- b * r + (1 - b) * rate * a
        d'    <- max(d, min(r / ((1 - b) * sum(|s|)), d * growth_rate))
        theta <- theta - m / (sqrt(v) + eps)

    ``r`` and ``sum(|s|)`` cover all variables, so a step first updates every slot and the
    sums, then ``d``, then every variable (the two passes of
    :meth:`Optimizer.collect_statistics`; under ``tf.distribute`` each replica computes the same
    sums from the all-reduced gradients). The fast path fuses the whole step, small variables
    included, into one XLA call once one variable is large.

    Follows the authors' implementation, ``dadaptation`` 3.2, whose ``DAdaptAdam`` (since 3.0)
    is not the paper's Adam variant: that one (``experimental.DAdaptAdamPreprint`` there) forms
    ``d`` from ``sum(s**2 / (sqrt(v) + eps))`` and a weighted sum of ``g**2``, with ``beta_2``
    where 3.x uses ``sqrt(beta_2)``. ``growth_rate`` and the bias correction (which scales the
    whole rate, so also ``m``, ``s`` and ``r``) are the implementation's additions. A step at
    ``learning_rate = 0``, or before any non-zero gradient, changes nothing (the official code
    returns early) and does not count for the bias correction. The official ``weight_decay``
    with ``decouple=True`` is Keras's ``weight_decay`` here, scaled by this step's rate,
    ``theta <- theta - rate * wd * theta``; with ``decouple=False`` (its default) it is
    ``coupled_weight_decay`` (L2 in the gradient, so also in ``r`` and ``s``). ``layer_scale``
    (per parameter group) is not offered.

    Reference: Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation"
    (ICML 2023).

    Args:
        learning_rate: multiplier of the estimated step size ``d``: float >= 0,
            ``LearningRateSchedule`` or callable. Defaults to 1.0.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1); ``s`` and ``r`` decay by its square
            root. Defaults to 0.999.
        epsilon: > 0. Defaults to 1e-8.
        d0: initial estimate of ``d``, > 0. Defaults to 1e-6.
        growth_rate: ``d`` grows at most by this factor per step, >= 1 or ``inf``. Defaults to
            ``inf``.
        use_bias_correction: Adam's bias correction on the rate. Defaults to False.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        d0=1e-6,
        growth_rate=math.inf,
        use_bias_correction=False,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.d0 = check_positive("d0", d0)
        self.growth_rate = growth_rate if growth_rate == math.inf else check_range(
            "growth_rate", growth_rate, 1.0
        )
        self.use_bias_correction = bool(use_bias_correction)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        dtype = statistics_dtype(variables)
        self._d = self.add_variable((), initializer=constant(self.d0), dtype=dtype, name="d")
        self._numerator = self.add_variable((), dtype=dtype, name="numerator_weighted")
        # Updates applied: the bias correction's k, which skipped steps do not advance.
        self._updates = self.add_variable((), dtype="int", name="updates")
        self._momentums, self._velocities, self._s = self.add_optimizer_variables(
            variables, ["momentum", "velocity", "s"]
        )

    def collect_statistics(self, gradient, variable, learning_rate):
        d, rate, runs = distance_adapted_rate(self, learning_rate)
        root = self.beta_2**0.5
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        s, v = self._s[index], self._velocities[index]
        denominator = ops.add(ops.sqrt(v), self.epsilon)
        numerator = rate * total(ops.multiply(gradient, ops.divide(s, denominator)), d.dtype)
        momentum = self._momentums[index]
        decay_and_add(self, momentum, self.beta_1, gradient, rate * (1 - self.beta_1), runs)
        decay_and_add(self, v, self.beta_2, ops.square(gradient), 1 - self.beta_2, runs)
        decay_and_add(self, s, root, gradient, rate * (1 - root), runs)
        return numerator, total(ops.abs(s), d.dtype)

    def apply_statistics(self, totals, learning_rate):
        numerator, denominator = totals
        d, rate, runs = distance_adapted_rate(self, learning_rate)
        root = self.beta_2**0.5
        # The official code returns before touching d (and the weights) on such a step.
        applies = ops.logical_and(runs, denominator > 0)
        numerator = root * self._numerator + (1 - root) * numerator
        d_hat = numerator / ((1 - root) * ops.where(applies, denominator, 1.0))
        new_d = ops.maximum(d, ops.minimum(d_hat, d * self.growth_rate))
        # Read explicitly: on JAX, `where` does not convert a Variable operand.
        self.assign(self._numerator, ops.where(applies, numerator, ops.convert_to_tensor(self._numerator)))
        self.assign(self._d, ops.where(applies, new_d, d))
        self.assign_add(self._updates, ops.cast(applies, self._updates.dtype))
        return ops.where(applies, rate, 0.0)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        denominator = ops.add(ops.sqrt(self._velocities[index]), self.epsilon)
        # m already carries the rate; learning_rate (this step's rate) only says whether the
        # step runs, and is 0 exactly when it does not.
        runs = ops.cast(ops.greater(learning_rate, 0), dtype)
        step = ops.divide(self._momentums[index], denominator)
        self.assign_sub(variable, ops.multiply(step, runs))
