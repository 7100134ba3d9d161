import keras
from keras import ops

from tfoptim._validation import (
    check_choice,
    check_non_negative,
    check_positive,
    check_range,
    check_steps,
    check_unit_interval,
)
from tfoptim.optimizers._moments import (
    cautious,
    keep_maximum,
    local_step,
    rectified_step,
    update_moment,
    warmup_learning_rate,
)
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class RAdam(Optimizer):
    """RAdam: Adam whose adaptive step is rectified while the second moment is still noisy.

    Update rule at step ``t = 1, 2, ...``::

        m       <- beta_1 * m + (1 - beta_1) * g
        v       <- beta_2 * v + (1 - beta_2) * g**2          (amsgrad: v_max <- max(v_max, v))
        rho_inf =  2 / (1 - beta_2) - 1
        rho_t   =  rho_inf - 2 t beta_2**t / (1 - beta_2**t)
        r_t     =  sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
        if rho_t >= sma_threshold:
            theta <- theta - alpha * r_t * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + eps)
        elif degenerated_to_sgd:
            theta <- theta - alpha / (1 - beta_1**t) * m          (momentum SGD)
        else:
            theta unchanged                                       (the moments still update)

    ``rho_t`` is the length of the simple moving average the EMA ``v`` approximates; below the
    threshold the variance of ``1 / sqrt(v)`` is intractable (infinite below 4) and the step
    does without it. With ``beta_2 = 0.999`` the first five steps fall below the default 5.

    Defaults are the authors' code (LiyuanLucasLiu/RAdam, ``radam.py``), which deviates from
    the paper's Algorithm 2 in two places, followed here: the threshold is ``rho_t >= 5``, not
    ``> 4`` ("more conservative since it's an approximated value"), and below it the official
    ``RAdam`` makes no update (``degenerated_to_sgd=False``; the paper, an earlier default of the
    official code, ``torch.optim.RAdam`` and TFA take the momentum step, ``True``). The official
    code skips its weight decay on those skipped steps too; Keras's ``weight_decay`` here decays
    on every step. Epsilon is added to the raw ``sqrt(v)`` as in the official code and
    ``torch.optim.RAdam``; TFA's ``RectifiedAdam`` adds it after the bias correction,
    ``m / (sqrt(v / (1 - beta_2**t)) + eps)``: ``bias_corrected_epsilon=True``.

    TFA's warm-up is available: with ``total_steps > 0`` the rate rises linearly from 0 to
    ``learning_rate`` over the first ``warmup_proportion * total_steps`` updates, then falls
    linearly to ``min_learning_rate`` at ``total_steps``; it scales the whole step, Keras's
    decoupled ``weight_decay`` included (as TFA's does).

    ``cautious=True`` (C-RAdam, Liang et al. 2024) masks ``m`` in the step (both forms) where
    it disagrees in sign with ``g``, ``m * mask / max(mean(mask), 1e-3)`` with
    ``mask = (m * g > 0)``, as :class:`Adam` does (see
    :func:`tfoptim.optimizers._moments.cautious`); the moments themselves are not masked.
    Neither the authors' code nor timm or ``pytorch_optimizer`` offer it: tested against the
    paper's masking written in NumPy. ``moment_dtype="bfloat16"`` stores ``m``, ``v`` (and
    ``v_max``) in bfloat16, computed in the variable's dtype and rounded when written, as in
    :class:`Adam`.

    Reference: Liu, Jiang, He, Chen, Liu, Gao & Han, "On the Variance of the Adaptive Learning
    Rate and Beyond" (ICLR 2020).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        epsilon: > 0. Defaults to 1e-8 (official code, PyTorch; TFA: 1e-7).
        sma_threshold: smallest ``rho_t`` that takes the rectified step, >= 4. Defaults to 5.
        degenerated_to_sgd: below the threshold, take the momentum step (True) or none
            (False). Defaults to False.
        bias_corrected_epsilon: add epsilon after the bias correction of ``v`` (TFA). Defaults
            to False.
        amsgrad: use the running maximum of ``v`` (TFA's option; not in the paper).
        total_steps: length of TFA's warm-up-and-decay, an integer >= 0; 0 turns it off.
        warmup_proportion: fraction of ``total_steps`` spent warming up, in [0, 1]. Defaults
            to 0.1.
        min_learning_rate: rate reached at ``total_steps``, >= 0. Defaults to 0.
        cautious: mask the step where it disagrees with the gradient, see above. Defaults to
            False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``, see above.
            Defaults to ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        sma_threshold=5.0,
        degenerated_to_sgd=False,
        bias_corrected_epsilon=False,
        amsgrad=False,
        total_steps=0,
        warmup_proportion=0.1,
        min_learning_rate=0.0,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.sma_threshold = check_range("sma_threshold", sma_threshold, 4.0)
        self.degenerated_to_sgd = bool(degenerated_to_sgd)
        self.bias_corrected_epsilon = bool(bias_corrected_epsilon)
        self.amsgrad = bool(amsgrad)
        self.total_steps = check_steps("total_steps", total_steps)
        self.warmup_proportion = check_range("warmup_proportion", warmup_proportion, 0.0, 1.0)
        self.min_learning_rate = check_non_negative("min_learning_rate", min_learning_rate)
        self.init_cautious(cautious)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_moment_variables(
            variables, ["momentum", "velocity"]
        )
        self._velocity_hats = []
        if self.amsgrad:
            self._velocity_hats = self.add_moment_variables(variables, "velocity_hat")

    def step_learning_rate(self, learning_rate):
        # TFA's warm-up, before the base applies the rate: Keras's decoupled weight decay
        # follows the warmed-up rate, as TFA's weight decay does.
        return warmup_learning_rate(self, learning_rate) if self.total_steps else learning_rate

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        index = self._get_variable_index(variable)
        m = update_moment(self, self._momentums[index], gradient, self.beta_1)
        v = update_moment(self, self._velocities[index], ops.square(gradient), self.beta_2)
        if self.amsgrad:
            v = keep_maximum(self, self._velocity_hats[index], v)
        if self.cautious:
            m = cautious(m, gradient)
        self.assign_sub(variable, rectified_step(self, m, v, learning_rate, step))
