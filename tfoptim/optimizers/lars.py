import re

import keras
from keras import ops

from tfoptim._validation import check_non_negative, check_positive, check_unit_interval
from tfoptim.optimizers._moments import scalar_dtype
from tfoptim.optimizers.base import Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class LARS(Optimizer):
    """LARS: momentum SGD with a per-layer step size set by the ratio of weight and gradient norms.

    Each variable (a layer's kernel) gets its own "trust ratio", so every layer moves by about
    the same fraction ``alpha * trust_coefficient`` of its norm per step whatever the scale of
    its gradient: what makes very large batches (and their large rates) trainable::

        g      <- g + beta * theta                     (beta: lars_weight_decay)
        ratio  <- trust_coefficient * ||theta|| / (||g_raw|| + beta * ||theta|| + epsilon)
                  (1 where ||theta|| or the denominator is 0: a layer initialised at zero)
        m      <- momentum * m - alpha * ratio * g
        theta  <- theta + m                            (nesterov: theta + momentum * m - alpha * ratio * g)

    ``g_raw`` is the gradient before the decay term; norms are over the whole variable.

    Excluded variables take plain momentum SGD steps (no ratio, no ``lars_weight_decay``):
    with ``exclude_bias_and_norm=True`` every variable of fewer than 2 dimensions (in Keras,
    the biases and the normalization layers' scales and offsets, as pytorch_optimizer does and
    as SimCLR, BYOL and Barlow Twins configure by name), and any variable whose path matches a
    regular expression of ``exclude_from_layer_adaptation`` (as TF Model Garden's LARS).

    Which implementation this follows: the paper's Algorithm 1 and pytorch_optimizer (the
    reference trajectories) for the ratio, whose denominator adds ``beta * ||theta||`` to the
    raw gradient's norm; TF Model Garden's LARS (SimCLR's) uses ``||g + beta * theta||``
    instead, which ``coupled_weight_decay`` gives here (the base class adds it to the gradient
    before the rule, for every variable). The momentum buffer holds steps, with the rate inside,
    as in the paper and Model Garden; pytorch_optimizer buffers gradients and applies the rate
    afterwards, the same trajectory under a constant rate but not under a schedule. Model
    Garden's ``classic_momentum=False`` variant and pytorch_optimizer's ``dampening`` are not
    offered. Keras's ``weight_decay`` stays decoupled, outside the ratio.

    Reference: You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks"
    (arXiv:1708.03888, 2017).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.01
            (Model Garden's; the paper sets none). With ``trust_coefficient=0.001`` a layer
            moves by ``lr / 1000`` of its norm per step: large-batch recipes use rates of
            about 1 to 10, usually with warmup and decay.
        momentum: in [0, 1). Defaults to 0.9.
        nesterov: use Nesterov momentum. Defaults to False.
        trust_coefficient: > 0, the paper's eta. Defaults to 0.001.
        epsilon: >= 0, added to the ratio's denominator. Defaults to 0.0 (paper).
        lars_weight_decay: >= 0, the paper's L2 weight decay beta, inside the ratio.
            Defaults to 0.0.
        exclude_bias_and_norm: exclude variables of fewer than 2 dimensions. Defaults to True.
        exclude_from_layer_adaptation: list of regular expressions; variables whose path
            matches one are excluded. Defaults to None.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    # The trust ratio is per variable: a flat buffer of several would share one.
    elementwise = False

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.9,
        nesterov=False,
        trust_coefficient=0.001,
        epsilon=0.0,
        lars_weight_decay=0.0,
        exclude_bias_and_norm=True,
        exclude_from_layer_adaptation=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = check_unit_interval("momentum", momentum)
        self.nesterov = bool(nesterov)
        if nesterov and not momentum:
            raise ValueError(
                f"Nesterov momentum requires `momentum` > 0. Received: momentum={momentum}"
            )
        self.trust_coefficient = check_positive("trust_coefficient", trust_coefficient)
        self.epsilon = check_non_negative("epsilon", epsilon)
        self.lars_weight_decay = check_non_negative("lars_weight_decay", lars_weight_decay)
        self.exclude_bias_and_norm = bool(exclude_bias_and_norm)
        patterns = exclude_from_layer_adaptation
        if patterns is not None:
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(
                    "`exclude_from_layer_adaptation` must be a list of regular expressions. "
                    f"Received: exclude_from_layer_adaptation={patterns!r}"
                )
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise ValueError(
                        f"`exclude_from_layer_adaptation` holds an invalid regular expression "
                        f"{pattern!r} ({error}). Received: exclude_from_layer_adaptation={patterns!r}"
                    ) from None
            patterns = list(patterns)
        self.exclude_from_layer_adaptation = patterns

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums = []
        if self.momentum:
            self._momentums = self.add_optimizer_variables(variables, "momentum")
        patterns = self.exclude_from_layer_adaptation or []
        # Decided once here, from the Keras variables' paths: update_step may see only the
        # backend variable.
        self._adapted = [
            not (self.exclude_bias_and_norm and len(v.shape) < 2)
            and not any(re.search(p, getattr(v, "path", v.name)) for p in patterns)
            for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        rate = ops.cast(learning_rate, dtype)
        index = self._get_variable_index(variable)
        if self._adapted[index]:
            # Norms in at least float32: a bfloat16 sum of squares loses the ratio.
            norm_dtype = scalar_dtype(dtype)
            weight_norm = ops.norm(ops.reshape(ops.cast(variable, norm_dtype), (-1,)))
            gradient_norm = ops.norm(ops.reshape(ops.cast(gradient, norm_dtype), (-1,)))
            denominator = gradient_norm
            if self.lars_weight_decay:
                decay = self.hyperparameter(self.lars_weight_decay)
                denominator = ops.add(denominator, ops.multiply(weight_norm, decay))
                # A Python float converted straight to the variable's dtype: `ops.cast` would
                # make it a float32 tensor first and lose `exact_hyperparameters`.
                gradient = ops.add(gradient, ops.multiply(variable, ops.convert_to_tensor(decay, dtype)))
            if self.epsilon:
                denominator = ops.add(denominator, self.epsilon)
            usable = ops.logical_and(ops.greater(weight_norm, 0), ops.greater(denominator, 0))
            ratio = ops.where(
                usable,
                ops.divide(
                    ops.multiply(weight_norm, self.trust_coefficient),
                    ops.where(usable, denominator, 1),
                ),
                1,
            )
            rate = ops.multiply(rate, ops.cast(ratio, dtype))
        step = ops.multiply(gradient, rate)
        if not self.momentum:
            self.assign_sub(variable, step)
            return
        m = self._momentums[index]
        momentum = self.hyperparameter(self.momentum)
        self.assign(m, ops.subtract(ops.multiply(m, momentum), step))
        if self.nesterov:
            self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), step))
        else:
            self.assign_add(variable, m)
