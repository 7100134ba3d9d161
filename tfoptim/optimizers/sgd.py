import keras
from keras import ops

from tfoptim._validation import check_choice, check_range, check_unit_interval
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import resource
from tfoptim.optimizers.gradient_descent import apply_gradient_descent


@keras.saving.register_keras_serializable(package="tfoptim")
class SGD(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum.

    With ``momentum_buffer="step"`` (the default, Keras's form) the buffer holds steps::

        m     <- momentum * m - alpha * g
        theta <- theta + m                              (plain)
        theta <- theta + momentum * m - alpha * g       (nesterov)

    With ``momentum_buffer="gradient"`` (TF1's ``MomentumOptimizer`` and ``torch.optim.SGD``)
    it holds gradients and the learning rate is applied afterwards::

        b     <- momentum * b + (1 - dampening) * g     (first step: b <- g)
        theta <- theta - alpha * b                      (plain)
        theta <- theta - alpha * (g + momentum * b)     (nesterov)

    The two agree while the learning rate is constant; under a schedule the "step" form keeps
    past steps at the learning rate they were taken with, the "gradient" form rescales the
    whole buffer by today's rate. ``dampening`` exists only in the "gradient" form.

    References: Polyak, "Some methods of speeding up the convergence of iteration methods"
    (1964); Sutskever et al., "On the importance of initialization and momentum in deep
    learning" (ICML 2013).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.01.
        momentum: in [0, 1). Defaults to 0.0.
        nesterov: use Nesterov momentum. Defaults to False.
        dampening: in [0, 1), scales the gradient entering the buffer ("gradient" form only).
        momentum_buffer: ``"step"`` or ``"gradient"``, see above.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        dampening=0.0,
        momentum_buffer="step",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = check_unit_interval("momentum", momentum)
        self.nesterov = bool(nesterov)
        self.dampening = check_range("dampening", dampening, 0.0, 1.0, high_open=True)
        self.momentum_buffer = check_choice("momentum_buffer", momentum_buffer, ("step", "gradient"))
        if dampening and momentum_buffer != "gradient":
            raise ValueError(
                "`dampening` requires `momentum_buffer='gradient'` (PyTorch's form). "
                f"Received: dampening={dampening}, momentum_buffer={momentum_buffer!r}"
            )
        # With momentum 0, Nesterov's step is plain SGD's: Keras accepts it, and so do we.
        # PyTorch refuses Nesterov with dampening (its step is no longer Nesterov's).
        if nesterov and dampening:
            raise ValueError(
                "Nesterov momentum requires `dampening` == 0. "
                f"Received: nesterov=True, dampening={dampening}"
            )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if not self.momentum:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        m = self.momentums[self._get_variable_index(variable)]
        momentum = self.hyperparameter(self.momentum)
        if self.momentum_buffer == "step":
            step = ops.multiply(gradient, learning_rate)
            self.assign(m, ops.subtract(ops.multiply(m, momentum), step))
            if self.nesterov:
                self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), step))
            else:
                self.assign_add(variable, m)
            return
        incoming = gradient
        if self.dampening:
            # PyTorch seeds the buffer with the undampened first gradient.
            first = ops.equal(self.iterations, 0)
            incoming = ops.where(first, gradient, ops.multiply(gradient, 1 - self.dampening))
        self.assign(m, ops.add(ops.multiply(m, momentum), incoming))
        direction = ops.add(gradient, ops.multiply(m, momentum)) if self.nesterov else m
        self.assign_sub(variable, ops.multiply(direction, learning_rate))

    def training_op(self):
        """TensorFlow's ``ResourceApplyGradientDescent`` without momentum and
        ``ResourceApplyKerasMomentum`` for the "step" form compute :meth:`update_step`'s
        operations in its order; no kernel has the "gradient" form's."""
        if not self.momentum:
            return apply_gradient_descent
        if self.momentum_buffer != "step":
            return None
        import tensorflow as tf

        def step(gradient, variable, learning_rate):
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=resource(variable),
                accum=resource(self.momentums[self._get_variable_index(variable)]),
                lr=learning_rate,
                grad=gradient,
                momentum=ops.convert_to_tensor(self.hyperparameter(self.momentum), variable.dtype),
                use_nesterov=self.nesterov,
            )

        return step
