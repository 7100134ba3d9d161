import math

import keras
from keras import ops

from tfoptim._validation import (
    check_choice,
    check_non_negative,
    check_positive,
    check_steps,
    check_unit_interval,
)
from tfoptim.optimizers._moments import (
    add_to,
    bias_correction,
    cautious,
    local_step,
    read,
    update_moment,
)
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class AdEMAMix(Optimizer):
    """AdEMAMix: Adam whose numerator mixes a fast and a slow (long-memory) gradient EMA.

    Update rule at step ``t = 1, 2, ...``::

        m1    <- beta_1 * m1 + (1 - beta_1) * g                (fast EMA, bias-corrected)
        m2    <- beta_3(t) * m2 + (1 - beta_3(t)) * g          (slow EMA, not corrected)
        v     <- beta_2 * v + (1 - beta_2) * g**2
        theta <- theta - alpha_lr * (m1 / (1 - beta_1**t) + alpha(t) * m2)
                         / (sqrt(v) / sqrt(1 - beta_2**t) + eps)

    The slow EMA's weight and memory can warm up, as the paper advises for long ``beta_3``:
    ``alpha(t) = min(t * alpha / alpha_warmup, alpha)`` and ``beta_3(t)`` moves from
    ``beta_1`` to ``beta_3`` linearly in half-life,
    ``beta_3(t) = min(exp(ln(beta_1) ln(beta_3) / ((1 - t/T) ln(beta_3) + t/T ln(beta_1))), beta_3)``
    with ``T = beta_3_warmup``. Without warmup they are constant. ``weight_decay`` is Keras's
    decoupled decay, the official form (``theta <- theta - alpha_lr * wd * theta``).

    The ``beta_3`` schedule is the paper's, as in the authors' optax code; their PyTorch file
    adds 1e-8 to each beta inside the logarithm, which moves ``beta_3(t)`` by ~1e-4 relative
    while warming up. ``alpha`` defaults to 5 (the authors' optax code and the paper's
    experiments; their PyTorch file defaults to 2).

    ``cautious=True`` (Liang et al. 2024) masks the fast EMA where it disagrees in sign with
    ``g``: ``m1 * mask / max(mean(mask), 1e-3)`` for ``m1`` in the step, ``mask = (m1 * g > 0)``
    (see :func:`tfoptim.optimizers._moments.cautious`); the slow EMA's term ``alpha(t) * m2``,
    whose long memory is meant to disagree with recent gradients, is not masked, nor are the
    EMAs themselves. That is ``pytorch_optimizer.AdEMAMix(cautious=True)``'s choice, followed
    here; the paper's general rule would mask the whole numerator. ``pytorch_optimizer``
    divides by ``(sum(mask) + 1) / size`` instead. ``moment_dtype="bfloat16"`` stores ``m1``,
    ``m2`` and ``v`` in bfloat16, computed in the variable's dtype and rounded when written, as
    in :class:`Adam`.

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older"
    (ICLR 2025, arXiv:2409.03137); official implementation apple/ml-ademamix.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the fast EMA, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        beta_3: decay of the slow EMA, in [0, 1). Defaults to 0.9999.
        alpha: weight of the slow EMA, >= 0. Defaults to 5.0.
        alpha_warmup: steps over which ``alpha`` grows from 0, an integer >= 1, or None (no
            warmup). Defaults to None.
        beta_3_warmup: steps over which ``beta_3`` grows from ``beta_1``, an integer >= 1, or
            None (no warmup; requires ``beta_1, beta_3 > 0``). Defaults to None.
        epsilon: > 0. Defaults to 1e-8.
        cautious: mask the fast EMA's term where it disagrees with the gradient, see above.
            Defaults to False.
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
        beta_3=0.9999,
        alpha=5.0,
        alpha_warmup=None,
        beta_3_warmup=None,
        epsilon=1e-8,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.beta_3 = check_unit_interval("beta_3", beta_3)
        self.alpha = check_non_negative("alpha", alpha)
        self.alpha_warmup = None if alpha_warmup is None else check_steps("alpha_warmup", alpha_warmup, 1)
        self.beta_3_warmup = (
            None if beta_3_warmup is None else check_steps("beta_3_warmup", beta_3_warmup, 1)
        )
        if self.beta_3_warmup is not None and not (self.beta_1 > 0 and self.beta_3 > 0):
            raise ValueError(
                "`beta_3_warmup` interpolates log(beta_1) and log(beta_3): both betas must be "
                f"> 0. Received: beta_1={beta_1!r}, beta_3={beta_3!r}"
            )
        self.epsilon = check_positive("epsilon", epsilon)
        self.init_cautious(cautious)
        self.moment_dtype = check_choice("moment_dtype", moment_dtype, MOMENT_DTYPES)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._slow_momentums, self._velocities = self.add_moment_variables(
            variables, ["momentum", "slow_momentum", "velocity"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, dtype)
        alpha, slow_rate = self.alpha, 1 - self.beta_3
        if self.alpha_warmup is not None:
            alpha = ops.minimum(ops.divide(ops.multiply(step, self.alpha), self.alpha_warmup), self.alpha)
            alpha = ops.cast(alpha, dtype)
        if self.beta_3_warmup is not None:
            log_1, log_3 = math.log(self.beta_1), math.log(self.beta_3)
            fraction = ops.divide(step, self.beta_3_warmup)
            beta_3 = ops.exp(
                ops.divide(
                    log_1 * log_3,
                    ops.add(ops.multiply(ops.subtract(1, fraction), log_3), ops.multiply(fraction, log_1)),
                )
            )
            # 1 - beta_3(t) in at least float32: in bfloat16, beta_3 itself rounds to 1.
            slow_rate = ops.cast(ops.subtract(1, ops.minimum(beta_3, self.beta_3)), dtype)
        index = self._get_variable_index(variable)
        m = update_moment(self, self._momentums[index], gradient, self.beta_1)
        m_slow = self._slow_momentums[index]
        m_slow = add_to(
            self, m_slow, ops.multiply(ops.subtract(gradient, read(m_slow, dtype)), slow_rate)
        )
        v = update_moment(self, self._velocities[index], ops.square(gradient), self.beta_2)
        if self.cautious:
            m = cautious(m, gradient)

        correction_1 = ops.cast(bias_correction(self.hyperparameter(self.beta_1), step), dtype)
        root_2 = ops.cast(ops.sqrt(bias_correction(self.hyperparameter(self.beta_2), step)), dtype)
        denominator = ops.add(ops.divide(ops.sqrt(v), root_2), self.epsilon)
        numerator = ops.add(ops.divide(m, correction_1), ops.multiply(m_slow, alpha))
        self.assign_sub(variable, ops.multiply(ops.divide(numerator, denominator), learning_rate))
