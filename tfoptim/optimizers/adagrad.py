import keras
from keras import ops

from tfoptim.optimizers._moments import constant, rms_denominator
from tfoptim._validation import check_non_negative
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import resource


@keras.saving.register_keras_serializable(package="tfoptim")
class Adagrad(Optimizer):
    """Adagrad: per-coordinate step sizes from the sum of all past squared gradients.

    Update rule::

        a     <- a + g**2                                 (a starts at initial_accumulator_value)
        theta <- theta - alpha * g / sqrt(a + eps)        (epsilon_inside_sqrt=True: Keras)
        theta <- theta - alpha * g / (sqrt(a) + eps)      (epsilon_inside_sqrt=False: PyTorch)

    TF1's ``AdagradOptimizer`` has no epsilon at all: ``epsilon=0`` with a positive initial
    accumulator reproduces it. PyTorch's ``lr_decay`` is a learning-rate schedule
    (``InverseTimeDecay``), see :mod:`tfoptim.compat.torch`.

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization" (JMLR 2011).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        initial_accumulator_value: starting value of ``a``, >= 0. Defaults to 0.1.
        epsilon: >= 0; must be > 0 when ``initial_accumulator_value`` is 0. Defaults to 1e-7.
        epsilon_inside_sqrt: where epsilon goes, see above. Defaults to True.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.001,
        initial_accumulator_value=0.1,
        epsilon=1e-7,
        epsilon_inside_sqrt=True,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = check_non_negative(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.epsilon = check_non_negative("epsilon", epsilon)
        if epsilon == 0 and initial_accumulator_value == 0:
            raise ValueError(
                "`epsilon` must be > 0 when `initial_accumulator_value` is 0 (the first zero "
                "gradient would divide by zero). Received: epsilon=0, initial_accumulator_value=0"
            )
        self.epsilon_inside_sqrt = bool(epsilon_inside_sqrt)

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
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))
        denominator = rms_denominator(accumulator, self.epsilon, self.epsilon_inside_sqrt)
        self.assign_sub(variable, ops.divide(ops.multiply(learning_rate, gradient), denominator))

    def training_op(self):
        """TensorFlow's ``ResourceApplyAdagradV2`` computes the PyTorch form in
        :meth:`update_step`'s order. None for the Keras form: in a graph, TensorFlow's optimizer
        rewrites its ``x / sqrt(a + eps)`` as ``x * rsqrt(a + eps)``, which no kernel matches."""
        if self.epsilon_inside_sqrt:
            return None
        import tensorflow as tf

        def step(gradient, variable, learning_rate):
            tf.raw_ops.ResourceApplyAdagradV2(
                var=resource(variable),
                accum=resource(self._accumulators[self._get_variable_index(variable)]),
                lr=learning_rate,
                epsilon=ops.convert_to_tensor(self.epsilon, variable.dtype),
                grad=gradient,
                update_slots=True,
            )

        return step
