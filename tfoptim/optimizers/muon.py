import math
import re

import keras
from keras import ops

from tfoptim._validation import (
    check_bool,
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
    local_step,
    scalar_dtype,
    update_moment,
)
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import dense

#: Keller Jordan's quintic: the coefficients of torch.optim.Muon and keras.optimizers.Muon.
ORIGINAL_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

#: The Polar Express polynomials for l = 1e-3 (Amsel et al. 2025, Algorithm 1), before the
#: safety factor. Every iteration past the eighth repeats the last one.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
#: Polar Express divides the input by ``1.01 * norm`` and each polynomial but the last by the
#: same factor (``a / 1.01, b / 1.01**3, c / 1.01**5``), so rounding cannot push a singular
#: value past the range the polynomials were fitted on.
POLAR_EXPRESS_SAFETY = 1.01

CONVENTIONS = ("torch", "keller", "keras")
LR_ADJUSTMENTS = ("original", "match_rms_adamw", "unadjusted")
NS_DTYPES = (None, "bfloat16", "float32", "float64")


def coefficient_schedule(ns_coefficients, ns_steps):
    """The ``(a, b, c)`` of each of the ``ns_steps`` iterations, and the factor the input's norm
    is multiplied by (1, or Polar Express's 1.01)."""
    if ns_coefficients == "original":
        return [ORIGINAL_COEFFICIENTS] * ns_steps, 1.0
    if ns_coefficients == "polar_express":
        s = POLAR_EXPRESS_SAFETY
        polynomials = [(a / s, b / s**3, c / s**5) for a, b, c in POLAR_EXPRESS_COEFFICIENTS[:-1]]
        polynomials.append(POLAR_EXPRESS_COEFFICIENTS[-1])
        return _per_iteration(polynomials, ns_steps), s
    if isinstance(ns_coefficients[0], float):
        return [ns_coefficients] * ns_steps, 1.0
    return _per_iteration(list(ns_coefficients), ns_steps), 1.0


def _per_iteration(polynomials, steps):
    """The first ``steps`` polynomials, the last repeated where there are fewer."""
    return polynomials[:steps] + [polynomials[-1]] * max(0, steps - len(polynomials))


def _check_coefficients(value):
    """``"original"``, ``"polar_express"``, ``(a, b, c)`` or a sequence of them, normalised to
    a string, a tuple of 3 floats or a tuple of such tuples (a JSON round trip of the config
    gives lists back)."""
    if isinstance(value, str):
        return check_choice("ns_coefficients", value, ("original", "polar_express"))
    message = (
        "`ns_coefficients` must be 'original', 'polar_express', three finite numbers (a, b, c) "
        f"or a non-empty sequence of such triples. Received: ns_coefficients={value!r}"
    )

    def triple(item):
        if isinstance(item, str) or not hasattr(item, "__len__") or len(item) != 3:
            raise ValueError(message)
        return tuple(check_range("ns_coefficients", x) for x in item)

    if not hasattr(value, "__len__") or len(value) == 0:
        raise ValueError(message)
    if all(not hasattr(x, "__len__") for x in value):
        return triple(value)
    return tuple(triple(item) for item in value)


def _check_patterns(name, patterns):
    """A list of regular expressions (compiled here, so a bad one fails at construction)."""
    if patterns is None:
        return []
    if isinstance(patterns, str) or not hasattr(patterns, "__iter__"):
        raise ValueError(f"`{name}` must be a list of regular expressions. Received: {name}={patterns!r}")
    patterns = list(patterns)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ValueError(
                f"`{name}` must be a list of regular expressions; {pattern!r} is not one "
                f"({error}). Received: {name}={patterns!r}"
            ) from None
    return patterns


def _path(variable):
    # A raw tf.Variable has a name (with ":0") but no path.
    return getattr(variable, "path", variable.name.split(":")[0])


def _lerp(start, end, weight):
    """``start + weight * (end - start)`` in the form torch's ``lerp`` takes for this
    ``weight`` (a Python float), so the rounding is the same."""
    if abs(weight) < 0.5:
        return ops.add(start, ops.multiply(ops.subtract(end, start), weight))
    return ops.subtract(end, ops.multiply(ops.subtract(end, start), 1.0 - weight))


@keras.saving.register_keras_serializable(package="tfoptim")
class Muon(Optimizer):
    """Muon: Newton-Schulz-orthogonalised momentum for the weight matrices, AdamW for the rest.

    **The matrix of a variable.** Muon steps a variable as a matrix ``(fan_in, fan_out)``:
    a Dense kernel as it is, a convolution kernel ``(kh, kw, in, out)`` reshaped to
    ``(kh * kw * in, out)`` (any variable of rank > 2: all axes but the last are the inputs).
    Keras stores kernels inputs-first, so this is the transpose of PyTorch's ``(out, in)``
    weight; orthogonalisation does not care, the learning-rate adjustment below is written
    for PyTorch's orientation (``A = fan_out``, ``B = fan_in``), so a layer gets the same
    factor in both frameworks.

    **Update rule** for a matrix variable at step ``t = 1, 2, ...`` (``m`` starts at 0)::

        m     <- mu * m + (1 - mu) * g                     (torch's buf.lerp_(g, 1 - mu))
        u     <- (1 - mu) * g + mu * m   if nesterov, else m
        X     <- u / max(s * ||u||_F, eps)                 (s = 1.01 for Polar Express, else 1)
        X     <- a_k X + b_k (X X^T) X + c_k (X X^T)^2 X   for k = 1 .. ns_steps
        theta <- theta - alpha * wd * theta                (decoupled weight decay)
        theta <- theta - alpha * f(A, B) * X

    ``X X^T`` is taken on the wide orientation of the matrix (the transpose when it has more
    rows than columns, as torch does), and the result turned back. The iteration pushes every
    singular value of ``u`` towards 1: ``X`` approximates ``U V^T`` of ``u = U S V^T``.
    Coefficients (``ns_coefficients``): ``"original"``, Keller Jordan's ``(3.4445, -4.7750,
    2.0315)`` every iteration (singular values end in roughly [0.7, 1.2], not at 1);
    ``"polar_express"``, the per-iteration polynomials of Amsel et al. (2025), with their
    safety factor ``s = 1.01`` on the norm and on all but the last polynomial, the last
    repeated past the eighth iteration; or your own ``(a, b, c)`` or list of them.
    Learning-rate adjustment ``f(A, B)`` (``adjust_lr_fn``): ``"original"``,
    ``sqrt(max(1, A / B))`` (Keller Jordan's); ``"match_rms_adamw"``, ``rms_rate *
    sqrt(max(A, B))`` with Moonlight's ``rms_rate = 0.2``, which gives the update about the
    root-mean-square of AdamW's, so AdamW's learning rate and weight decay carry over;
    ``"unadjusted"``, 1.

    **Which variables Muon steps.** Muon is for the hidden layers' weight matrices. The others
    are stepped by the AdamW fallback below, decided once, at ``build``, in this order:

    1. rank < 2 (biases, normalisation scales), or rank > 2 with ``flatten_kernels=False``:
       AdamW;
    2. a path (``variable.path``) in which a regular expression of ``exclude_layers`` is
       found (``re.search``): AdamW;
    3. a path in which one of ``include_layers`` is found: Muon;
    4. ``exclude_embeddings`` and ``"embedding"`` in the lower-cased path: AdamW (Keras's
       rule: ``keras.layers.Embedding`` names its table ``embeddings``);
    5. ``exclude_output_head`` and the last variable of rank >= 2 in the list ``build`` gets:
       AdamW. That is the output layer's kernel in a ``Sequential`` or functional model
       (``model.trainable_variables`` follows the layers). A model whose head is tied to the
       embedding, or has several heads, or builds its layers in another order, needs
       ``exclude_layers``/``include_layers`` or ``exclude_output_head=False``;
    6. every other variable: Muon.

    ``optimizer.muon_variables`` and ``optimizer.adamw_variables`` list the outcome.

    **The AdamW fallback** is Adam with decoupled weight decay (:class:`AdamW`), at the rate
    ``alpha * adam_lr_ratio``, with ``adam_beta_1``, ``adam_beta_2``, ``epsilon`` (added to
    ``sqrt(v_hat)`` as torch does, or to the uncorrected ``sqrt(v)`` as Keras does with
    ``adam_bias_corrected_epsilon=False``) and weight decay ``adam_weight_decay`` (None: the
    same ``weight_decay`` as the matrices, Moonlight's setting), applied as
    ``theta <- theta - alpha * adam_lr_ratio * adam_weight_decay * theta``. At the defaults it
    is ``torch.optim.AdamW(lr=alpha, weight_decay=weight_decay)``.

    **Against torch.optim.Muon** (2.13): with the same arguments (``eps`` is ``ns_epsilon``,
    ``lr`` is ``learning_rate``, ``adjust_lr_fn=None`` is ``"original"``) the rule and the
    defaults are torch's, applied to the transposed matrix (see above), except:

    * precision: torch runs the iteration in bfloat16 whatever the parameters' dtype (a
      speed choice for GPUs); tfoptim runs it in the variable's dtype, float32 at least.
      ``ns_dtype="bfloat16"`` rounds where torch rounds: bfloat16 operands and results,
      float32 sums, one rounding per product or ``addmm``. Recorded float64 trajectories of
      torch's code with the bfloat16 cast removed are followed to 1e-12
      (``exact_hyperparameters=True``: torch keeps Python floats exact); the code as
      published is bfloat16's noise away, 4e-3 relative after 200 steps of the tests'
      problem. On NVIDIA GPUs since Ampere, TensorFlow runs float32 matrix products in TF32
      unless ``tf.config.experimental.enable_tensor_float_32_execution(False)``;
    * torch refuses anything but 2-D parameters; tfoptim reshapes kernels (above) and steps
      the rest with the fallback, which torch leaves to a second optimizer;
    * ``"polar_express"`` and per-iteration coefficients are not in torch; ``"unadjusted"``
      neither.

    **Against keras.optimizers.Muon** (3.15): the same rule, in these different conventions:

    * momentum: Keras sums, ``m <- mu * m + g``, and steps along ``g + mu * m`` (Nesterov):
      ``1 / (1 - mu)`` times torch's ``m`` and ``u`` (torch's documentation writes this sum
      too; its code averages). The normalisation cancels the factor, so only epsilon's
      weight and the values of the saved state differ;
    * epsilon is added to the norm, ``X <- u / (||u|| + eps)``, with eps fixed at 1e-7;
      torch takes the maximum (``convention="keller"`` adds it, as Keller Jordan's
      ``muon.py`` and the Polar Express and NorMuon reference code do, on torch's momentum);
    * the learning-rate adjustment is ``rms_rate * sqrt(max(A, B))`` with ``rms_rate=0.2``
      by default (``"match_rms_adamw"``), or none (``rms_rate=None``, ``"unadjusted"``);
      Keras has no ``"original"``;
    * only rank-2 variables get Muon: convolution kernels go to AdamW (``flatten_kernels=
      False``), and there is no output-head rule (``exclude_output_head=False``);
    * the AdamW fallback adds epsilon to the uncorrected ``sqrt(v)``
      (``adam_bias_corrected_epsilon=False``), and decays by ``alpha * adam_weight_decay``
      without the ``adam_lr_ratio`` (the same unless the ratio is changed);
    * Keras's ``epsilon`` is the fallback's; ``muon_a, muon_b, muon_c`` are
      ``ns_coefficients``; its defaults are ``weight_decay=adam_weight_decay=0.004``,
      ``epsilon=1e-7``.

    ``Muon(convention="keras", adjust_lr_fn="match_rms_adamw", flatten_kernels=False,
    exclude_output_head=False, weight_decay=0.004, adam_weight_decay=0.004, epsilon=1e-7,
    adam_bias_corrected_epsilon=False)`` is ``keras.optimizers.Muon()`` (the same trajectory
    to rounding, with ``exact_hyperparameters=False``, the default: Keras rounds the weight
    decays and the fallback's betas through float32; ``exclude_layers`` as Keras's), and
    keeps the same state under the same names (``momentum`` for every variable, ``velocity``
    for the fallback's).

    State: one slot (the momentum) per Muon variable, two per fallback variable, as Keras.
    Cost: per Muon step ``3 * ns_steps`` matrix products of sizes ``min(A, B)^2 * max(A, B)``
    at most; no decomposition.

    References: Jordan et al., "Muon: An optimizer for hidden layers in neural networks"
    (2024, kellerjordan.github.io/posts/muon); Liu et al., "Muon is Scalable for LLM
    Training" (arXiv:2502.16982, 2025) for ``match_rms_adamw``; Amsel, Persson, Musco &
    Gower, "The Polar Express: Optimal Matrix Sign Methods and Their Application to the Muon
    Algorithm" (arXiv:2505.16932, 2025); ``torch.optim.Muon`` (PyTorch 2.13).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable: ``alpha``.
            Defaults to 0.001 (torch's).
        weight_decay: decoupled, ``theta <- theta - alpha * wd * theta`` before each step,
            >= 0. Defaults to 0.1 (torch's).
        momentum: ``mu``, in [0, 1). Defaults to 0.95.
        nesterov: step along the Nesterov look-ahead ``u``. Defaults to True.
        ns_coefficients: ``"original"``, ``"polar_express"``, ``(a, b, c)`` for every
            iteration, or a list of them, one per iteration (the last repeated). Defaults to
            ``"original"``.
        ns_steps: Newton-Schulz iterations, integer in [1, 100). Defaults to 5.
        ns_epsilon: > 0, keeps the normalisation finite for a zero momentum (torch's
            ``eps``). Defaults to 1e-7.
        adjust_lr_fn: ``"original"`` (None means the same, as in torch),
            ``"match_rms_adamw"`` or ``"unadjusted"``. Defaults to ``"original"``.
        rms_rate: > 0, the RMS ``"match_rms_adamw"`` aims at. Defaults to 0.2.
        convention: ``"torch"``, ``"keller"`` or ``"keras"``: momentum and epsilon as above.
            Defaults to ``"torch"``.
        ns_dtype: dtype of the iteration: None (the variable's, float32 at least),
            ``"bfloat16"`` (torch's), ``"float32"`` or ``"float64"``. Defaults to None.
        flatten_kernels: step variables of rank > 2 as matrices. Defaults to True.
        exclude_embeddings: send variables with ``"embedding"`` in their path to AdamW.
            Defaults to True.
        exclude_output_head: send the last variable of rank >= 2 to AdamW. Defaults to True.
        exclude_layers: regular expressions; variables whose path contains a match go to
            AdamW. Defaults to None.
        include_layers: regular expressions; variables whose path contains a match go to
            Muon, whatever the embedding and head rules say. Defaults to None.
        adam_lr_ratio: the fallback's rate over ``learning_rate``, >= 0. Defaults to 1.
        adam_beta_1: the fallback's first-moment decay, in [0, 1). Defaults to 0.9.
        adam_beta_2: the fallback's second-moment decay, in [0, 1). Defaults to 0.999.
        epsilon: the fallback's epsilon, > 0. Defaults to 1e-8 (torch's AdamW).
        adam_weight_decay: the fallback's decoupled weight decay, >= 0, or None for
            ``weight_decay``. Defaults to None.
        adam_bias_corrected_epsilon: where the fallback adds epsilon (see :class:`Adam`).
            Defaults to True (torch's AdamW).
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    elementwise = False
    weight_decay_in_rule = True

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.1,
        momentum=0.95,
        nesterov=True,
        ns_coefficients="original",
        ns_steps=5,
        ns_epsilon=1e-7,
        adjust_lr_fn="original",
        rms_rate=0.2,
        convention="torch",
        ns_dtype=None,
        flatten_kernels=True,
        exclude_embeddings=True,
        exclude_output_head=True,
        exclude_layers=None,
        include_layers=None,
        adam_lr_ratio=1.0,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        epsilon=1e-8,
        adam_weight_decay=None,
        adam_bias_corrected_epsilon=True,
        name=None,
        **kwargs,
    ):
        if weight_decay is None:
            raise ValueError(f"`weight_decay` of {type(self).__name__} must be a float >= 0. Received: None")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs)
        self.momentum = check_unit_interval("momentum", momentum)
        self.nesterov = check_bool("nesterov", nesterov)
        self.ns_coefficients = _check_coefficients(ns_coefficients)
        self.ns_steps = check_steps("ns_steps", ns_steps, minimum=1)
        if self.ns_steps >= 100:
            raise ValueError(f"`ns_steps` must be in [1, 100). Received: ns_steps={ns_steps!r}")
        self.ns_epsilon = check_positive("ns_epsilon", ns_epsilon)
        self.adjust_lr_fn = check_choice(
            "adjust_lr_fn", "original" if adjust_lr_fn is None else adjust_lr_fn, LR_ADJUSTMENTS
        )
        self.rms_rate = check_positive("rms_rate", rms_rate)
        self.convention = check_choice("convention", convention, CONVENTIONS)
        self.ns_dtype = check_choice("ns_dtype", ns_dtype, NS_DTYPES)
        self.flatten_kernels = check_bool("flatten_kernels", flatten_kernels)
        self.exclude_embeddings = check_bool("exclude_embeddings", exclude_embeddings)
        self.exclude_output_head = check_bool("exclude_output_head", exclude_output_head)
        self.exclude_layers = _check_patterns("exclude_layers", exclude_layers)
        self.include_layers = _check_patterns("include_layers", include_layers)
        self.adam_lr_ratio = check_non_negative("adam_lr_ratio", adam_lr_ratio)
        self.adam_beta_1 = check_unit_interval("adam_beta_1", adam_beta_1)
        self.adam_beta_2 = check_unit_interval("adam_beta_2", adam_beta_2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.adam_weight_decay = (
            None if adam_weight_decay is None else check_non_negative("adam_weight_decay", adam_weight_decay)
        )
        self.adam_bias_corrected_epsilon = check_bool("adam_bias_corrected_epsilon", adam_bias_corrected_epsilon)

    # -- which variables Muon steps ----------------------------------------------------------

    def _uses_muon(self, variable, head):
        """The routing rule of the class docstring, for one variable."""
        rank = len(variable.shape)
        if rank < 2 or (rank > 2 and not self.flatten_kernels):
            return False
        path = _path(variable)
        if any(re.search(pattern, path) for pattern in self.exclude_layers):
            return False
        if any(re.search(pattern, path) for pattern in self.include_layers):
            return True
        if self.exclude_embeddings and "embedding" in path.lower():
            return False
        return not (self.exclude_output_head and variable is head)

    def _lr_factor(self, fan_in, fan_out):
        """``f(A, B)`` with torch's ``A = fan_out``, ``B = fan_in``."""
        if self.adjust_lr_fn == "original":
            return math.sqrt(max(1.0, fan_out / fan_in))
        if self.adjust_lr_fn == "match_rms_adamw":
            return self.rms_rate * math.sqrt(max(fan_in, fan_out))
        return 1.0

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        matrices = [v for v in variables if len(v.shape) >= 2]
        head = matrices[-1] if matrices else None
        # Slots are created variable by variable, momentum then velocity, as Keras's Muon
        # does: the same optimizer.variables, in the same order.
        self._momentums, self._velocities, self._matrices = [], [], []
        for variable in variables:
            skipped = self._overwrite_variable_with_gradient(variable)
            muon = not skipped and self._uses_muon(variable, head)
            self._momentums.append(None if skipped else self.add_variable_from_reference(variable, "momentum"))
            fallback = not skipped and not muon
            self._velocities.append(self.add_variable_from_reference(variable, "velocity") if fallback else None)
            if muon:
                fan_out = int(variable.shape[-1])
                fan_in = int(math.prod(variable.shape)) // fan_out
                self._matrices.append((fan_in, fan_out, self._lr_factor(fan_in, fan_out)))
            else:
                self._matrices.append(None)
            self._build_matrix_state(variable, self._matrices[-1])

    def _build_matrix_state(self, variable, matrix):
        """Further slots of a subclass (NorMuon), created right after the variable's own."""

    @property
    def muon_variables(self):
        """The variables Muon steps (after ``build``)."""
        return [v for v, m in zip(self._trainable_variables, self._matrices) if m is not None]

    @property
    def adamw_variables(self):
        """The variables the AdamW fallback steps (after ``build``)."""
        return [v for v, m in zip(self._trainable_variables, self._velocities) if m is not None]

    # -- the step ------------------------------------------------------------------------------

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        gradient = ops.cast(dense(gradient), variable.dtype)
        learning_rate = ops.cast(learning_rate, scalar_dtype(variable.dtype))
        if self._matrices[index] is None:
            self._adamw_step(gradient, variable, learning_rate, index)
        else:
            self._muon_step(gradient, variable, learning_rate, index)

    def _decay(self, variable, rate, weight_decay):
        """``theta <- theta - rate * weight_decay * theta``, as the base class decays."""
        if weight_decay and self._use_weight_decay(variable):
            rate = ops.cast(rate, variable.dtype)
            decay = self.hyperparameter(weight_decay)
            self.assign_sub(variable, ops.multiply(ops.multiply(variable, decay), rate))

    def _adamw_step(self, gradient, variable, learning_rate, index):
        rate = ops.multiply(learning_rate, self.adam_lr_ratio)
        decay = self.weight_decay if self.adam_weight_decay is None else self.adam_weight_decay
        self._decay(variable, rate, decay)
        step = local_step(self, variable.dtype)
        m, v = self._momentums[index], self._velocities[index]
        update_moment(self, m, gradient, self.adam_beta_1)
        update_moment(self, v, ops.square(gradient), self.adam_beta_2)
        correction_1 = bias_correction(self.hyperparameter(self.adam_beta_1), step)
        correction_2 = bias_correction(self.hyperparameter(self.adam_beta_2), step)
        self.assign_sub(
            variable,
            adam_step(
                m, v, self.epsilon, ops.cast(rate, step.dtype), correction_1, correction_2,
                self.adam_bias_corrected_epsilon,
            ),
        )

    def _muon_step(self, gradient, variable, learning_rate, index):
        fan_in, fan_out, factor = self._matrices[index]
        self._decay(variable, learning_rate, self.weight_decay)
        m = self._momentums[index]
        mu = self.momentum
        if self.convention == "keras":
            # keras.optimizers.Muon's m <- m + (g + m (mu - 1)) and g + mu m.
            self.assign_add(m, ops.add(gradient, ops.multiply(m, mu - 1.0)))
            direction = ops.add(gradient, ops.multiply(m, mu)) if self.nesterov else m
        else:
            update_moment(self, m, gradient, mu)  # torch's buf.lerp_(g, 1 - mu)
            direction = _lerp(gradient, m, mu) if self.nesterov else m
        work_dtype = scalar_dtype(variable.dtype)
        matrix = ops.reshape(direction, (fan_in, fan_out))
        update = ops.cast(self._orthogonalize(matrix, work_dtype), work_dtype)
        update = self._scale_update(update, index)
        rate = ops.multiply(learning_rate, factor)
        update = ops.cast(ops.reshape(update, variable.shape), variable.dtype)
        self.assign_sub(variable, ops.multiply(update, ops.cast(rate, variable.dtype)))

    def _scale_update(self, update, index):
        """The orthogonalised update ``(fan_in, fan_out)`` as the step applies it (NorMuon
        normalises it here)."""
        return update

    def _orthogonalize(self, matrix, work_dtype):
        """The Newton-Schulz iteration on ``matrix``, in ``ns_dtype`` (default ``work_dtype``)."""
        dtype = self.ns_dtype or work_dtype
        x = ops.cast(matrix, dtype)
        transposed = x.shape[0] > x.shape[1]
        if transposed:
            x = ops.transpose(x)
        polynomials, safety = coefficient_schedule(self.ns_coefficients, self.ns_steps)
        # A bfloat16 norm accumulates in float32, as torch's does.
        norm = ops.sqrt(ops.sum(ops.square(ops.cast(x, "float32" if dtype == "bfloat16" else dtype))))
        if safety != 1.0:
            norm = ops.multiply(norm, safety)
        if self.convention == "torch":
            norm = ops.maximum(norm, self.ns_epsilon)
        else:
            norm = ops.add(norm, self.ns_epsilon)
        x = ops.divide(x, ops.cast(norm, dtype))
        for a, b, c in polynomials:
            gram = self._rounded(lambda x: ops.matmul(x, ops.transpose(x)), x)
            gram_update = self._rounded(
                lambda g: ops.add(ops.multiply(g, b), ops.multiply(ops.matmul(g, g), c)), gram
            )
            x = self._rounded(lambda u, x: ops.add(ops.multiply(x, a), ops.matmul(u, x)), gram_update, x)
        return ops.transpose(x) if transposed else x

    def _rounded(self, operation, *operands):
        """``operation`` on ``operands``; in bfloat16, computed in float32 and rounded once, as
        torch's ``@`` and ``addmm`` do (TensorFlow's bfloat16 matmul on the CPU rounds partial
        sums, several times noisier)."""
        if self.ns_dtype != "bfloat16":
            return operation(*operands)
        return ops.cast(operation(*(ops.cast(x, "float32") for x in operands)), "bfloat16")
