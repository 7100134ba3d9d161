import keras
from keras import ops

from tfoptim._validation import check_choice, check_positive, check_unit_interval
from tfoptim.optimizers._moments import (
    bias_correction,
    cautious,
    local_step,
    read,
    store,
    update_moment,
)
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer
from tfoptim.optimizers.graph import is_sparse


@keras.saving.register_keras_serializable(package="tfoptim")
class Adan(Optimizer):
    """Adan: Adam-style scaling with a Nesterov momentum estimated from gradient differences.

    Update rule at step ``t = 1, 2, ...``, with ``d = g - g_prev`` (``d = 0`` at ``t = 1``,
    where ``g_prev = g``)::

        m     <- beta_1 * m + (1 - beta_1) * g                 (gradient momentum)
        v     <- beta_2 * v + (1 - beta_2) * d                 (gradient-difference momentum)
        n     <- beta_3 * n + (1 - beta_3) * (g + beta_2 * d)**2
        u     <- (m / (1 - beta_1**t) + beta_2 * v / (1 - beta_2**t))
                 / (sqrt(n) / sqrt(1 - beta_3**t) + eps)
        theta <- (theta - alpha * u) / (1 + alpha * weight_decay)           (default)
        theta <- theta * (1 - alpha * weight_decay) - alpha * u             (no_prox=True)

    The betas are the official implementation's: the weight kept on the old value, as in Adam.
    The paper writes ``1 - beta`` (its ``beta_1 = 0.02, beta_2 = 0.08, beta_3 = 0.01`` are the
    defaults 0.98, 0.92, 0.99 here). As in the official code (and unlike the paper's
    Algorithm 1) the three moments are bias-corrected. ``weight_decay`` is Adan's own: by
    default the paper's proximal step (divide after the update); ``no_prox=True`` shrinks the
    weights first, which is Keras's decoupled decay. The official ``max_grad_norm`` is Keras's
    ``global_clipnorm`` (the official divides by ``norm + eps``, Keras by ``max(norm, clip)``).

    ``cautious=True`` (Liang et al. 2024) masks the gradient momentum where it disagrees in
    sign with ``g``: ``m * mask / max(mean(mask), 1e-3)`` for ``m`` in ``u``,
    ``mask = (m * g > 0)`` (see :func:`tfoptim.optimizers._moments.cautious`); the
    gradient-difference term ``beta_2 * v``, the moments themselves and the weight decay are not
    masked. This is timm's ``Adan(caution=True)``; the paper's general rule would mask all of
    ``u``. ``moment_dtype="bfloat16"`` stores ``m``, ``v``, ``n`` and the previous gradient in
    bfloat16 (so ``d = g - g_prev`` uses the rounded ``g_prev``: the whole state halves),
    computed in the variable's dtype and rounded when written, as in :class:`Adam`.

    Reference: Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models" (IEEE TPAMI 2024, arXiv:2208.06677); official implementation
    sail-sg/Adan.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the gradient momentum, in [0, 1). Defaults to 0.98.
        beta_2: decay of the gradient-difference momentum, in [0, 1). Defaults to 0.92.
        beta_3: decay of the second moment, in [0, 1). Defaults to 0.99.
        epsilon: > 0. Defaults to 1e-8.
        no_prox: apply ``weight_decay`` before the step instead of the proximal division.
            Defaults to False.
        cautious: mask the gradient momentum's term where it disagrees with the gradient, see
            above. Defaults to False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``, see above.
            Defaults to ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`; ``weight_decay`` (>= 0,
            default None: none) is applied as described above.
    """

    #: Adan decays inside its rule: proximal (after the step) by default.
    weight_decay_in_rule = True
    per_variable_weight_decay = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.98,
        beta_2=0.92,
        beta_3=0.99,
        epsilon=1e-8,
        no_prox=False,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.beta_3 = check_unit_interval("beta_3", beta_3)
        self.epsilon = check_positive("epsilon", epsilon)
        self.no_prox = bool(no_prox)
        self.init_cautious(cautious)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        (
            self._momentums,
            self._difference_momentums,
            self._velocities,
            self._previous_gradients,
        ) = self.add_moment_variables(
            variables, ["momentum", "difference_momentum", "velocity", "previous_gradient"]
        )

    def update_phases(self):
        # The moments read the previous gradient, which the second phase overwrites; in one XLA
        # call it would not be updated in place (see Optimizer.update_phases).
        return (self._update_moments, self._step_weights)

    def _dense_gradient(self, gradient, variable):
        gradient = ops.cast(gradient, variable.dtype)
        if is_sparse(gradient):
            # g_prev must become 0 where a sparse gradient has no row; assigning the
            # IndexedSlices would leave those rows as they were.
            gradient = ops.add(ops.zeros_like(variable), gradient)
        return gradient

    def _update_moments(self, gradient, variable, learning_rate):
        gradient = self._dense_gradient(gradient, variable)
        step = local_step(self, variable.dtype)
        index = self._get_variable_index(variable)
        previous = read(self._previous_gradients[index], variable.dtype)
        # The official code starts g_prev at g_1, so the first difference is exactly zero.
        difference = ops.where(
            ops.equal(step, 1), ops.zeros_like(gradient), ops.subtract(gradient, previous)
        )
        update_moment(self, self._momentums[index], gradient, self.beta_1)
        update_moment(self, self._difference_momentums[index], difference, self.beta_2)
        update_moment(
            self,
            self._velocities[index],
            ops.square(ops.add(gradient, ops.multiply(difference, self.beta_2))),
            self.beta_3,
        )

    def _step_weights(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        index = self._get_variable_index(variable)
        m = read(self._momentums[index], dtype)
        v = read(self._difference_momentums[index], dtype)
        n = read(self._velocities[index], dtype)
        gradient = self._dense_gradient(gradient, variable)
        store(self, self._previous_gradients[index], gradient)
        if self.cautious:
            m = cautious(m, gradient)

        root_3 = ops.cast(ops.sqrt(bias_correction(self.hyperparameter(self.beta_3), step)), dtype)
        denominator = ops.add(ops.divide(ops.sqrt(n), root_3), self.epsilon)
        step_1 = ops.cast(
            ops.divide(learning_rate, bias_correction(self.hyperparameter(self.beta_1), step)), dtype
        )
        step_2 = ops.cast(
            ops.divide(
                ops.multiply(learning_rate, self.beta_2),
                bias_correction(self.hyperparameter(self.beta_2), step),
            ),
            dtype,
        )
        update = ops.divide(
            ops.add(ops.multiply(m, step_1), ops.multiply(v, step_2)), denominator
        )
        decay = self.weight_decay_of(variable)
        if decay:
            shrink = ops.cast(ops.multiply(learning_rate, self.hyperparameter(decay)), dtype)
        if decay and self.no_prox:
            self.assign_sub(variable, ops.multiply(variable, shrink))
        self.assign_sub(variable, update)
        if decay and not self.no_prox:
            self.assign(variable, ops.divide(variable, ops.add(shrink, 1)))
