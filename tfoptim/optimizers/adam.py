import keras
from keras import ops

from tfoptim.optimizers._moments import (
    adam_step,
    bias_correction,
    cautious,
    keep_maximum,
    local_step,
    update_moment,
)
from tfoptim._validation import check_choice, check_positive, check_unit_interval
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class Adam(Optimizer):
    """Adam: momentum on the gradient, scaled by a moving root-mean-square, bias-corrected.

    Update rule at step ``t = 1, 2, ...``::

        m     <- beta_1 * m + (1 - beta_1) * g            (first moment: the momentum)
        v     <- beta_2 * v + (1 - beta_2) * g**2         (second moment)
        v_max <- max(v_max, v); use v_max for v           (amsgrad only)
        theta <- theta - alpha * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + eps)

    That last line (Keras, TF1: the paper's "epsilon hat" form) adds epsilon to the
    *uncorrected* ``sqrt(v)``. With ``bias_corrected_epsilon=True`` it is added after the
    correction, as in the paper's Algorithm 1 and PyTorch::

        theta <- theta - alpha / (1 - beta_1**t) * m / (sqrt(v) / sqrt(1 - beta_2**t) + eps)

    The two differ only while ``sqrt(v)`` is comparable to epsilon.

    ``cautious=True`` (C-Adam/C-AdamW, Liang et al. 2024) masks the momentum where it
    disagrees in sign with the gradient and rescales the rest by the share kept (see
    :func:`tfoptim.optimizers._moments.cautious`)::

        mask  =  (m * g > 0)
        theta <- theta - (the step above, with m * mask / max(mean(mask), 1e-3) for m)

    ``mean`` is over the variable. This is timm's ``AdamW(caution=True)`` (with
    ``bias_corrected_epsilon=True``) and the authors' current ``c_adamw.py`` (with the default
    ``False``); ``pytorch_optimizer`` and the authors' first code divide by
    ``(sum(mask) + 1) / size`` instead. The moments themselves are not masked.

    ``moment_dtype="bfloat16"`` stores ``m``, ``v`` (and ``v_max``) in bfloat16, half the bytes
    of float32; the step is computed in the variable's dtype from the stored moments, each
    rounded to bfloat16 (to nearest even) when written (see
    :meth:`tfoptim.optimizers.base.Optimizer.add_moment_variables`). The default
    ``"float32"`` keeps them in the variable's own dtype, Keras's layout.

    The text tfoptim grew from swaps the names (its ``beta_1`` drives the squared-gradient
    average), omits the bias correction (so its first steps are ``1 / (1 - beta)`` times too
    small) and puts epsilon inside the square root. The rule above is the published one.

    References: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015);
    Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018) for AMSGrad.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        epsilon: > 0. Defaults to 1e-7.
        amsgrad: use the running maximum of ``v`` (AMSGrad). Defaults to False.
        bias_corrected_epsilon: where epsilon goes, see above. Defaults to False.
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
        epsilon=1e-7,
        amsgrad=False,
        bias_corrected_epsilon=False,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)
        self.init_cautious(cautious)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.amsgrad = bool(amsgrad)
        self.bias_corrected_epsilon = bool(bias_corrected_epsilon)

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

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        correction_1 = bias_correction(self.hyperparameter(self.beta_1), step)
        correction_2 = bias_correction(self.hyperparameter(self.beta_2), step)
        index = self._get_variable_index(variable)
        m = update_moment(self, self._momentums[index], gradient, self.beta_1)
        v = update_moment(self, self._velocities[index], ops.square(gradient), self.beta_2)
        if self.amsgrad:
            v = keep_maximum(self, self._velocity_hats[index], v)
        if self.cautious:
            m = cautious(m, gradient)
        self.assign_sub(
            variable,
            adam_step(
                m,
                v,
                self.epsilon,
                learning_rate,
                correction_1,
                correction_2,
                self.bias_corrected_epsilon,
            ),
        )
