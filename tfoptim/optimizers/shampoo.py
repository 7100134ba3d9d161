import itertools
import numbers

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
from tfoptim.optimizers._moments import bias_correction, scalar_dtype
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import conditional_update

GRAFTINGS = ("adam", "rmsprop", "adagrad", "sgd", None)

#: Added to the norm of Shampoo's direction before grafting divides by it (the reference's).
GRAFTING_NORM_EPSILON = 1e-16


def merged_shape(shape, max_preconditioner_dim, target_parameter_dimensionality):
    """The reference's ``merge_small_dims``: dimensions of size 1 dropped, then, from the last
    dimension backwards, each merged into its right neighbour while the product stays
    ``<= max_preconditioner_dim`` and more than ``target_parameter_dimensionality`` dimensions
    would remain (``None``: the shape as it is). ``(3, 3, 4, 8)`` at 1024 -> ``(288,)``, at 64
    -> ``(9, 32)``; ``(300, 40)`` stays; a scalar is ``(1,)``."""
    if target_parameter_dimensionality is None:
        return tuple(shape) or (1,)
    if 0 in shape:
        return (0,)
    squeezed = [size for size in reversed(shape) if size != 1] or [1]
    merged = [squeezed[0]]
    for done, size in enumerate(squeezed[1:], start=1):
        remaining = len(merged) + len(squeezed) - done
        if remaining > target_parameter_dimensionality and merged[-1] * size <= max_preconditioner_dim:
            merged[-1] *= size
        else:
            merged.append(size)
    return tuple(reversed(merged))


def block_sizes(shape, max_preconditioner_dim):
    """Per dimension, the sizes of its chunks (``torch.split``: ``max_preconditioner_dim`` each,
    the last shorter)."""
    return [
        [min(max_preconditioner_dim, size - start) for start in range(0, size, max_preconditioner_dim)] or [0]
        for size in shape
    ]


def split_blocks(x, sizes):
    """The blocks of ``x`` in the reference's order (row-major over the block indices)."""
    offsets = [list(itertools.accumulate([0, *s[:-1]])) for s in sizes]
    blocks = []
    for index in itertools.product(*(range(len(s)) for s in sizes)):
        slices = tuple(slice(offsets[d][i], offsets[d][i] + sizes[d][i]) for d, i in enumerate(index))
        blocks.append(x[slices])
    return blocks


def join_blocks(blocks, sizes):
    """Inverse of :func:`split_blocks`: concatenated along the last dimension first."""
    for axis in reversed(range(len(sizes))):
        count = len(sizes[axis])
        if count > 1:
            blocks = [ops.concatenate(blocks[i : i + count], axis=axis) for i in range(0, len(blocks), count)]
        else:
            blocks = list(blocks)
    (joined,) = blocks
    return joined


def check_exponent_override(override):
    """``{order: exponent}`` or ``{order: {dimension: exponent}}`` with int keys (a saved
    config's string keys are read back as ints)."""
    if override is None:
        return None
    if not isinstance(override, dict):
        raise ValueError(
            "`inverse_exponent_override` must be a dict {order: exponent or {dimension: exponent}}. "
            f"Received: inverse_exponent_override={override!r}"
        )
    checked = {}
    for order, value in override.items():
        order = check_steps("inverse_exponent_override's order", int(order) if isinstance(order, str) else order)
        if isinstance(value, dict):
            dims = {}
            for dim, exponent in value.items():
                dim = check_steps("inverse_exponent_override's dimension", int(dim) if isinstance(dim, str) else dim)
                if dim > max(order - 1, 0):
                    raise ValueError(
                        f"`inverse_exponent_override` of order {order} names dimension {dim}, "
                        f"outside [0, {max(order - 1, 0)}]. Received: inverse_exponent_override={override!r}"
                    )
                dims[dim] = check_non_negative(f"inverse_exponent_override[{order}][{dim}]", exponent)
            checked[order] = dims
        else:
            checked[order] = check_non_negative(f"inverse_exponent_override[{order}]", value)
    return checked


@keras.saving.register_keras_serializable(package="tfoptim")
class Shampoo(Optimizer):
    """Shampoo: Kronecker-factored preconditioning, grafted onto Adam's step size, as Meta's
    Distributed Shampoo runs it on a single device.

    **Blocks.** Each variable is viewed as the reference does: dimensions of size 1 dropped
    and neighbouring dimensions merged, from the last backwards, while their product stays
    ``<= max_preconditioner_dim`` (until ``target_parameter_dimensionality`` dimensions are
    left; ``None``: no merging). Every dimension of that view is then cut into chunks of
    ``max_preconditioner_dim`` (the last shorter): a ``300 x 40`` kernel at 64 is five
    ``64 x 40``-or-smaller blocks, a ``3 x 3 x 4 x 8`` convolution kernel at 1024 one vector of
    288, and a bias a vector. Each block ``G`` of order ``k`` has, per dimension ``i`` of size
    ``d_i`` with exponent ``e_i != 0``, a ``d_i x d_i`` factor ``F_i`` and its inverse root
    ``R_i`` (the identity until first computed). The exponent is ``1 / (2k)`` unless
    ``inverse_exponent_override`` gives one: ``{order: e}`` for every dimension of blocks of
    that order, or ``{order: {dimension: e}}``; ``e = 0`` leaves that dimension
    unpreconditioned.

    **Step** ``t = 1, 2, ...`` on the gradient ``G`` (``coupled_weight_decay`` added first, the
    reference's ``WeightDecayType.L2``), per block::

        F_i <- beta_2 * F_i + w * G_(i) G_(i)^T        (w = 1 - beta_2, or 1 when beta_2 = 1)
        V   <- grafting's second moment of G            (Adam, RMSprop: b V + (1 - b) G**2;
                                                         AdaGrad: V + G**2; SGD: none)
        when t == start or (t > start and t % precondition_frequency == 0), for each i:
            A   = F_i / (1 - beta_2**t) + epsilon * I   (no division if beta_2 = 1 or not
                                                         use_bias_correction)
            A   = Q diag(lambda) Q^T                    (eigh)
            lambda <- lambda - min(lambda) + epsilon    (only if min(lambda) < epsilon)
            R_i <- Q diag(lambda ** (-e_i)) Q^T
        M   <- beta_1 * M + (1 - beta_1) * G            (beta_1 > 0; G_bar = G otherwise)
        G_bar = (beta_3 * M_old + (1 - beta_3) * G, or M when beta_3 = beta_1)
                / (1 - beta_3 * beta_1**(t - 1))        (use_bias_correction)
        P_graft = G_bar / (sqrt(V / c) + grafting_epsilon)   (c = 1 - b**t for Adam, else 1;
                                                              SGD: P_graft = G_bar)
        if t < start and grafting:  P = P_graft
        else:  P = G_bar x_1 R_1 x_2 R_2 ...          (x_i: dimension i times R_i)
               P <- P * ||P_graft|| / (||P|| + 1e-16)    (with grafting; norms per block)

    then for the whole variable::

        P     <- P + weight_decay * theta               (decoupled: the reference's DECOUPLED)
        B     <- momentum * B + (1 - dampening) * P     (momentum > 0, the reference's
        P     <- (1 - dampening) * P + momentum * B      ClassicMomentumConfig; without
                 (nesterov), else P <- B                  nesterov)
        theta <- theta - lr * P

    ``start`` is ``start_preconditioning_step`` (``None``: ``precondition_frequency``, the
    reference's ``-1``). Before it, with grafting, the step is the grafted method's; without,
    the inverse roots are still identities and the step is the filtered gradient's.

    Reference: Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor
    Optimization" (ICML 2018); Shi, Lee, Iwasaki, Gallego-Posada, Li, Rangadurai, Mudigere &
    Rabbat, "A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo
    Optimizer for Training Neural Networks At-Scale" (arXiv:2309.06497, 2023); the reference
    implementation https://github.com/facebookresearch/optimizers (``distributed_shampoo``),
    ``DistributedShampoo`` with its default single-device distributed config and its default
    preconditioner (``RootInvShampooPreconditionerConfig``: inverse roots by ``eigh``, epsilon
    added before the decomposition). Supported of its configuration, exactly: ``lr``,
    ``betas``, ``beta3``, ``epsilon``, ``weight_decay`` of type ``DECOUPLED`` (Keras's
    ``weight_decay``) and ``L2`` (``coupled_weight_decay``), ``max_preconditioner_dim``,
    ``precondition_frequency``, ``start_preconditioning_step``, ``use_bias_correction``,
    ``grafting_config`` (Adam, RMSprop, AdaGrad, SGD or none: ``grafting``,
    ``grafting_beta_2``, ``grafting_epsilon``), ``inverse_exponent_override``,
    ``ClassicMomentumConfig`` (``momentum``, ``dampening``, ``nesterov``) and the distributed
    config's ``target_parameter_dimensionality``. Not supported: the other preconditioners
    (eigenvalue-corrected/SOAP, which is :class:`SOAP`'s family; Newton iterations;
    pseudo-inverse), trace scaling, iterate averaging/schedule-free, the ``CORRECTED`` and
    ``INDEPENDENT`` weight decays.

    Deliberate differences. Precision: the factors, inverse roots and all slots are kept in
    the variable's precision, float32 for float16/bfloat16 variables (the reference keeps
    factors and roots in float32 by default, the other state in the parameter's dtype; it
    offers float64 factors by ``factor_matrix_dtype``, which the recorded references use).
    Failures: the reference raises on non-finite factors and keeps the previous root when
    ``eigh`` fails; here a non-finite gradient is for ``skip_nonfinite``, and a failed
    decomposition gives non-finite roots. Defaults: those of the reference's README example
    with Adam grafting and decoupled decay (its AdamW recipe), not its constructor's (which
    graft nothing and precondition every step at ``lr=0.01``), except the block size and the
    merging below.

    Cost: per block dimension two ``d x d`` matrices (the factor and its root), ``O(n * sum
    d_i)`` per step for the factors and the preconditioning, one ``eigh`` per factor every
    ``precondition_frequency`` steps. Two defaults keep that within a CPU's reach, where the
    README example (written for GPUs) does not: ``max_preconditioner_dim=1024`` (the
    reference constructor's; the example's 8192 gives a 4096 x 4096 kernel two 4096 x 4096
    factors and their ``eigh``), and ``target_parameter_dimensionality=2``: merging stops at two
    dimensions, so a 64x64 kernel keeps two 64 x 64 factors (a convolution kernel becomes a
    matrix), where the reference's 1 merges any variable of at most ``max_preconditioner_dim``
    elements into one vector (that kernel would get two 4096 x 4096 matrices at 8192). Pass
    ``max_preconditioner_dim=8192, target_parameter_dimensionality=1`` for the example's
    layout. Very large variables (embedding tables) still get ``rows / 1024`` blocks of
    1024 x 1024: leave them to another optimizer (``keras.optimizers.MultiOptimizer``). The
    decompositions stay out of XLA: the fast path leaves Shampoo to Keras's per-variable loop
    (``fast_path`` has no effect), as for SOAP.

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the filtered gradient ``M``, in [0, 1); 0 uses the gradient.
            Defaults to 0.9.
        beta_2: decay of the factors, in [0, 1]; 1 sums them (AdaGrad-like). Defaults to 0.999.
        beta_3: weight of ``M`` in this step's filtered gradient, in [0, 1), or None for
            ``beta_1``. Defaults to None.
        epsilon: > 0, added to each factor before its inverse root. Defaults to 1e-12.
        max_preconditioner_dim: the largest block dimension, integer >= 1. Defaults to 1024.
        precondition_frequency: recompute the inverse roots every this many steps, integer
            >= 1. Defaults to 100.
        start_preconditioning_step: the step of the first inverse roots, an integer >=
            ``precondition_frequency``, or None for ``precondition_frequency``. Defaults to
            None.
        use_bias_correction: bias-correct the filtered gradient and the factors. Defaults to
            True.
        grafting: ``"adam"``, ``"rmsprop"``, ``"adagrad"``, ``"sgd"`` or None: whose step
            size (per block) Shampoo's direction takes. Defaults to ``"adam"``.
        grafting_beta_2: the grafted method's second-moment decay (Adam, RMSprop), in (0, 1].
            Defaults to 0.999.
        grafting_epsilon: > 0, added to the grafted method's ``sqrt(V)``. Defaults to 1e-8.
        inverse_exponent_override: None, or a dict ``{order: exponent}`` or
            ``{order: {dimension: exponent}}`` (exponents >= 0; 0: not preconditioned).
            Defaults to None.
        momentum: heavy-ball momentum on the search direction, in [0, 1); 0 for none.
            Defaults to 0.
        dampening: in [0, 1). Defaults to 0.
        nesterov: Nesterov's form of the momentum. Defaults to False.
        target_parameter_dimensionality: stop merging dimensions when this many are left,
            integer >= 1, or None to merge none. Defaults to 2 (the reference's is 1).
        weight_decay: decoupled, added to the direction before the momentum, >= 0. Defaults
            to 1e-5.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    fast_path_compatible = False
    weight_decay_in_rule = True
    elementwise = False

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=None,
        epsilon=1e-12,
        max_preconditioner_dim=1024,
        precondition_frequency=100,
        start_preconditioning_step=None,
        use_bias_correction=True,
        grafting="adam",
        grafting_beta_2=0.999,
        grafting_epsilon=1e-8,
        inverse_exponent_override=None,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        target_parameter_dimensionality=2,
        weight_decay=1e-5,
        name=None,
        **kwargs,
    ):
        if weight_decay is None:
            raise ValueError("`weight_decay` of Shampoo must be a float >= 0. Received: None")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs)
        self.beta_1 = check_unit_interval("beta_1", beta_1)
        self.beta_2 = check_range("beta_2", beta_2, 0.0, 1.0)
        self.beta_3 = None if beta_3 is None else check_unit_interval("beta_3", beta_3)
        self.epsilon = check_positive("epsilon", epsilon)
        self.max_preconditioner_dim = check_steps("max_preconditioner_dim", max_preconditioner_dim, minimum=1)
        self.precondition_frequency = check_steps("precondition_frequency", precondition_frequency, minimum=1)
        self.start_preconditioning_step = (
            None
            if start_preconditioning_step is None
            else check_steps(
                "start_preconditioning_step", start_preconditioning_step, minimum=self.precondition_frequency
            )
        )
        self.use_bias_correction = check_bool("use_bias_correction", use_bias_correction)
        self.grafting = check_choice("grafting", grafting, GRAFTINGS)
        self.grafting_beta_2 = check_range("grafting_beta_2", grafting_beta_2, 0.0, 1.0, low_open=True)
        self.grafting_epsilon = check_positive("grafting_epsilon", grafting_epsilon)
        self.inverse_exponent_override = check_exponent_override(inverse_exponent_override)
        self.momentum = check_unit_interval("momentum", momentum)
        self.dampening = check_unit_interval("dampening", dampening)
        self.nesterov = check_bool("nesterov", nesterov)
        self.target_parameter_dimensionality = (
            None
            if target_parameter_dimensionality is None
            else check_steps("target_parameter_dimensionality", target_parameter_dimensionality, minimum=1)
        )

    # -- structure -------------------------------------------------------------------------

    def _start(self):
        return self.precondition_frequency if self.start_preconditioning_step is None else self.start_preconditioning_step

    def inverse_exponent(self, dimension, order):
        """The reference's ``_get_inverse_exponent``: the override, else ``1 / (2 max(order, 1))``."""
        override = (self.inverse_exponent_override or {}).get(order, {})
        if isinstance(override, dict):
            return override.get(dimension, 1 / (2 * max(order, 1)))
        return override

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._layouts, self._factors, self._filtered, self._second, self._momenta = [], [], [], [], []
        for variable in variables:
            dtype = scalar_dtype(variable.dtype)
            # A raw tf.Variable has a name (with ":0") but no path.
            prefix = getattr(variable, "path", variable.name.split(":")[0]).replace("/", "_")

            def slot(shape, name, initializer="zeros"):
                return self.add_variable(shape, initializer=initializer, dtype=dtype, name=f"{prefix}_{name}")

            shape = merged_shape(tuple(variable.shape), self.max_preconditioner_dim, self.target_parameter_dimensionality)
            sizes = block_sizes(shape, self.max_preconditioner_dim)
            self._layouts.append((shape, sizes))
            blocks = []
            for b, block_shape in enumerate(itertools.product(*sizes)):
                order = len(block_shape)
                blocks.append(
                    [
                        (
                            slot((size, size), f"block{b}_factor{i}"),
                            slot((size, size), f"block{b}_root{i}", initializer="identity"),
                            # The reference's root: 1 / exponent, as a float; then -1 / root.
                            -1.0 / (1 / self.inverse_exponent(i, order)),
                        )
                        if self.inverse_exponent(i, order) != 0.0 and size > 0
                        else None
                        for i, size in enumerate(block_shape)
                    ]
                )
            self._factors.append(blocks)
            self._filtered.append(slot(variable.shape, "filtered_grad") if self.beta_1 else None)
            self._second.append(
                slot(variable.shape, "grafting_second_moment") if self.grafting not in ("sgd", None) else None
            )
            self._momenta.append(slot(variable.shape, "momentum") if self.momentum else None)

    # -- the rule --------------------------------------------------------------------------

    def _inverse_root(self, factor, correction, exponent):
        """The reference's ``matrix_inverse_root`` (``EigenConfig``, perturbation before)."""
        size = factor.shape[0]
        matrix = ops.add(ops.divide(factor, correction), ops.multiply(ops.eye(size, dtype=factor.dtype), self.epsilon))
        values, vectors = ops.eigh(matrix)
        smallest = ops.min(values)
        shifted = ops.add(ops.subtract(values, smallest), self.epsilon)
        values = ops.where(ops.less(smallest, self.epsilon), shifted, values)
        return ops.matmul(ops.multiply(vectors, ops.power(values, exponent)[None, :]), ops.transpose(vectors))

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        (shape, sizes), blocks = self._layouts[index], self._factors[index]
        filtered, second, momentum = self._filtered[index], self._second[index], self._momenta[index]
        dtype = scalar_dtype(variable.dtype)
        hp = self.hyperparameter
        step = ops.cast(ops.add(self.iterations, 1), dtype)
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        grads = split_blocks(ops.reshape(gradient, shape), sizes)

        # The factors (the statistics of this step's gradient, before any filtering).
        weight = 1.0 if self.beta_2 == 1.0 else 1 - hp(self.beta_2)
        for grad, factors in zip(grads, blocks):
            order = len(grad.shape)
            for i, entry in enumerate(factors):
                if entry is None:
                    continue
                others = [j for j in range(order) if j != i]
                outer = ops.tensordot(grad, grad, axes=[others, others])
                factor = entry[0]
                decayed = factor if self.beta_2 == 1.0 else ops.multiply(factor, hp(self.beta_2))
                self.assign(factor, ops.add(decayed, ops.multiply(outer, weight)))
        if second is not None:
            square = ops.square(gradient)
            if self.grafting == "adagrad":
                self.assign_add(second, square)
            else:
                beta = hp(self.grafting_beta_2)
                self.assign(second, ops.add(ops.multiply(second, beta), ops.multiply(square, 1 - beta)))

        # The inverse roots, every precondition_frequency steps from start_preconditioning_step.
        start = self._start()
        due = ops.logical_or(
            ops.logical_and(
                ops.equal(ops.mod(ops.add(self.iterations, 1), self.precondition_frequency), 0),
                ops.greater(ops.add(self.iterations, 1), start),
            ),
            ops.equal(ops.add(self.iterations, 1), start),
        )
        entries = [entry for factors in blocks for entry in factors if entry is not None]
        if entries:
            if self.use_bias_correction and self.beta_2 < 1.0:
                correction = bias_correction(hp(self.beta_2), step)
            else:
                correction = ops.convert_to_tensor(1.0, dtype)

            def compute_roots():
                for factor, root, exponent in entries:
                    self.assign(root, self._inverse_root(factor, correction, exponent))

            conditional_update(due, compute_roots, [v for entry in entries for v in entry[:2]])

        # The filtered gradient.
        if filtered is not None:
            beta_1 = hp(self.beta_1)
            beta_3 = beta_1 if self.beta_3 is None else hp(self.beta_3)
            if beta_3 != beta_1:
                current = ops.add(filtered, ops.multiply(ops.subtract(gradient, filtered), 1 - beta_3))
            self.assign_add(filtered, ops.multiply(ops.subtract(gradient, filtered), 1 - beta_1))
            if beta_3 == beta_1:
                current = ops.convert_to_tensor(filtered)
            if self.use_bias_correction:
                power = ops.power(ops.convert_to_tensor(beta_1, dtype), ops.subtract(step, 1))
                current = ops.divide(current, ops.subtract(1, ops.multiply(power, beta_3)))
        else:
            current = gradient

        # The grafted method's direction, Shampoo's, and the choice between them.
        if second is not None:
            denominator = second
            if self.grafting == "adam":
                denominator = ops.divide(second, bias_correction(hp(self.grafting_beta_2), step))
            grafted = ops.divide(current, ops.add(ops.sqrt(denominator), self.grafting_epsilon))
        else:
            grafted = current
        grafted_blocks = split_blocks(ops.reshape(grafted, shape), sizes)
        directions = []
        for grad, graft, factors in zip(split_blocks(ops.reshape(current, shape), sizes), grafted_blocks, blocks):
            direction = grad
            for entry in factors:
                if entry is None:
                    direction = ops.transpose(direction, [*range(1, len(grad.shape)), 0])
                else:
                    direction = ops.tensordot(direction, entry[1], axes=[[0], [0]])
            if self.grafting is not None:
                scale = ops.divide(
                    ops.sqrt(ops.sum(ops.square(graft))),
                    ops.add(ops.sqrt(ops.sum(ops.square(direction))), GRAFTING_NORM_EPSILON),
                )
                direction = ops.where(ops.less(step, start), graft, ops.multiply(direction, scale))
            directions.append(direction)
        direction = ops.reshape(join_blocks(directions, sizes), variable.shape)

        # Decoupled weight decay, momentum, the step.
        if self.weight_decay and self._use_weight_decay(variable):
            direction = ops.add(direction, ops.multiply(ops.cast(variable, dtype), hp(self.weight_decay)))
        if momentum is not None:
            mu = hp(self.momentum)
            kept = 1 - hp(self.dampening)
            self.assign(momentum, ops.add(ops.multiply(momentum, mu), ops.multiply(direction, kept)))
            if self.nesterov:
                direction = ops.add(ops.multiply(direction, kept), ops.multiply(momentum, mu))
            else:
                direction = ops.convert_to_tensor(momentum)
        rate = ops.cast(learning_rate, dtype)
        self.assign_sub(variable, ops.cast(ops.multiply(direction, rate), variable.dtype))
