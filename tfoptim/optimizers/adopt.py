import keras
from keras import ops

from tfoptim._validation import check_choice, check_positive, check_unit_interval
from tfoptim.optimizers._moments import cautious, read, scalar_dtype, store
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class ADOPT(Optimizer):
    """ADOPT: Adam that normalises by the previous second moment, then takes the momentum.

    The first step only initialises ``v <- g**2`` (the weights stay). Then, at update
    ``k = 1, 2, ...`` (step ``k + 1``)::

        n     <- clip(g / max(sqrt(v), eps), -k**clip_exponent, k**clip_exponent)
        m     <- beta_1 * m + (1 - beta_1) * n
        theta <- theta - alpha * m
        v     <- beta_2 * v + (1 - beta_2) * g**2       (after its use: v holds no g_t)

    Normalising ``g_t`` by a ``v`` that does not contain it, and before the momentum, is what
    makes ADOPT converge for any ``beta_2``. The clip (``clip_exponent=None``: none, as in the
    first version of the paper and code) bounds the first steps, while ``v`` rests on few
    gradients. ``weight_decay`` is decoupled (``theta <- theta - alpha * wd * theta``) and, as in
    the official code, skips the initialising step; L2 in the gradient is the base's
    ``coupled_weight_decay`` (the official ``decouple=False``), which does enter ``v``'s start.

    This is the official code's clipped version (Nov. 2024), whose threshold at update ``k`` is
    ``k**0.25``; pytorch_optimizer's port uses ``(k + 1)**0.25`` and also decays the weights on
    the initialising step. A later revision of the official code replaces the clip by an
    epsilon schedule ``max(eps, beta_3**(k - 1))``; it is not implemented here.

    ``cautious=True`` (Liang et al. 2024) masks the step ``m`` where it disagrees in sign with
    ``g``: ``theta <- theta - alpha * m * mask / max(mean(mask), 1e-3)``, ``mask = (m * g > 0)``
    (see :func:`tfoptim.optimizers._moments.cautious`); ``m`` itself is not masked and the
    weight decay is not masked. This is timm's ``Adopt(caution=True)``;
    ``pytorch_optimizer.ADOPT(cautious=True)`` compares with the normalised ``n`` (the same
    signs) and divides by ``(sum(mask) + 1) / size``. ``moment_dtype="bfloat16"`` stores ``m``
    and ``v`` in bfloat16, computed in the variable's dtype and rounded when written, as in
    :class:`Adam`.

    Reference: Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa
    & Matsuo, "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal Rate"
    (NeurIPS 2024, arXiv:2411.02853); official implementation iShohei220/adopt.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the momentum, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.9999.
        epsilon: lower bound of ``sqrt(v)``, > 0. Defaults to 1e-6.
        clip_exponent: the clip threshold is ``k**clip_exponent``, > 0; None: no clip.
            Defaults to 0.25.
        cautious: mask the step where it disagrees with the gradient, see above. Defaults to
            False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``, see above.
            Defaults to ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`; ``weight_decay`` (>= 0,
            default None: none) is applied as described above.
    """

    #: ADOPT decays only on the steps that move the weights (not the first).
    weight_decay_in_rule = True
    per_variable_weight_decay = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.9999,
        epsilon=1e-6,
        clip_exponent=0.25,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.clip_exponent = (
            None if clip_exponent is None else check_positive("clip_exponent", clip_exponent)
        )
        self.init_cautious(cautious)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_moment_variables(
            variables, ["momentum", "velocity"]
        )

    def update_phases(self):
        # The momentum's update reads the old v, which the second phase overwrites; in one XLA
        # call v would not be updated in place (see Optimizer.update_phases).
        return (self._update_momentum, self._step_weights_and_velocity)

    def _update_momentum(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        # Read explicitly: on JAX, `where` does not convert a Variable operand.
        m = ops.convert_to_tensor(read(self._momentums[index], dtype))
        v = read(self._velocities[index], dtype)
        normalized = ops.divide(gradient, ops.maximum(ops.sqrt(v), self.epsilon))
        if self.clip_exponent is not None:
            # The update's index k: the steps before this one (the first step only set v).
            updates = ops.cast(self.iterations, scalar_dtype(dtype))
            bound = ops.cast(ops.power(updates, self.clip_exponent), dtype)
            normalized = ops.clip(normalized, ops.negative(bound), bound)
        m_new = ops.add(m, ops.multiply(ops.subtract(normalized, m), 1 - self.beta_1))
        store(self, self._momentums[index], ops.where(ops.equal(self.iterations, 0), m, m_new))

    def _step_weights_and_velocity(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        first = ops.equal(self.iterations, 0)
        learning_rate = ops.cast(learning_rate, dtype)
        index = self._get_variable_index(variable)
        v = read(self._velocities[index], dtype)
        m = read(self._momentums[index], dtype)
        if self.cautious:
            m = cautious(m, gradient)
        moved = ops.subtract(variable, ops.multiply(m, learning_rate))
        decay = self.weight_decay_of(variable)
        if decay:
            rate = ops.cast(ops.multiply(learning_rate, self.hyperparameter(decay)), dtype)
            moved = ops.subtract(moved, ops.multiply(variable, rate))
        self.assign(variable, ops.where(first, ops.convert_to_tensor(variable), moved))
        square = ops.square(gradient)
        v_new = ops.add(v, ops.multiply(ops.subtract(square, v), 1 - self.beta_2))
        store(self, self._velocities[index], ops.where(first, square, v_new))
