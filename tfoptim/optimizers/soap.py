import keras
from keras import ops

from tfoptim._validation import check_positive, check_steps, check_unit_interval
from tfoptim.optimizers._moments import bias_correction, mean_of_all, scalar_dtype, update_moment
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import conditional_update


def _merged_shape(shape, max_precond_dim):
    """The official ``merge_dims``: neighbouring dimensions multiplied together while the
    product stays <= ``max_precond_dim`` (``(3, 3, 64, 128)`` -> ``(576, 128)``)."""
    merged, current = [], 1
    for size in shape:
        if current * size > max_precond_dim:
            merged.append(current if current > 1 else size)
            current = size if current > 1 else 1
        else:
            current *= size
    if current > 1 or not merged:
        merged.append(current)
    return tuple(merged)


@keras.saving.register_keras_serializable(package="tfoptim")
class SOAP(Optimizer):
    """SOAP: Adam run in the eigenbasis of Shampoo's preconditioner, refreshed every few steps.

    Each dimension ``i`` of a variable (of size ``d_i <= max_precond_dim``) keeps a
    ``d_i x d_i`` statistic ``L_i`` (Shampoo's ``L``/``R``, the gradient's covariance along that
    dimension) and an orthogonal ``Q_i``, its eigenbasis. ``G x_i Q`` multiplies dimension ``i``
    of ``G`` by ``Q``; ``project(G) = G x_1 Q_1 x_2 Q_2 ...`` (``Q_i^T`` applied along each
    dimension) and ``project_back`` applies the ``Q_i`` themselves. Dimensions larger than
    ``max_precond_dim`` (an embedding's vocabulary) have no statistic: ``Q_i`` is the
    identity there. 1-D variables have none unless ``precondition_1d``; with ``merge_dims``
    the statistics are those of the variable reshaped by merging neighbouring dimensions
    while their product stays <= ``max_precond_dim``.

    Step ``t = 0`` (the first call) only sets up the basis, the parameters do not move::

        L_i <- (1 - shampoo_beta) * G_(i) G_(i)^T      (G_(i): G with dim i first, flattened)
        Q_i <- eigenvectors of L_i, by decreasing eigenvalue

    Every later step ``t = 1, 2, ...`` is Adam on the projected gradient, with its moments
    kept in the eigenbasis::

        g'    <- project(g)
        m     <- beta_1 * m + (1 - beta_1) * g'
        v     <- beta_2 * v + (1 - beta_2) * g'**2
        u     <- project_back(m / (sqrt(v) + eps))
        u     <- u / (1e-30 + sqrt(mean(u**2)))                       (normalize_grads only)
        theta <- theta - alpha * sqrt(1 - beta_2**t) / (1 - beta_1**t) * u
                 (no bias correction with correct_bias=False: theta <- theta - alpha * u)
        theta <- theta - alpha * weight_decay * theta                 (after the step)
        L_i   <- shampoo_beta * L_i + (1 - shampoo_beta) * G_(i) G_(i)^T

    and when ``t`` is a multiple of ``precondition_frequency`` the basis is refreshed by one
    step of power iteration followed by a QR decomposition, and the moments follow it::

        m     <- project_back(m)                                       (old basis)
        order <- argsort(-diag(Q_i^T L_i Q_i));  v <- v[..., order, ...] along dim i
        Q_i   <- Q of qr(L_i Q_i[:, order])
        m     <- project(m)                                            (new basis)

    This follows the authors' implementation, which differs from the paper's Algorithm 3 in
    a few places: the first call only builds the basis (so the projection never uses the
    gradient it projects), and Adam's step count ``t`` starts on the next call; the basis is
    refreshed by power iteration and QR, not a full eigendecomposition, and the second
    moment is permuted with it; the first moment is stored in the eigenbasis (equivalent to
    storing it in the original one: ``Q_i`` is orthogonal); weight decay is decoupled and
    applied *after* the step, to the updated weights, from the first Adam step on
    (``exclude_from_weight_decay`` is honoured); ``L_i`` gets ``1e-30 * I`` added before the
    first eigendecomposition. ``shampoo_beta=None`` (the official ``-1``) uses ``beta_2``.

    Precision: the statistics, bases and moments are kept in float32 for float16/bfloat16
    variables (float64 for float64 ones). The official code casts the statistics to float32
    for ``eigh`` and QR even for float64 parameters, which injects ~1e-8 components into the
    projected gradient; in the first Adam step, whose update is sign-like, that moves a
    float64 trajectory by ~1e-3 relative. tfoptim keeps float64 in float64 and is tested
    against the official code with that one cast changed (``tests/fixtures/record_soap.py``).
    Keras kernels have a single layout, so the official ``data_format`` argument has no
    equivalent.

    Reproducibility: when a first statistic ``L_i`` is rank-deficient (a batch with fewer
    samples than ``d_i``, a dimension the gradient does not span), its eigenvectors for the
    repeated eigenvalue are not unique, and any rounding difference picks another basis: a
    different summation order of the gradient (two workers against one process, PyTorch
    against TensorFlow) then gives a genuinely different, equally valid trajectory (measured:
    0.13 absolute after a few steps of a digits MLP, two ``MultiWorkerMirroredStrategy``
    workers against one process; every other tfoptim optimizer agrees to 1e-14 there).

    Cost: per preconditioned dimension two ``d_i x d_i`` matrices, two projections per step
    (``O(n * sum(d_i))``), one QR every ``precondition_frequency`` steps and one ``eigh`` at
    the first. The eigendecompositions stay out of XLA: the fast path leaves SOAP to Keras's
    per-variable loop (``fast_path`` has no effect), because XLA's CPU ``eigh`` is much slower
    than LAPACK's and less accurate (``docs/performance.md``). Inside a step compiled with ``jit_compile=True`` it
    works, at XLA's ``eigh`` precision.

    Reference: Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade, "SOAP:
    Improving and Stabilizing Shampoo using Adam" (ICLR 2025, arXiv:2409.11321); official
    implementation https://github.com/nikhilvyas/SOAP (``soap.py``).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.003.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.95.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.95.
        shampoo_beta: decay of the statistics ``L_i``, in [0, 1), or None for ``beta_2``.
            Defaults to None.
        epsilon: > 0, added to ``sqrt(v)``. Defaults to 1e-8.
        weight_decay: decoupled, applied after the step (see above), >= 0. Defaults to 0.01.
        precondition_frequency: refresh the basis every this many steps, integer >= 1.
            Defaults to 10.
        max_precond_dim: dimensions larger than this get no preconditioner, integer >= 1.
            Defaults to 10000.
        merge_dims: precondition the variable reshaped with small dimensions merged.
            Defaults to False.
        precondition_1d: give 1-D variables (up to ``max_precond_dim``) a preconditioner.
            Defaults to False.
        normalize_grads: scale each variable's update to unit root-mean-square. Defaults to
            False.
        correct_bias: Adam's bias correction of the step size. Defaults to True.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    fast_path_compatible = False
    weight_decay_in_rule = True
    per_variable_weight_decay = True

    def __init__(
        self,
        learning_rate=0.003,
        beta_1=0.95,
        beta_2=0.95,
        shampoo_beta=None,
        epsilon=1e-8,
        weight_decay=0.01,
        precondition_frequency=10,
        max_precond_dim=10000,
        merge_dims=False,
        precondition_1d=False,
        normalize_grads=False,
        correct_bias=True,
        name=None,
        **kwargs,
    ):
        if weight_decay is None:
            raise ValueError("`weight_decay` of SOAP must be a float >= 0. Received: None")
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_unit_interval("beta_2", beta_2)
        self.shampoo_beta = (
            None if shampoo_beta is None else check_unit_interval("shampoo_beta", shampoo_beta)
        )
        self.epsilon = check_positive("epsilon", epsilon)
        self.precondition_frequency = check_steps(
            "precondition_frequency", precondition_frequency, minimum=1
        )
        self.max_precond_dim = check_steps("max_precond_dim", max_precond_dim, minimum=1)
        self.merge_dims = bool(merge_dims)
        self.precondition_1d = bool(precondition_1d)
        self.normalize_grads = bool(normalize_grads)
        self.correct_bias = bool(correct_bias)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._exp_avgs, self._exp_avg_sqs, self._shapes, self._bases = [], [], [], []
        for variable in variables:
            dtype = scalar_dtype(variable.dtype)
            # A raw tf.Variable has a name (with ":0") but no path.
            prefix = getattr(variable, "path", variable.name.split(":")[0]).replace("/", "_")

            def slot(shape, name):
                return self.add_variable(shape, dtype=dtype, name=f"{prefix}_{name}")

            self._exp_avgs.append(slot(variable.shape, "exp_avg"))
            self._exp_avg_sqs.append(slot(variable.shape, "exp_avg_sq"))
            shape = tuple(variable.shape)
            if len(shape) == 1:
                preconditioned = [self.precondition_1d and shape[0] <= self.max_precond_dim]
            else:
                if self.merge_dims:
                    shape = _merged_shape(shape, self.max_precond_dim)
                preconditioned = [size <= self.max_precond_dim for size in shape]
            self._shapes.append(shape)
            self._bases.append(
                [
                    [slot((size, size), f"statistic_{i}"), slot((size, size), f"basis_{i}")]
                    if use
                    else None
                    for i, (size, use) in enumerate(zip(shape, preconditioned))
                ]
            )

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        exp_avg, exp_avg_sq = self._exp_avgs[index], self._exp_avg_sqs[index]
        shape, bases = self._shapes[index], self._bases[index]
        dtype = exp_avg.dtype
        gradient = ops.reshape(ops.cast(ops.convert_to_tensor(gradient), dtype), shape)
        shampoo_beta = self.beta_2 if self.shampoo_beta is None else self.shampoo_beta
        state = [variable, exp_avg, exp_avg_sq, self.iterations, *(v for pair in filter(None, bases) for v in pair)]

        def project(x, back=False):
            # Contracting dimension 0 moves the result to the end: after every dimension
            # the order is the original one.
            x = ops.reshape(x, shape)
            for basis in bases:
                if basis is None:
                    x = ops.transpose(x, [*range(1, len(shape)), 0])
                else:
                    x = ops.tensordot(x, basis[1], axes=[[0], [1 if back else 0]])
            return x

        def accumulate_statistics():
            for i, basis in enumerate(bases):
                if basis is not None:
                    others = [j for j in range(len(shape)) if j != i]
                    outer = ops.tensordot(gradient, gradient, axes=[others, others])
                    update_moment(self, basis[0], outer, shampoo_beta)

        def initialize():
            accumulate_statistics()
            for statistic, basis in filter(None, bases):
                tiny = ops.multiply(ops.eye(statistic.shape[0], dtype=dtype), 1e-30)
                _, vectors = ops.eigh(ops.add(statistic, tiny))
                self.assign(basis, ops.flip(vectors, axis=1))

        def refresh():
            moment = project(exp_avg, back=True)
            second = ops.reshape(exp_avg_sq, shape)
            for i, bases_i in enumerate(bases):
                if bases_i is None:
                    continue
                statistic, basis = bases_i
                power = ops.matmul(statistic, basis)
                order = ops.argsort(ops.negative(ops.sum(ops.multiply(basis, power), axis=0)))
                second = ops.take(second, order, axis=i)
                self.assign(basis, ops.qr(ops.take(power, order, axis=1))[0])
            self.assign(exp_avg_sq, ops.reshape(second, exp_avg_sq.shape))
            self.assign(exp_avg, ops.reshape(project(moment), exp_avg.shape))

        def adam_step():
            projected = project(gradient)
            projected = ops.reshape(projected, exp_avg.shape)
            update_moment(self, exp_avg, projected, self.beta_1)
            update_moment(self, exp_avg_sq, ops.square(projected), self.beta_2)
            step = ops.cast(self.iterations, scalar_dtype(dtype))
            rate = ops.cast(learning_rate, step.dtype)
            step_size = rate
            if self.correct_bias:
                correction_1 = bias_correction(self.hyperparameter(self.beta_1), step)
                correction_2 = bias_correction(self.hyperparameter(self.beta_2), step)
                step_size = ops.divide(ops.multiply(rate, ops.sqrt(correction_2)), correction_1)
            scaled = ops.divide(exp_avg, ops.add(ops.sqrt(exp_avg_sq), self.epsilon))
            update = project(scaled, back=True)
            if self.normalize_grads:
                update = ops.divide(update, ops.add(ops.sqrt(mean_of_all(ops.square(update))), 1e-30))
            update = ops.multiply(ops.reshape(update, variable.shape), ops.cast(step_size, dtype))
            self.assign_sub(variable, ops.cast(update, variable.dtype))
            coefficient = self.weight_decay_of(variable)
            if coefficient:
                # The official p.add_(p, alpha=-lr * wd), on the updated weights.
                decay = ops.multiply(rate, -self.hyperparameter(coefficient))
                self.assign_add(variable, ops.multiply(variable, ops.cast(decay, variable.dtype)))
            accumulate_statistics()
            due = ops.equal(ops.mod(self.iterations, self.precondition_frequency), 0)
            conditional_update(due, refresh, state)

        conditional_update(ops.equal(self.iterations, 0), initialize, state, otherwise=adam_step)
