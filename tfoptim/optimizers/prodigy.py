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
from tfoptim.optimizers.graph import conditional_update


@keras.saving.register_keras_serializable(package="tfoptim")
class Prodigy(Optimizer):
    """Prodigy: learning-rate-free Adam, its step size ``d`` estimates the distance to the solution.

    ``d`` starts at ``d0`` and grows towards ``||x0 - x*||``, estimated from the gradients seen
    so far; ``learning_rate`` (default 1.0) only multiplies it, so schedules keep their use.
    With ``x0`` the weights the optimizer starts from, sums running over every element of every
    variable, and ``c = sqrt(1 - beta_2**k) / (1 - beta_1**k)`` at update ``k = 1, 2, ...``
    (``c = 1`` unless ``use_bias_correction``)::

        rate  = d * learning_rate * c                       (this step's step size)
        m     <- beta_1 * m + d * (1 - beta_1) * g
        v     <- beta_2 * v + d**2 * (1 - beta_2) * g**2
        s     <- beta_3 * s + (d / d0) * rate * g           (safeguard_warmup: (d / d0) * d * g)
        r     <- beta_3 * r + (d / d0) * rate * sum(g * (x0 - theta))
        d_max <- max(d_max, d_coef * r / sum(|s|))
        d'    <- min(d_max, d * growth_rate)      (while d == d0: max(d, d_coef * r / sum|s|))
        theta <- theta - rate * m / (sqrt(v) + d' * eps)    (beta_1 = 0: m -> d' * g)

    ``beta_3`` defaults to ``sqrt(beta_2)``. ``r`` and ``sum(|s|)`` cover all variables, so a
    step first updates every slot and the sums, then ``d``, then every variable (the two passes
    of :meth:`Optimizer.collect_statistics`; under ``tf.distribute`` each replica computes the
    same sums from the all-reduced gradients). The fast path fuses the whole step, small
    variables included, into one XLA call once one variable is large.

    Follows the authors' implementation (``prodigyopt`` 1.1.2), which differs from the paper's
    Adam version where noted: ``r`` and ``s`` drop the paper's ``1 - beta_3`` factor and are
    scaled by ``1 / d0`` (both cancel in ``r / sum|s|``); the epsilon term and the
    ``beta_1 = 0`` step use the updated ``d'`` (the paper: ``d``); ``d_coef``, ``growth_rate``
    (``inf``: the paper's ``d' = max(d, r / sum|s|)``), ``safeguard_warmup`` and the bias
    correction, which scales the whole rate and so also ``r`` and ``s``, are its additions. A
    step at ``learning_rate = 0``, or before any non-zero gradient, changes nothing (the official
    code returns early) and does not count for the bias correction; ``x0`` is the weights at
    the first update, as in the official code. The official ``weight_decay`` with
    ``decouple=True`` (its default) is Keras's ``weight_decay`` here, scaled by this step's rate,
    ``theta <- theta - rate * wd * theta``; with ``decouple=False`` it is ``coupled_weight_decay``
    (L2 in the gradient, so also in ``r`` and ``s``). ``slice_p`` is not offered.

    Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner" (ICML 2024).

    Args:
        learning_rate: multiplier of the estimated step size ``d``: float >= 0,
            ``LearningRateSchedule`` or callable. Defaults to 1.0.
        beta_1: decay of the first moment, in [0, 1); 0 keeps no first moment. Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        beta_3: decay of ``r`` and ``s``, in [0, 1), or None for ``sqrt(beta_2)``. Defaults to
            None.
        epsilon: > 0, scaled by ``d``. Defaults to 1e-8.
        d0: initial estimate of ``d``, > 0. Defaults to 1e-6.
        d_coef: multiplies the estimate, > 0; the authors' preferred knob (0.5 or 2.0 for a
            smaller or larger step). Defaults to 1.0.
        growth_rate: ``d`` grows at most by this factor per step, >= 1 or ``inf``. Defaults to
            ``inf``.
        use_bias_correction: Adam's bias correction on the rate. Defaults to False.
        safeguard_warmup: leave the learning rate out of ``s``, so that a warm-up schedule does
            not inflate ``d``. Defaults to False.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=None,
        epsilon=1e-8,
        d0=1e-6,
        d_coef=1.0,
        growth_rate=math.inf,
        use_bias_correction=False,
        safeguard_warmup=False,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.beta_3 = None if beta_3 is None else check_unit_interval("beta_3", beta_3)
        self.epsilon = check_positive("epsilon", epsilon)
        self.d0 = check_positive("d0", d0)
        self.d_coef = check_positive("d_coef", d_coef)
        self.growth_rate = growth_rate if growth_rate == math.inf else check_range(
            "growth_rate", growth_rate, 1.0
        )
        self.use_bias_correction = bool(use_bias_correction)
        self.safeguard_warmup = bool(safeguard_warmup)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        dtype = statistics_dtype(variables)
        self._d = self.add_variable((), initializer=constant(self.d0), dtype=dtype, name="d")
        self._d_max = self.add_variable(
            (), initializer=constant(self.d0), dtype=dtype, name="d_max"
        )
        self._d_numerator = self.add_variable((), dtype=dtype, name="d_numerator")
        # Updates applied: the bias correction's k, which skipped steps do not advance.
        self._updates = self.add_variable((), dtype="int", name="updates")
        self._momentums = self.add_optimizer_variables(variables, "momentum") if self.beta_1 else []
        self._velocities, self._s, self._starts = self.add_optimizer_variables(
            variables, ["velocity", "s", "start"]
        )

    @property
    def _beta_3(self):
        return math.sqrt(self.beta_2) if self.beta_3 is None else self.beta_3

    def collect_statistics(self, gradient, variable, learning_rate):
        d, rate, runs = distance_adapted_rate(self, learning_rate)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        s, start = self._s[index], self._starts[index]
        # x0 is taken at the first update, as the official code does, not in build: an assign
        # there would join the traced step when build runs inside one and redo it every step.
        conditional_update(
            ops.equal(self._updates, 0), lambda: self.assign(start, variable), [start, variable]
        )
        weight = d / self.d0 * rate
        numerator = weight * total(
            ops.multiply(gradient, ops.subtract(start, variable)), d.dtype
        )
        if self.beta_1:
            momentum = self._momentums[index]
            decay_and_add(self, momentum, self.beta_1, gradient, d * (1 - self.beta_1), runs)
        velocity = self._velocities[index]
        coefficient = d * d * (1 - self.beta_2)
        decay_and_add(self, velocity, self.beta_2, ops.square(gradient), coefficient, runs)
        s_weight = d / self.d0 * d if self.safeguard_warmup else weight
        decay_and_add(self, s, self._beta_3, gradient, s_weight, runs)
        return numerator, total(ops.abs(s), d.dtype)

    def apply_statistics(self, totals, learning_rate):
        numerator, denominator = totals
        d, rate, runs = distance_adapted_rate(self, learning_rate)
        # The official code returns before touching d (and the weights) on such a step.
        applies = ops.logical_and(runs, denominator > 0)
        numerator = self._d_numerator * self._beta_3 + numerator
        d_hat = self.d_coef * numerator / ops.where(applies, denominator, 1.0)
        d_max = ops.maximum(self._d_max, d_hat)
        at_start = ops.equal(d, ops.convert_to_tensor(self.d0, d.dtype))
        grown = ops.where(at_start, ops.maximum(d, d_hat), d)
        for scalar, value in (
            (self._d_numerator, numerator),
            (self._d_max, d_max),
            (self._d, ops.minimum(d_max, grown * self.growth_rate)),
        ):
            # Read explicitly: on JAX, `where` does not convert a Variable operand.
            self.assign(scalar, ops.where(applies, value, ops.convert_to_tensor(scalar)))
        self.assign_add(self._updates, ops.cast(applies, self._updates.dtype))
        return ops.where(applies, rate, 0.0)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        d = ops.convert_to_tensor(self._d)
        denominator = ops.add(ops.sqrt(self._velocities[index]), ops.cast(d * self.epsilon, dtype))
        if self.beta_1:
            step = ops.divide(self._momentums[index], denominator)
        else:
            learning_rate = learning_rate * d
            step = ops.divide(ops.cast(gradient, dtype), denominator)
        self.assign_sub(variable, ops.multiply(step, ops.cast(learning_rate, dtype)))
