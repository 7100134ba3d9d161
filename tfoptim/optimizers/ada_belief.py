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
    adam_step,
    bias_correction,
    cautious,
    keep_maximum,
    local_step,
    read,
    rectified_step,
    store,
    update_moment,
    warmup_learning_rate,
)
from tfoptim.optimizers.base import MOMENT_DTYPES, Optimizer


@keras.saving.register_keras_serializable(package="tfoptim")
class AdaBelief(Optimizer):
    """AdaBelief: Adam scaled by the spread of the gradient around its EMA, not its magnitude.

    Update rule at step ``t = 1, 2, ...``::

        m     <- beta_1 * m + (1 - beta_1) * g
        s     <- beta_2 * s + (1 - beta_2) * (g - m)**2 + eps     (amsgrad: s_max <- max(s_max, s))
        theta <- theta - alpha / (1 - beta_1**t) * m / (sqrt(s / (1 - beta_2**t)) + eps)

    ``s``, the "belief", is small where the gradient agrees with its prediction ``m`` and the
    step is then large; epsilon is added twice, inside ``s`` (stored) and to the denominator.

    With ``rectify=True`` (the default of the authors' package since 0.1.0; not in the paper)
    the step is RAdam's, ``rho_t`` and ``r_t`` as in :class:`RAdam`::

        if rho_t >= sma_threshold:
            theta <- theta - alpha * r_t * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(s) + eps)
        elif degenerated_to_sgd:
            theta <- theta - alpha / (1 - beta_1**t) * m
        else: theta unchanged

    Defaults and both forms follow the authors' ``adabelief_pytorch`` 0.2.1 (epsilon 1e-16,
    rectification and the momentum step below the threshold on, weight decay decoupled, i.e.
    Keras's ``weight_decay``; their ``weight_decouple=False`` is ``coupled_weight_decay``). Its
    rectified step adds epsilon to the raw ``sqrt(s)`` while its plain step adds it after the
    bias correction; TFA's ``AdaBelief`` adds it after the correction in both:
    ``bias_corrected_epsilon=True``, which only changes the rectified step. With
    ``amsgrad`` and ``rectify`` both on, the authors' code tracks ``s_max`` but its rectified
    step reads ``s``; here (as in TFA) it reads ``s_max``. TFA's warm-up
    (``total_steps``, ``warmup_proportion``, ``min_learning_rate``) works as in :class:`RAdam`.

    ``cautious=True`` (C-AdaBelief, Liang et al. 2024) masks ``m`` in the step (either form)
    where it disagrees in sign with ``g``, ``m * mask / max(mean(mask), 1e-3)`` with
    ``mask = (m * g > 0)``, as :class:`Adam` does (see
    :func:`tfoptim.optimizers._moments.cautious`); ``m`` and ``s`` themselves are not masked.
    Neither the authors' code nor timm or ``pytorch_optimizer`` offer it: tested against the
    paper's masking written in NumPy.

    ``moment_dtype="bfloat16"`` stores ``m`` and ``s`` (and ``s_max``) in bfloat16, computed in
    the variable's dtype and rounded when written (``s`` twice: after its average and after
    adding epsilon, the two writes above), as in :class:`Adam`.

    Reference: Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, "AdaBelief
    Optimizer: Adapting Stepsizes by the Belief in Observed Gradients" (NeurIPS 2020).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the belief ``s``, in [0, 1). Defaults to 0.999.
        epsilon: > 0. Defaults to 1e-16 (the authors suggest 1e-8 where SGD beats Adam; TFA:
            1e-14).
        rectify: take RAdam's rectified step. Defaults to True.
        degenerated_to_sgd: below the threshold, take the momentum step (True) or none.
            Defaults to True.
        sma_threshold: smallest ``rho_t`` that takes the rectified step, >= 4. Defaults to 5.
        bias_corrected_epsilon: in the rectified step, add epsilon after the bias correction of
            ``s`` (TFA). Defaults to False.
        amsgrad: use the running maximum of ``s``. Defaults to False.
        total_steps: length of TFA's warm-up-and-decay, an integer >= 0; 0 turns it off.
        warmup_proportion: fraction of ``total_steps`` spent warming up, in [0, 1]. Defaults
            to 0.1.
        min_learning_rate: rate reached at ``total_steps``, >= 0. Defaults to 0.
        cautious: mask the step where it disagrees with the gradient, see above. Defaults to
            False.
        moment_dtype: ``"float32"`` (the variable's dtype) or ``"bfloat16"``. Defaults to
            ``"float32"``.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    increment_only = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-16,
        rectify=True,
        degenerated_to_sgd=True,
        sma_threshold=5.0,
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
        self.rectify = bool(rectify)
        self.degenerated_to_sgd = bool(degenerated_to_sgd)
        self.sma_threshold = check_range("sma_threshold", sma_threshold, 4.0)
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
        self._momentums, self._beliefs = self.add_moment_variables(
            variables, ["momentum", "belief"]
        )
        self._belief_hats = []
        if self.amsgrad:
            self._belief_hats = self.add_moment_variables(variables, "belief_hat")

    def step_learning_rate(self, learning_rate):
        # TFA's warm-up, before the base applies the rate: Keras's decoupled weight decay
        # follows the warmed-up rate, as TFA's weight decay does.
        return warmup_learning_rate(self, learning_rate) if self.total_steps else learning_rate

    def update_phases(self):
        # The moments' updates read their old values; kept apart from the weights' step, which
        # reads the new ones, XLA updates every buffer in place (see Optimizer.update_phases).
        return (self._update_moments, self._step_weights)

    def _update_moments(self, gradient, variable, learning_rate):
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        s = self._beliefs[index]
        m = update_moment(self, self._momentums[index], gradient, self.beta_1)
        belief = update_moment(self, s, ops.square(ops.subtract(gradient, m)), self.beta_2)
        belief = store(self, s, ops.add(belief, self.epsilon))
        if self.amsgrad:
            keep_maximum(self, self._belief_hats[index], belief)

    def _step_weights(self, gradient, variable, learning_rate):
        step = local_step(self, variable.dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        index = self._get_variable_index(variable)
        m = read(self._momentums[index], variable.dtype)
        s = read(self._belief_hats[index] if self.amsgrad else self._beliefs[index], variable.dtype)
        if self.cautious:
            m = cautious(m, ops.cast(gradient, variable.dtype))
        if self.rectify:
            self.assign_sub(variable, rectified_step(self, m, s, learning_rate, step))
            return
        correction_1 = bias_correction(self.hyperparameter(self.beta_1), step)
        correction_2 = bias_correction(self.hyperparameter(self.beta_2), step)
        self.assign_sub(
            variable, adam_step(m, s, self.epsilon, learning_rate, correction_1, correction_2, True)
        )
