import math

import keras
import numpy as np
from keras import ops

from tfoptim._validation import (
    check_bool,
    check_choice,
    check_positive,
    check_range,
    check_steps,
    check_unit_interval,
)
from tfoptim.optimizers._moments import scalar_dtype
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import conditional_update, dense

MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")
DTYPES = (None, "float16", "bfloat16", "float32", "float64")
#: kron_torch perturbs the preconditioner's input by sqrt(eps) * mean|G| * V with float32's
#: machine epsilon, whatever the dtype.
FLOAT32_EPS = float(np.finfo(np.float32).eps)
#: The factors are rebalanced on every this many-th preconditioner update (kron_torch: with
#: probability 1/100 at each update).
BALANCE_EVERY = 100
#: The smallest normal number of each preconditioner dtype, the floor of its divisors
#: (bfloat16 has float32's exponent range).
TINY = {
    "float16": float(np.finfo(np.float16).tiny),
    "bfloat16": float(np.finfo(np.float32).tiny),
    "float32": float(np.finfo(np.float32).tiny),
    "float64": float(np.finfo(np.float64).tiny),
}


@keras.saving.register_keras_serializable(package="tfoptim")
class UpdateProbabilitySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """kron_torch's ``precond_update_prob_schedule``: the probability of a preconditioner
    update at step ``n = 0, 1, ...``, an exponential anneal after a flat start::

        p(n) = clip(max_prob * exp(-decay * (n - flat_start)), min_prob, max_prob)

    computed in float32, as the reference does. The defaults keep ``p = 1`` for 500 steps,
    then anneal to ``min_prob = 0.03`` by step 4000.

    Args:
        max_prob: in (0, 1]. Defaults to 1.0.
        min_prob: in (0, max_prob]. Defaults to 0.03.
        decay: >= 0. Defaults to 0.001.
        flat_start: >= 0. Defaults to 500.
    """

    def __init__(self, max_prob=1.0, min_prob=0.03, decay=0.001, flat_start=500):
        self.max_prob = check_range("max_prob", max_prob, 0.0, 1.0, low_open=True)
        self.min_prob = check_range("min_prob", min_prob, 0.0, self.max_prob, low_open=True)
        self.decay = check_range("decay", decay, 0.0)
        self.flat_start = check_range("flat_start", flat_start, 0.0)

    def __call__(self, step):
        # Python floats meet a float32 tensor as float32 constants: torch.tensor(x, float32).
        n = ops.cast(step, "float32")
        exponent = ops.multiply(ops.convert_to_tensor(-self.decay, "float32"), ops.subtract(n, self.flat_start))
        probability = ops.multiply(ops.convert_to_tensor(self.max_prob, "float32"), ops.exp(exponent))
        return ops.clip(probability, self.min_prob, self.max_prob)

    def get_config(self):
        return dict(max_prob=self.max_prob, min_prob=self.min_prob, decay=self.decay, flat_start=self.flat_start)


def merged_shape(shape, merge_dims):
    """The shape PSGD preconditions: with ``merge_dims`` a variable of rank > 2 as the matrix
    ``(prod(shape[:-1]), shape[-1])``; a scalar as a vector of one element.

    kron_torch chooses between that matrix and ``(shape[0], prod(shape[1:]))`` by comparing
    their signed ``cols - rows`` and takes the first unless the second's is smaller; with
    ``m = prod(shape[1:-1]) >= 1`` the first's exceeds the second's by ``(1 - m) (rows + cols)
    <= 0``, so it always takes the first."""
    shape = tuple(int(size) for size in shape)
    if not shape:
        return (1,)
    if len(shape) > 2 and merge_dims:
        return (math.prod(shape[:-1]), shape[-1])
    return shape


def diagonal_dimensions(shape, max_size_triangular, min_ndim_triangular, memory_save_mode):
    """Which dimensions of ``shape`` (merged) get a diagonal factor (kron_torch's
    ``_init_Q_exprs``); the others get an upper-triangular one."""
    rank = len(shape)
    # numpy's argsort(shape)[::-1][0]: the last of the largest dimensions.
    largest = max(range(rank), key=lambda i: (shape[i], i))
    ordered = sorted(shape)
    if memory_save_mode == "all_diag":
        marked = [True] * rank
    elif memory_save_mode == "one_diag" or (
        memory_save_mode == "smart_one_diag" and rank > 1 and ordered[-1] > ordered[-2]
    ):
        marked = [i == largest for i in range(rank)]
    else:
        marked = [False] * rank
    return [
        size == 1 or size > max_size_triangular or rank < min_ndim_triangular or mark
        for size, mark in zip(shape, marked)
    ]


def _mean(x):
    """The mean of every element, as a sum over the count: Keras's JAX ``mean`` (and
    ``norm``) of float64 round through float32."""
    return ops.divide(ops.sum(x), math.prod(x.shape))


def _norm(x):
    """The Euclidean norm of a vector (see :func:`_mean`)."""
    return ops.sqrt(ops.sum(ops.square(x)))


def _along_each_dimension(x, factors, matrix_op, vector_op):
    """Applies one operation per dimension: ``matrix_op(x, Q)`` or ``vector_op(x, q)`` on
    ``x`` with that dimension first, each returning it last, so after every dimension the
    original order is back."""
    for factor in factors:
        x = matrix_op(x, factor) if len(factor.shape) == 2 else vector_op(ops.moveaxis(x, 0, -1), factor)
    return x


def kronecker_product(x, factors):
    """``A = G x_1 Q_1 x_2 Q_2 ...``: ``A[.., a, ..] = sum_n Q_i[a, n] G[.., n, ..]``."""
    return _along_each_dimension(
        x, factors, lambda x, q: ops.tensordot(x, q, axes=[[0], [1]]), ops.multiply
    )


def inverse_transpose_product(x, factors):
    """``conjB = V x_1 Q_1^-T x_2 Q_2^-T ...`` by triangular solves (the reference's
    ``solve_triangular(Q, V, left=False)``, ``V @ inv(Q)``, along each dimension)."""

    def solve(x, q):
        rest = x.shape[1:]
        flat = ops.reshape(x, (x.shape[0], -1))
        solved = ops.solve_triangular(ops.transpose(q), flat, lower=True)
        return ops.moveaxis(ops.reshape(solved, (x.shape[0], *rest)), 0, -1)

    return _along_each_dimension(x, factors, solve, ops.divide)


def preconditioned(x, factors):
    """``P G = G x_1 (Q_1^T Q_1) x_2 (Q_2^T Q_2) ...``, each ``Q_i^T Q_i`` formed or applied
    as two products, whichever costs less."""

    def matrix(x, q):
        size = q.shape[0]
        if math.prod(x.shape) < size * size:
            # Q, then Q^T: 2 n d multiply-adds against the d^3 of forming Q^T Q.
            y = ops.tensordot(x, q, axes=[[0], [1]])
            return ops.tensordot(y, q, axes=[[len(x.shape) - 1], [0]])
        return ops.tensordot(x, ops.matmul(ops.transpose(q), q), axes=[[0], [1]])

    return _along_each_dimension(x, factors, matrix, lambda x, q: ops.multiply(ops.multiply(q, q), x))


def norm_lower_bound(a, max_abs):
    """kron_torch's ``_lb``: a cheap lower bound of the spectral norm of the symmetric ``a``,
    one power-iteration step from its column of largest norm (``max_abs`` > 0 scales it)."""
    a = ops.divide(a, max_abs)
    column = ops.argmax(ops.sum(ops.multiply(a, a), axis=0))
    x = ops.matmul(ops.take(a, column, axis=1), a)
    x = ops.divide(x, _norm(x))
    return ops.multiply(_norm(ops.matmul(a, x)), max_abs)


def updated_factors(factors, g, v, precond_lr, tiny):
    """One step of PSGD's Kronecker-factor fit on the pair ``(v, g)`` (kron_torch's
    ``_update_precond``): per factor ``Q <- Q - precond_lr * (E[A A^T] - E[B B^T]) / bound * Q``
    with ``A = G x Q``, ``B = V x Q^-T``, the difference made upper-triangular and ``bound``
    a lower bound of the spectral norm of ``E[A A^T] + E[B B^T]`` for a triangular factor; for
    a diagonal one the element-wise terms over their largest entry."""
    a = kronecker_product(g, factors)
    b = inverse_transpose_product(v, factors)
    rank = len(g.shape)
    new = []
    for i, q in enumerate(factors):
        others = [j for j in range(rank) if j != i]
        if len(q.shape) == 2:
            term_a = ops.tensordot(a, a, axes=[others, others])
            term_b = ops.tensordot(b, b, axes=[others, others])
        else:
            term_a = ops.sum(ops.square(a), axis=others) if others else ops.square(a)
            term_b = ops.sum(ops.square(b), axis=others) if others else ops.square(b)
        difference = ops.multiply(ops.subtract(term_a, term_b), precond_lr)
        total = ops.add(term_a, term_b)
        norm = ops.max(ops.abs(total))
        if len(q.shape) == 2:
            positive = ops.greater(norm, 0)
            bound = norm_lower_bound(total, ops.where(positive, norm, ops.ones_like(norm)))
            bound = ops.maximum(ops.where(positive, bound, norm), tiny)
            new.append(ops.subtract(q, ops.matmul(ops.divide(ops.triu(difference), bound), q)))
        else:
            new.append(ops.subtract(q, ops.multiply(difference, ops.divide(q, ops.maximum(norm, tiny)))))
    return new


def balanced(factors, balance):
    """The factors rescaled so their largest entries are all the geometric mean of those
    (their Kronecker product unchanged), where ``balance`` holds (kron_torch's ``_balance_Q``)."""
    norms = ops.stack([ops.max(ops.abs(q)) for q in factors])
    mean = ops.exp(_mean(ops.log(norms)))
    scales = ops.where(balance, ops.divide(mean, norms), ops.ones_like(norms))
    return [ops.multiply(q, scales[i]) for i, q in enumerate(factors)]


def _mix(x):
    """MurmurHash3's 32-bit finalizer: every input bit moves every output bit."""
    x = ops.bitwise_xor(x, ops.right_shift(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(np.uint32(0x85EBCA6B)))
    x = ops.bitwise_xor(x, ops.right_shift(x, 13))
    x = ops.multiply(x, ops.convert_to_tensor(np.uint32(0xC2B2AE35)))
    return ops.bitwise_xor(x, ops.right_shift(x, 16))


def hashed_normal(shape, dtype, key, step):
    """Numbers of zero mean and unit variance, of ``shape``, a pure function of ``(key,
    step)``: each is the sum of twelve uniforms minus 6 (Irwin-Hall: within +-6, excess
    kurtosis -0.1), the uniforms ``(k + 1/2) / 2**16`` from the halves of six hashed counters.
    Integer arithmetic up to one exact conversion, so every backend, compiler and machine draws
    the same numbers (TensorFlow's and JAX's own generators differ, and XLA's float64
    ``log``/``cos`` on the CPU are not correctly rounded, which rules out Box-Muller)."""
    size = math.prod(shape)
    golden = ops.convert_to_tensor(np.uint32(0x9E3779B9))
    stream = _mix(ops.add(ops.multiply(ops.cast(step, "uint32"), golden), ops.convert_to_tensor(np.uint32(key))))
    # TensorFlow has no uint32 range kernel: the counter is made in int32.
    counter = ops.cast(ops.arange(0, 6 * size, dtype="int32"), "uint32")
    bits = _mix(ops.add(ops.multiply(counter, golden), stream))
    low = ops.bitwise_and(bits, ops.convert_to_tensor(np.uint32(0xFFFF)))
    halves = ops.add(ops.cast(low, "int32"), ops.cast(ops.right_shift(bits, 16), "int32"))
    total = ops.sum(ops.reshape(halves, (6, size)), axis=0)  # < 12 * 2**16: exact
    # sum of (2 k + 1) / 2**17, minus 6, in units of 2**-17.
    centred = ops.subtract(ops.multiply(total, 2), 6 * 2**17 - 12)
    work = "float64" if dtype == "float64" else "float32"
    normal = ops.multiply(ops.cast(centred, work), 2.0**-17)
    return ops.cast(ops.reshape(normal, shape), dtype)


def _check_dtype(name, value):
    if value is not None:
        try:
            value = keras.backend.standardize_dtype(value)
        except (ValueError, TypeError, AttributeError):
            pass
    return check_choice(name, value, DTYPES)


def _check_probability(value):
    if value is None or isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, dict):
        return keras.optimizers.schedules.deserialize(value)
    if callable(value):
        raise ValueError(
            "`preconditioner_update_probability` must be None, a float in (0, 1] or a "
            "keras.optimizers.schedules.LearningRateSchedule (serializable; a plain callable "
            f"is not). Received: preconditioner_update_probability={value!r}"
        )
    return check_range("preconditioner_update_probability", value, 0.0, 1.0, low_open=True)


@keras.saving.register_keras_serializable(package="tfoptim")
class PSGDKron(Optimizer):
    """PSGD Kron: momentum preconditioned by a learned Kronecker product of triangular factors.

    Xi-Lin Li's preconditioned SGD, each factor fitted online to the gradients (diagonal
    factors where a triangular one would be too large).

    **The preconditioner.** Each variable, seen in its merged shape (``merge_dims``: a kernel
    of rank > 2 as the matrix ``(prod(shape[:-1]), shape[-1])``, the reference's rule, on
    Keras's ``(kh, kw, in, out)`` layout: ``(kh * kw * in, out)``; a scalar as one element), has
    one factor ``Q_i`` per dimension: an upper-triangular ``d_i x d_i`` matrix, started at
    ``s^(1/rank) I`` (``s = precond_init_scale``), or a diagonal (``d_i`` numbers, started at
    ``s^(1/rank)``) where ``d_i == 1``, ``d_i > max_size_triangular``, ``rank <
    min_ndim_triangular`` (a bias) or ``memory_save_mode`` says so (``"one_diag"``: the
    largest dimension, the last of equals; ``"smart_one_diag"``: the largest if strictly
    larger than the second; ``"all_diag"``: every one). ``Q = Q_1 (x) Q_2 (x) ...`` and the
    preconditioner is ``P = Q^T Q``, applied by ``P G = G x_1 Q_1^T Q_1 x_2 Q_2^T Q_2 ...``.

    **Step** ``t = 1, 2, ...`` (``n = t - 1``; ``m`` starts at 0, the counters ``c`` and
    ``k`` at 0)::

        m     <- b1 * m + (1 - b1) * g
        h     <- m / (1 - b1**t)
        c     <- c + 1;  update <- c >= 1 / p(n);  c <- 0 if update
        if update:
            k     <- (k + 1) mod 100;  balance the factors if k == 0      (rank >= 2 only)
            V     <- the probe: independent, zero mean, unit variance (see Randomness)
            G     <- h + sqrt(eps_32) * mean(|h|) * V  (g instead of h: momentum_into_precond_update=False)
            A     <- G x_1 Q_1 x_2 Q_2 ...;  B <- V x_1 Q_1^-T x_2 Q_2^-T ...
            for each factor i:
                T_a, T_b <- A_(i) A_(i)^T, B_(i) B_(i)^T   (diagonals only, for a diagonal Q_i)
                Q_i <- Q_i - precond_lr * triu(T_a - T_b) / max(lb(T_a + T_b), tiny) * Q_i
                       (diagonal: Q_i - precond_lr * (T_a - T_b) * Q_i / max(max|T_a + T_b|, tiny))
            h     <- G          if momentum_into_precond_update and m's dtype is precond_dtype
        u     <- P h  (with the updated factors)
        u     <- u * min(1, 1.1 / (sqrt(mean(u**2)) + 1e-12))
        u     <- u + weight_decay * theta                     (rank >= 2 variables only)
        theta <- theta - alpha * u

    ``A_(i)`` is ``A`` with dimension ``i`` first, flattened; ``lb`` is the reference's
    one-step power-iteration lower bound of a spectral norm; ``eps_32`` is float32's machine
    epsilon whatever the dtype; ``tiny`` the smallest normal number of the preconditioner's
    dtype. Balancing multiplies each factor by ``gm / max|Q_i|`` (``gm``: the geometric mean
    of the ``max|Q_i|``), leaving ``Q`` unchanged; it keeps the factors' scales apart from
    over- and underflow. The line ``h <- G`` is the reference's: it perturbs its momentum in
    place, so on update steps the perturbed momentum is what it preconditions, unless a
    dtype conversion (``mu_dtype`` other than ``precond_dtype``) made a copy. Weight decay is
    coupled to the update after the RMS clip, on variables of rank >= 2 only, and honours
    ``exclude_from_weight_decay``.

    **The update schedule.** ``preconditioner_update_probability`` is ``p(n)``: a float, or a
    ``LearningRateSchedule`` of the step ``n`` (None: :class:`UpdateProbabilitySchedule`,
    probability 1 for 500 steps, then an exponential anneal to 0.03). Updates happen when a
    counter of the steps since the last update reaches ``1 / p(n)`` (float32), so at the
    expected frequency ``p`` and without randomness: the rule of kron_torch 0.3 (earlier
    versions drew a Bernoulli variable each step). The reference rebalances at random, at
    1% of its update steps (Python's ``random.Random(42)``); here every 100th update does.

    **Randomness.** The probe ``V`` is a stateless draw keyed on ``(seed, the variable's
    index, optimizer.iterations)`` (:meth:`probe`, :func:`hashed_normal`): the same on every
    replica, after a ``.keras`` resume, on both Keras backends, with or without XLA, and on
    every run; no random state is kept. Its entries are independent with zero mean and unit
    variance (an Irwin-Hall sum, not a Gaussian: the fit needs only ``E[V V^T] = I``). The
    reference draws ``torch.randn_like``, so no run matches it value for value: it is
    compared through :meth:`probe`, which its tests override to replay the probes recorded
    with the reference (``tests/fixtures/record_psgd_kron.py``); the schedule and
    rebalancing above are the reference's with its randomness replaced by these rules.

    **Against kron_torch** (``Kron`` of Evan Walters' ``kron_torch`` 0.3.3, commit 884427c,
    based on Xi-Lin Li's ``psgd_torch``): with the reference's probes replayed, recorded
    float64 trajectories of 200 steps (triangular and diagonal factors, an annealed schedule,
    a convolution kernel) are followed to 1.5e-15 relative, and to 5.7e-11 where steps
    without momentum orbit the optimum and amplify rounding. Deliberate differences:

    * the probes (above) and the rebalancing steps are deterministic;
    * the reference solves its triangular systems in float32 whatever ``precond_dtype``, and
      its ``precond_dtype`` is float32 for float64 parameters too; float64 stays float64 here
      (the recording removes the cast and sets float64);
    * Keras's kernel layout ``(kh, kw, in, out)`` merges to another matrix than torch's
      ``(out, in, kh, kw)``: the rule is the reference's, applied to Keras's shape;
    * scalars, which the reference cannot precondition, are one-element vectors; it prints
      its state's size at the first step.

    **Precision.** ``precond_dtype`` holds the factors and runs the preconditioner's
    arithmetic; None is float32 (the reference's default), float64 for float64 variables
    (where the reference keeps float32). ``mu_dtype`` (None: the variable's, as the
    reference) holds the momentum.

    **Cost.** Per variable: the momentum and ``d_i^2`` (triangular) or ``d_i`` (diagonal)
    numbers per dimension; two scalars. Every step, one product with ``Q_i^T Q_i`` per
    dimension; on update steps, two Kronecker products, one triangular solve and two Gram
    matrices per dimension.

    Reference: Xi-Lin Li, "Preconditioned stochastic gradient descent" (IEEE TNNLS 2018,
    arXiv:1512.04202) and "Black box Lie group preconditioners for SGD" (arXiv:2211.04422);
    https://github.com/evanatyourservice/kron_torch (``kron_torch/kron.py``).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable: ``alpha``.
            Defaults to 0.0003 (the reference's).
        b1: momentum decay, in [0, 1). Defaults to 0.9.
        weight_decay: coupled to the update, on variables of rank >= 2 (see above), >= 0.
            Defaults to 0.
        preconditioner_update_probability: None, a float in (0, 1], or a
            ``LearningRateSchedule`` of the step giving the probability. Defaults to None.
        max_size_triangular: dimensions larger than this get a diagonal factor, integer >= 1.
            Defaults to 8192.
        min_ndim_triangular: variables (merged) of lower rank get diagonal factors only,
            integer >= 0. Defaults to 2.
        memory_save_mode: None, ``"smart_one_diag"``, ``"one_diag"`` or ``"all_diag"``.
            Defaults to None.
        momentum_into_precond_update: fit the preconditioner to the momentum (True) or the
            gradient. Defaults to True.
        precond_lr: step size of the factors' fit, > 0. Defaults to 0.1.
        precond_init_scale: the preconditioner's initial scale, > 0. Defaults to 1.0.
        merge_dims: precondition variables of rank > 2 as matrices. Defaults to True.
        mu_dtype: dtype of the momentum, None for the variable's. Defaults to None.
        precond_dtype: dtype of the factors, None for float32 (float64 for float64
            variables). Defaults to None.
        seed: integer >= 0 keying the probe draws. Defaults to 0.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    elementwise = False
    weight_decay_in_rule = True

    def __init__(
        self,
        learning_rate=0.0003,
        b1=0.9,
        weight_decay=0.0,
        preconditioner_update_probability=None,
        max_size_triangular=8192,
        min_ndim_triangular=2,
        memory_save_mode=None,
        momentum_into_precond_update=True,
        precond_lr=0.1,
        precond_init_scale=1.0,
        merge_dims=True,
        mu_dtype=None,
        precond_dtype=None,
        seed=0,
        name=None,
        **kwargs,
    ):
        if weight_decay is None:
            raise ValueError("`weight_decay` of PSGDKron must be a float >= 0. Received: None")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs)
        self.b1 = check_unit_interval("b1", b1)
        self.preconditioner_update_probability = _check_probability(preconditioner_update_probability)
        self.max_size_triangular = check_steps("max_size_triangular", max_size_triangular, minimum=1)
        self.min_ndim_triangular = check_steps("min_ndim_triangular", min_ndim_triangular)
        self.memory_save_mode = check_choice("memory_save_mode", memory_save_mode, MEMORY_SAVE_MODES)
        self.momentum_into_precond_update = check_bool("momentum_into_precond_update", momentum_into_precond_update)
        self.precond_lr = check_positive("precond_lr", precond_lr)
        self.precond_init_scale = check_positive("precond_init_scale", precond_init_scale)
        self.merge_dims = check_bool("merge_dims", merge_dims)
        self.mu_dtype = _check_dtype("mu_dtype", mu_dtype)
        self.precond_dtype = _check_dtype("precond_dtype", precond_dtype)
        self.seed = check_steps("seed", seed)
        probability = self.preconditioner_update_probability
        self._schedule = UpdateProbabilitySchedule() if probability is None else probability

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._factors, self._counters, self._shapes = [], [], [], []
        for variable in variables:
            # A raw tf.Variable has a name (with ":0") but no path.
            prefix = getattr(variable, "path", variable.name.split(":")[0]).replace("/", "_")
            shape = merged_shape(variable.shape, self.merge_dims)
            precond_dtype = self.precond_dtype or scalar_dtype(variable.dtype)
            self._shapes.append(shape)
            self._momentums.append(
                self.add_variable(
                    variable.shape, dtype=self.mu_dtype or variable.dtype, name=f"{prefix}_momentum"
                )
            )
            diagonal = diagonal_dimensions(
                shape, self.max_size_triangular, self.min_ndim_triangular, self.memory_save_mode
            )
            scale = self.precond_init_scale ** (1 / len(shape))
            self._factors.append(
                [
                    self.add_variable(
                        (size,) if diag else (size, size),
                        initializer=keras.initializers.Constant(scale) if diag else keras.initializers.Identity(scale),
                        dtype=precond_dtype,
                        name=f"{prefix}_factor_{i}",
                    )
                    for i, (size, diag) in enumerate(zip(shape, diagonal))
                ]
            )
            # Steps since the last preconditioner update, and updates modulo BALANCE_EVERY:
            # small integers, exact in float32.
            self._counters.append(
                [self.add_variable((), dtype="float32", name=f"{prefix}_{n}") for n in ("since_update", "updates")]
            )

    def probe(self, index, shape, dtype):
        """The probe ``V ~ N(0, I)`` of this step's preconditioner update of variable ``index``
        (``shape``: the merged shape): :func:`hashed_normal` keyed on ``(seed, index)`` and
        ``iterations``. Tests replay a reference's probes by overriding this method."""
        return hashed_normal(shape, dtype, (self.seed * 1000003 + index) % 2**32, self.iterations)

    def _threshold(self):
        """``1 / p(n)`` in float32: a float ``p`` as a Python scalar meets torch's counter."""
        probability = self._schedule
        if isinstance(probability, float):
            return ops.convert_to_tensor(np.float32(1.0 / probability))
        return ops.divide(1.0, ops.cast(probability(self.iterations), "float32"))

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        momentum, factors, shape = self._momentums[index], self._factors[index], self._shapes[index]
        since_update, updates = self._counters[index]
        precond_dtype = factors[0].dtype
        gradient = dense(gradient)
        b1 = self.hyperparameter(self.b1)

        new_momentum = ops.add(
            ops.multiply(momentum, b1), ops.multiply(ops.cast(gradient, momentum.dtype), 1 - b1)
        )
        self.assign(momentum, new_momentum)
        step = ops.cast(self.iterations + 1, "float64")
        correction = ops.subtract(1.0, ops.power(ops.convert_to_tensor(b1, "float64"), step))
        debiased = ops.divide(new_momentum, ops.cast(correction, momentum.dtype))
        debiased = ops.reshape(ops.cast(debiased, precond_dtype), shape)

        count = ops.add(since_update, 1.0)
        update = ops.greater_equal(count, self._threshold())
        self.assign(since_update, ops.where(update, 0.0, count))
        done = ops.mod(ops.add(updates, ops.cast(update, "float32")), float(BALANCE_EVERY))
        self.assign(updates, done)
        balance = ops.logical_and(update, ops.equal(done, 0.0))

        shares_perturbation = self.momentum_into_precond_update and momentum.dtype == precond_dtype
        rate = ops.cast(learning_rate, variable.dtype)

        def apply(direction, values):
            direction = preconditioned(direction, values)
            rms = ops.sqrt(_mean(ops.square(direction)))
            direction = ops.multiply(direction, ops.minimum(1.0, ops.divide(1.1, ops.add(rms, 1e-12))))
            direction = ops.reshape(direction, variable.shape)
            if self.weight_decay and len(variable.shape) >= 2 and self._use_weight_decay(variable):
                decay = self.hyperparameter(self.weight_decay)
                direction = ops.add(direction, ops.multiply(ops.cast(variable, precond_dtype), decay))
            self.assign_sub(variable, ops.multiply(ops.cast(direction, variable.dtype), rate))

        def update_and_apply():
            target = debiased
            if not self.momentum_into_precond_update:
                target = ops.reshape(ops.cast(gradient, precond_dtype), shape)
            probe = self.probe(index, shape, precond_dtype)
            scale = ops.multiply(ops.sqrt(ops.convert_to_tensor(FLOAT32_EPS, precond_dtype)), _mean(ops.abs(target)))
            target = ops.add(target, ops.multiply(scale, probe))
            current = [ops.convert_to_tensor(q) for q in factors]
            if len(shape) > 1:
                current = balanced(current, balance)
            new = updated_factors(
                current, target, probe, ops.convert_to_tensor(self.precond_lr, precond_dtype),
                TINY[precond_dtype],
            )
            for q, value in zip(factors, new):
                self.assign(q, value)
            apply(target if shares_perturbation else debiased, new)

        def apply_only():
            apply(debiased, [ops.convert_to_tensor(q) for q in factors])

        # iterations keys the probe: on JAX a branch reads only the variables listed.
        conditional_update(update, update_and_apply, [variable, *factors, self.iterations], otherwise=apply_only)

    def get_config(self):
        config = super().get_config()
        probability = self.preconditioner_update_probability
        if isinstance(probability, keras.optimizers.schedules.LearningRateSchedule):
            config["preconditioner_update_probability"] = keras.optimizers.schedules.serialize(probability)
        return config
