import keras
from keras import ops

from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import resource


@keras.saving.register_keras_serializable(package="tfoptim")
class GradientDescent(Optimizer):
    """Plain (full-batch or stochastic) gradient descent.

    Update rule, for gradient ``g`` and learning rate ``alpha``::

        theta <- theta - alpha * g

    Whether it is "batch" or "stochastic" gradient descent is decided by the batch the gradient
    was computed on, not by the optimizer. Equals ``keras.optimizers.SGD(momentum=0.0)`` and
    ``tf.compat.v1.train.GradientDescentOptimizer``.

    Reference: Cauchy, "Méthode générale pour la résolution des systèmes d'équations
    simultanées" (1847); Robbins & Monro, "A Stochastic Approximation Method" (1951).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.01.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(self, learning_rate=0.01, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))

    def training_op(self):
        """TensorFlow's ``ResourceApplyGradientDescent``: ``theta -= g * alpha``, as above."""
        return apply_gradient_descent


def apply_gradient_descent(gradient, variable, learning_rate):
    """``theta -= g * alpha`` by ``ResourceApplyGradientDescent`` (the training op of every
    rule that reduces to plain gradient descent)."""
    import tensorflow as tf

    tf.raw_ops.ResourceApplyGradientDescent(var=resource(variable), alpha=learning_rate, delta=gradient)
