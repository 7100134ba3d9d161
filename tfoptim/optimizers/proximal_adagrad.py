import keras
from keras import ops

from tfoptim._validation import check_non_negative, check_positive
from tfoptim.optimizers._moments import constant, proximal_step
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import resource


@keras.saving.register_keras_serializable(package="tfoptim")
class ProximalAdagrad(Optimizer):
    """Proximal Adagrad: an Adagrad step, then the proximal step of L1 and L2 penalties.

    Update rule (``a`` starts at ``initial_accumulator_value``)::

        a     <- a + g**2
        eta   <- alpha / sqrt(a)                                  (per coordinate)
        v     <- theta - eta * g                                  (the Adagrad step)
        theta <- sign(v) * max(|v| - eta * l1, 0) / (1 + eta * l2)

    The last line is the closed-form minimiser of ``(theta - v)**2 / (2 eta) + l1 |theta|
    + l2 / 2 * theta**2``: L1 sets small weights exactly to zero (sparse models) instead of
    making them oscillate around it, as an L1 term in the loss would. ``l1 = l2 = 0`` is
    Adagrad without epsilon.

    It follows TensorFlow's kernel (``tf.raw_ops.ApplyProximalAdagrad``, used by
    ``tf.compat.v1.train.ProximalAdagradOptimizer`` and TFA's ``ProximalAdagrad``): no
    epsilon, so the accumulator must start above zero. Sparse gradients are applied as their
    dense equivalent: TensorFlow's sparse kernel shrinks only the rows in the batch, here every
    row is shrunk every step, as the dense rule says.

    Reference: Duchi & Singer, "Efficient Online and Batch Learning Using Forward Backward
    Splitting" (JMLR 2009); Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization" (JMLR 2011).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        initial_accumulator_value: > 0, starting value of ``a``. Defaults to 0.1.
        l1_regularization_strength: >= 0. Defaults to 0.0.
        l2_regularization_strength: >= 0. Defaults to 0.0.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = check_positive(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.l1_regularization_strength = check_non_negative(
            "l1_regularization_strength", l1_regularization_strength
        )
        self.l2_regularization_strength = check_non_negative(
            "l2_regularization_strength", l2_regularization_strength
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(
            variables,
            "accumulator",
            initializer=constant(self.hyperparameter(self.initial_accumulator_value)),
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))
        rate = ops.multiply(ops.cast(learning_rate, dtype), ops.rsqrt(accumulator))
        value = ops.subtract(variable, ops.multiply(gradient, rate))
        l1 = self.hyperparameter(self.l1_regularization_strength)
        l2 = self.hyperparameter(self.l2_regularization_strength)
        self.assign(variable, proximal_step(value, rate, l1, l2))

    def training_op(self):
        """TensorFlow's ``ResourceApplyProximalAdagrad``, the kernel this rule follows: the
        operations of :meth:`update_step` in its order."""
        import tensorflow as tf

        def step(gradient, variable, learning_rate):
            dtype = variable.dtype
            tf.raw_ops.ResourceApplyProximalAdagrad(
                var=resource(variable),
                accum=resource(self._accumulators[self._get_variable_index(variable)]),
                lr=learning_rate,
                l1=ops.convert_to_tensor(self.hyperparameter(self.l1_regularization_strength), dtype),
                l2=ops.convert_to_tensor(self.hyperparameter(self.l2_regularization_strength), dtype),
                grad=gradient,
            )

        return step
