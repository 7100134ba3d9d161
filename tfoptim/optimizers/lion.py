import keras
from keras import ops

from tfoptim._validation import check_choice, check_range, check_unit_interval
from tfoptim.optimizers._moments import cautious, decay_and_add, read, store
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class Lion(Optimizer):
    """Lion: the sign of an interpolated momentum, so every coordinate moves by the learning rate.

    Update rule at step ``t = 1, 2, ...`` (``m`` starts at 0)::

        c     =  beta_1 * m + (1 - beta_1) * g        (the direction of this step)
        theta <- theta - alpha * sign(c)              (sign(0) = 0: no move)
        m     <- beta_2 * m + (1 - beta_2) * g        (the momentum, after the step)

    Two betas: the step interpolates with ``beta_1``, the state remembers with ``beta_2`` (by
    default the longer memory, 0.99 against 0.9). Keras's decoupled ``weight_decay`` shrinks the
    weights first, ``theta <- theta - alpha * wd * theta``, with ``g`` taken at the unshrunk
    weights: together the paper's ``theta <- theta - alpha * (sign(c) + wd * theta)``.
    ``coupled_weight_decay`` adds ``lambda * theta`` to ``g`` before ``c`` and ``m``
    (``pytorch_optimizer.Lion`` with ``weight_decouple=False``).

    One slot (half of Adam's state), and every step moves each coordinate by exactly ``alpha``
    (where ``c != 0``): the update's norm is larger than Adam's, so the paper takes rates 3-10x
    smaller than AdamW's and a weight decay 3-10x larger (the same ``alpha * wd``).

    Rule, arguments and defaults are those of ``keras.optimizers.Lion`` (the same trajectories,
    to the last bit at the defaults), except that ``beta_1 = 0`` (signSGD: ``sign(g)``) is
    allowed. ``c`` and ``m`` are computed as the authors' code and Keras write them
    (``m * beta + g * (1 - beta)``); ``pytorch_optimizer.Lion`` uses ``lerp``
    (``m + (1 - beta) * (g - m)``), which differs in the last bits only, so a sign can differ
    only where ``c`` cancels to within rounding. The authors' code and ``pytorch_optimizer``
    default to a rate of 1e-4.

    ``cautious=True`` (C-Lion, Liang et al. 2024) zeroes the components of ``sign(c)`` that
    disagree with ``g`` and rescales the rest by the share kept (see
    :func:`tfoptim.optimizers._moments.cautious`)::

        mask  =  (sign(c) * g > 0)
        theta <- theta - alpha * sign(c) * mask / max(mean(mask), 1e-3)

    as timm's ``Lion(caution=True)``; the authors' ``c_lion.py`` and ``pytorch_optimizer``
    divide by ``(sum(mask) + 1) / size`` instead. ``moment_dtype="bfloat16"`` stores ``m`` in
    bfloat16 (computed in the variable's dtype, rounded when written, see :class:`Adam`).

    Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms" (NeurIPS 2023,
    arXiv:2302.06675), Algorithm 2; official implementation google/automl (``lion``).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable: the size of every
            coordinate's step. Defaults to 0.001.
        beta_1: weight of the momentum in the step's direction, in [0, 1]; 0 steps by the sign
            of the gradient, 1 by the sign of the momentum alone. Defaults to 0.9.
        beta_2: decay of the momentum, in [0, 1). Defaults to 0.99.
        cautious: mask the step where it disagrees with the gradient. Defaults to False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``. Defaults to
            ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.99,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_range("beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)
        self.init_cautious(cautious)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums = self.add_moment_variables(variables, "momentum")

    def update_phases(self):
        # Both phases read the old momentum; apart, XLA updates the weights and the momentum
        # in place (see Optimizer.update_phases).
        return (self._step_weights, self._update_momentum)

    def _step_weights(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        learning_rate = ops.cast(learning_rate, dtype)
        beta_1 = self.hyperparameter(self.beta_1)
        m = read(self._momentums[self._get_variable_index(variable)], dtype)
        direction = ops.add(ops.multiply(m, beta_1), ops.multiply(gradient, 1.0 - beta_1))
        update = ops.sign(direction)
        if self.cautious:
            update = cautious(update, gradient)
        self.assign_sub(variable, ops.multiply(learning_rate, update))

    def _update_momentum(self, gradient, variable, learning_rate):
        beta_2 = self.hyperparameter(self.beta_2)
        slot = self._momentums[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        if self.moment_dtype == "float32":
            decay_and_add(self, slot, beta_2, gradient, 1.0 - beta_2)
            return
        m = read(slot, variable.dtype)
        store(self, slot, ops.add(ops.multiply(m, beta_2), ops.multiply(gradient, 1.0 - beta_2)))
