import keras
from keras import ops

from tfoptim._validation import check_choice, check_non_negative, check_positive, check_unit_interval
from tfoptim.optimizers._moments import local_step, scalar_dtype
from tfoptim.optimizers.base import Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class NovoGrad(Optimizer):
    """NovoGrad: momentum on gradients normalised per layer by a moving average of their norm.

    Update rule at step ``t = 1, 2, ...``, for each variable (a "layer") as a whole::

        v     <- ||g||**2 at t = 1, then beta_2 * v + (1 - beta_2) * ||g||**2   (one scalar)
        u     =  g / (sqrt(v) + eps) + moment_weight_decay * theta
        u     <- (1 - beta_1) * u                                 (grad_averaging)
        m     <- beta_1 * m + u
        theta <- theta - alpha * m

    The second moment is a single scalar per variable, so the state is one slot the size of the
    weights plus a number. ``amsgrad`` normalises by the running maximum of ``v`` instead. The
    paper's weight decay sits inside the moment (``moment_weight_decay``: TFA's and NeMo's
    ``weight_decay``); Keras's ``weight_decay`` (decoupled) and ``coupled_weight_decay`` work too.

    Defaults and rule follow the authors' implementation, NVIDIA NeMo's ``Novograd`` (betas
    0.95/0.98, epsilon 1e-8 outside the root; ``torch_optimizer.NovoGrad`` is the same code). It
    deviates from the paper's Algorithm 1, which starts the moment at ``m_1 = u_1``: with
    ``grad_averaging`` NeMo scales the first ``u`` by ``1 - beta_1`` too; TFA's ``NovoGrad``
    follows the paper there, ``average_first_step=False``. TFA also keeps Keras's form of
    momentum, a buffer of steps (``m <- beta_1 * m - alpha * u; theta <- theta + m``):
    ``momentum_buffer="step"``, the same trajectory under a constant rate, not under a schedule.
    NeMo and TFA detect the first step from the state being zero and the iteration count
    respectively; here it is the iteration count.

    Reference: Ginsburg, Castonguay, Hrinchuk, Kuchaiev, Lavrukhin, Leary, Li, Nguyen, Zhang &
    Cohen, "Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep
    Networks" (2019), arXiv:1905.11286.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: momentum, in [0, 1). Defaults to 0.95 (TFA: 0.9).
        beta_2: decay of the per-layer second moment, in [0, 1). Defaults to 0.98 (TFA: 0.999).
        epsilon: > 0. Defaults to 1e-8 (TFA: 1e-7).
        moment_weight_decay: the paper's weight decay ``d``, added to the normalised gradient,
            >= 0. Defaults to 0.
        grad_averaging: scale ``u`` by ``1 - beta_1`` (an EMA instead of a sum). Defaults to False.
        amsgrad: normalise by the running maximum of ``v``. Defaults to False.
        momentum_buffer: ``"gradient"`` (NeMo, the paper) or ``"step"`` (TFA, Keras), see above.
        average_first_step: with ``grad_averaging``, scale the first step's ``u`` too (NeMo) or
            not (the paper, TFA). Defaults to True.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    # The second moment is per variable (one norm each): a flat buffer would share one.
    elementwise = False

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.95,
        beta_2=0.98,
        epsilon=1e-8,
        moment_weight_decay=0.0,
        grad_averaging=False,
        amsgrad=False,
        momentum_buffer="gradient",
        average_first_step=True,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.moment_weight_decay = check_non_negative("moment_weight_decay", moment_weight_decay)
        self.grad_averaging = bool(grad_averaging)
        self.amsgrad = bool(amsgrad)
        self.momentum_buffer = check_choice("momentum_buffer", momentum_buffer, ("gradient", "step"))
        self.average_first_step = bool(average_first_step)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums = self.add_optimizer_variables(variables, "momentum")

        # One number per variable, kept in at least float32 (a bfloat16 sum of squares of a
        # whole layer would lose most of its digits).
        def scalars(name):
            return [
                self.add_variable(
                    shape=(),
                    dtype=scalar_dtype(variable.dtype),
                    initializer="zeros",
                    name=f"{variable.name.split(':')[0]}_{name}",  # a raw tf.Variable's ends in ":0"
                )
                for variable in variables
            ]

        self._second_moments = scalars("second_moment")
        self._second_moment_maxima = scalars("second_moment_max") if self.amsgrad else []

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        first = ops.equal(step, 1)
        index = self._get_variable_index(variable)
        v = self._second_moments[index]
        squared_norm = ops.sum(ops.square(ops.cast(gradient, v.dtype)))
        average = ops.add(ops.multiply(v, self.beta_2), ops.multiply(squared_norm, 1.0 - self.beta_2))
        self.assign(v, ops.where(first, squared_norm, average))
        if self.amsgrad:
            v_max = self._second_moment_maxima[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        u = ops.divide(gradient, ops.cast(ops.add(ops.sqrt(v), self.epsilon), dtype))
        if self.moment_weight_decay and self._use_weight_decay(variable):
            u = ops.add(u, ops.multiply(variable, self.hyperparameter(self.moment_weight_decay)))
        if self.grad_averaging:
            scale = ops.convert_to_tensor(1.0 - self.beta_1, step.dtype)
            if not self.average_first_step:
                scale = ops.where(first, ops.ones_like(scale), scale)
            u = ops.multiply(u, ops.cast(scale, dtype))
        m = self._momentums[index]
        learning_rate = ops.cast(learning_rate, dtype)
        if self.momentum_buffer == "gradient":
            self.assign(m, ops.add(ops.multiply(m, self.beta_1), u))
            self.assign_sub(variable, ops.multiply(learning_rate, m))
        else:
            self.assign(m, ops.subtract(ops.multiply(m, self.beta_1), ops.multiply(learning_rate, u)))
            self.assign_add(variable, m)
