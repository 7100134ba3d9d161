"""The base class every tfoptim optimizer derives from.

It is a ``keras.optimizers.Optimizer``, so everything Keras does around an update rule
(``weight_decay``, clipping, ``use_ema``, ``gradient_accumulation_steps``,
``loss_scale_factor``, ``tf.distribute``, ``.keras`` saving) works unchanged. On top it carries
what each rule would otherwise repeat:

* **Validation and config.** ``get_config`` is built from the subclass's constructor signature,
  so it holds exactly the constructor arguments; every argument is checked at construction.
* **Weight decay, both kinds.** Keras's ``weight_decay`` is the decoupled kind
  (``theta <- theta - lr * wd * theta``, as in AdamW); ``coupled_weight_decay`` adds L2 to the
  gradient, ``g <- g + lambda * theta`` (the ``weight_decay`` of ``torch.optim.SGD/Adagrad/
  RMSprop/Adam``). Both use the weights the gradient was taken at, and run per variable inside
  the update (so the fast path fuses them too).
* **Hyperparameter precision** (``exact_hyperparameters``): Keras casts some Python floats
  through float32 even for float64 variables; tfoptim does the same by default, so float64
  runs match Keras's to the last bits, or keeps them exact (PyTorch, the papers).
* **Non-finite protection** (``skip_nonfinite``): when any gradient holds a NaN or Inf, the whole
  step is skipped (variables, slots and ``iterations`` untouched) and ``skipped_steps`` counts it.
  Without it, non-finite gradients flow into the state as in Keras.
* **The fast path** (``fast_path``): large variables fused by XLA, small ones updated together
  as flat buffers, or every variable by one of TensorFlow's fused training kernels where one
  computes the rule exactly; see :meth:`Optimizer._backend_update_step`.
* **Rules that reduce over all variables** (D-Adaptation, Prodigy): see
  :meth:`Optimizer.collect_statistics`.
"""

import dataclasses
import inspect
import os
import warnings

import keras
import numpy as np
from keras import ops

from tfoptim._validation import check_learning_rate, check_non_negative, check_positive

#: Variables with at least this many elements are updated by the fast path one by one. Below it,
#: the fixed cost per variable inside an XLA launch (~13 us on a 2-core CPU) outweighs the saved
#: passes: smaller ones of the same dtype are updated together as one flat buffer.
FAST_PATH_MIN_SIZE = 16384
#: The fused call costs ~40 us to launch on a 2-core CPU whatever it holds: it runs only when
#: the variables (and flat buffers) sent to it hold at least this many elements in all (1 MiB
#: of float32). Below, Keras's kernels are faster (measured, ``tfoptim bench speed``: a digits
#: MLP's six variables, 51k parameters, took 1.2-1.7x Keras's time through the fused call).
FUSED_MIN_TOTAL_SIZE = 2**18

_FAST_PATH_ENV = "TFOPTIM_FAST_PATH"


def fast_path_enabled():
    """False when the environment variable ``TFOPTIM_FAST_PATH`` is ``0``/``false``/``off``."""
    return os.environ.get(_FAST_PATH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _cores():
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _inside_xla():
    """True while tracing a step that XLA compiles whole."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def resource(variable):
    """The resource handle of a Keras or TensorFlow variable, as ``tf.raw_ops.ResourceApply*``
    take it (under a strategy's update, the local copy's)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def _is_sparse(gradient):
    return hasattr(gradient, "indices") and hasattr(gradient, "values")


def _dense(gradient):
    """``gradient`` as a dense tensor (Keras's ``convert_to_tensor`` passes IndexedSlices on)."""
    if not _is_sparse(gradient):
        return gradient
    import tensorflow as tf

    return tf.convert_to_tensor(gradient)


def _flat(tensor):
    """``tensor`` as a vector, without an op where it is one already."""
    import tensorflow as tf

    return tensor if tensor.shape.rank == 1 else tf.reshape(tensor, [-1])


def _flat_slices(pieces, size, dtype):
    """``(gradient, offset, shape)`` pieces of a flat buffer of ``size`` elements as one sparse
    gradient over its elements: a sparse piece's rows expand to their elements, a dense piece
    sends all of its own."""
    import tensorflow as tf

    indices, values = [], []
    for gradient, offset, shape in pieces:
        if _is_sparse(gradient):
            row = int(np.prod(shape[1:]))
            rows = tf.cast(gradient.indices, tf.int64)[:, None] * row + tf.range(row, dtype=tf.int64)[None, :]
            indices.append(offset + tf.reshape(rows, [-1]))
            values.append(tf.reshape(tf.cast(gradient.values, dtype), [-1]))
        else:
            indices.append(tf.range(offset, offset + int(np.prod(shape)), dtype=tf.int64))
            values.append(tf.reshape(tf.cast(gradient, dtype), [-1]))
    return tf.IndexedSlices(tf.concat(values, 0), tf.concat(indices, 0), tf.constant([size], tf.int64))


def summed_duplicates(gradient):
    """A sparse gradient with each row once, its duplicates' values added up.

    An Embedding looked up twice in a batch sends the same row twice. Rules that square the
    gradient (Adagrad, RMSprop, Adam, ...) must see the row's total ``(g1 + g2)**2``, as the
    dense gradient gives, not ``g1**2 + g2**2``: Keras's own optimizers get this wrong."""
    if not _is_sparse(gradient):
        return gradient
    import tensorflow as tf

    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


@dataclasses.dataclass
class _Group:
    """Small variables of one dtype (and weight-decay choice) whose slots are flat buffers.

    ``proxy`` is a scratch variable the members are copied into before each step; the rule
    updates it like any variable, and its pieces are copied back after."""

    members: list
    keys: list
    decays: bool
    index: int = 0
    proxy: object = None
    buffers: list = dataclasses.field(default_factory=list)

    @property
    def sizes(self):
        return [int(np.prod(m.shape)) for m in self.members]

    def offset(self, position):
        return sum(self.sizes[:position])


def all_finite(grads):
    """A scalar boolean tensor: every gradient entry is finite."""
    checks = [
        ops.all(ops.isfinite(g.values if _is_sparse(g) else g)) for g in grads if g is not None
    ]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


def conditional_update(condition, update, variables, otherwise=None):
    """Runs ``update()`` when the scalar boolean ``condition`` holds, else ``otherwise()`` (when
    given). The branches change variables only by assigning them, and ``variables`` lists every
    variable they read or assign.

    On TensorFlow this is a ``cond``: the branch not taken reads and writes nothing. A JAX
    branch must be a pure function (an assignment inside it would leak a tracer, or take effect
    whichever branch runs), so there each branch runs in its own ``keras.StatelessScope`` over
    ``variables``, the ``cond`` returns their new values, and these are assigned after it.
    """
    if keras.backend.backend() == "tensorflow":
        ops.cond(condition, update, otherwise or (lambda: None))
        return
    current = [ops.convert_to_tensor(v) for v in variables]

    def values_after(branch):
        def run():
            with keras.StatelessScope(state_mapping=list(zip(variables, current))) as scope:
                branch()
            return [scope.get_current_value(v) for v in variables]

        return run

    new = ops.cond(condition, values_after(update), values_after(otherwise) if otherwise else lambda: current)
    for variable, value in zip(variables, new):
        variable.assign(value)


class Optimizer(keras.optimizers.Optimizer):
    """Base class of tfoptim's optimizers.

    Subclasses read like Keras's own: ``__init__`` stores (and checks) their arguments under
    the same names, ``build`` creates the slots, ``update_step`` states the rule with
    ``keras.ops`` and the ``assign*`` helpers. Nothing else is needed: config, validation of the
    common arguments, coupled weight decay, non-finite skipping and the fast path come from here.

    Args:
        learning_rate: a float >= 0, a ``LearningRateSchedule``, or a callable.
        coupled_weight_decay: L2 coefficient added to the gradient before the rule
            (PyTorch's ``weight_decay``). Keras's ``weight_decay`` stays the decoupled kind.
        skip_nonfinite: skip (and count in ``skipped_steps``) any step whose gradients contain
            NaN or Inf, instead of letting them reach the optimizer state.
        exact_hyperparameters: where Keras casts a Python-float hyperparameter through float32
            (the beta in ``beta**t``, SGD's momentum, the weight decay, slot start values such
            as Adagrad's 0.1), False rounds it the same way and True keeps it at the variable's
            precision. Only float64 variables see a difference (Adam: ~5e-6 relative over 200
            steps). The PyTorch ports use True.
        fast_path: update large variables in XLA-compiled calls and small ones together as
            flat buffers, or every variable by a TensorFlow training kernel that computes the
            rule exactly (on by default; the environment variable
            ``TFOPTIM_FAST_PATH=0`` turns it off everywhere). Decided when the optimizer is
            built; the saved state has the same layout either way.
        **kwargs: the common Keras optimizer arguments (``weight_decay``, ``clipnorm``,
            ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency``, ``loss_scale_factor``, ``gradient_accumulation_steps``,
            ``name``). Unknown keywords raise ``ValueError``.
    """

    #: False for a rule that XLA compiles badly: the fast path leaves all its variables to
    #: Keras's per-variable loop (SOAP: XLA's CPU eigendecomposition is ~20x slower than
    #: LAPACK's and less accurate).
    fast_path_compatible = True
    #: True for a rule that applies Keras's decoupled ``weight_decay`` itself, where its
    #: reference implementation does (SOAP: after the step); the base then leaves it out.
    weight_decay_in_rule = False
    #: True for a rule that treats every element alike, given per-step scalars: applied to the
    #: concatenation of several variables it gives each the same numbers, so the fast path may
    #: keep the slots of small variables in flat buffers and update them together. False for
    #: per-variable norms (LARS, NovoGrad) and matrix structure (SOAP).
    elementwise = True
    #: True for a rule that steps only the rows a sparse gradient holds (LazyAdam). In a group
    #: of small variables, a member's sparse gradient then stays sparse: its rows become the
    #: flat buffer's elements, and when one member's gradient is sparse, every member's is sent
    #: as elements (a dense one as all of its elements: the same numbers as its dense step).
    #: Otherwise a grouped variable's sparse gradient is made dense, which an element-wise rule
    #: without lazy rows steps to the same numbers.
    lazy_sparse = False
    #: True for a rule whose ``update_step`` never reads the variable's value and writes it
    #: once, with ``assign_add`` or ``assign_sub`` (SGD, Adagrad, RMSprop, the Adam family,
    #: Lion, COCOB): outside XLA, the fast path then steps a group of small variables from zero
    #: and adds the resulting increment to each member, which saves reading every member into
    #: the group. The numbers are the same: ``theta + (0 - u)`` is ``theta - u`` exactly.
    increment_only = False

    def __init__(
        self,
        learning_rate,
        coupled_weight_decay=0.0,
        skip_nonfinite=False,
        exact_hyperparameters=False,
        fast_path=True,
        **kwargs,
    ):
        if kwargs.get("weight_decay") is not None:
            check_non_negative("weight_decay", kwargs["weight_decay"])
        for name in ("clipnorm", "clipvalue", "global_clipnorm"):
            if kwargs.get(name) is not None:
                check_positive(name, kwargs[name])
        super().__init__(learning_rate=check_learning_rate(learning_rate), **kwargs)
        self.coupled_weight_decay = check_non_negative("coupled_weight_decay", coupled_weight_decay)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.exact_hyperparameters = bool(exact_hyperparameters)
        self.fast_path = bool(fast_path)
        # Compiled group updates, keyed by the variables they close over. Set through object
        # so Keras's trackable machinery does not try to save the tf.functions.
        object.__setattr__(self, "_fused_updates", {})

    def build(self, variables):
        super().build(variables)
        if self.skip_nonfinite:
            self._skipped_steps = self.add_variable(
                shape=(),
                dtype="int",
                initializer="zeros",
                aggregation="only_first_replica",
                name="skipped_steps",
            )
        object.__setattr__(self, "_training_op", self.training_op() if self._fast_path_allowed() else None)
        object.__setattr__(self, "_groups", self._small_variable_groups(variables))
        object.__setattr__(self, "_grouped", {})
        object.__setattr__(self, "_layout_blocks", {})

    # -- small variables as flat buffers ---------------------------------------------------

    def _fast_path_allowed(self):
        """Whether this optimizer may use the fast path at all (decided at build)."""
        return (
            self.fast_path
            and self.fast_path_compatible
            and fast_path_enabled()
            and keras.backend.backend() == "tensorflow"
        )

    def _small_variable_groups(self, variables):
        """The groups of small variables whose slots will be flat buffers (see
        :meth:`add_optimizer_variables`): decided at build, so every step and every saved
        file of this optimizer sees one layout. None for a rule stepped by a training op,
        which costs less per variable than gathering it into a group."""
        if not (
            self._fast_path_allowed()
            and self.elementwise
            and not self._reduces_over_variables
            and self._training_op is None
        ):
            return []
        import tensorflow as tf

        # Replicas of a distributed step update each variable in its own device context.
        if tf.distribute.has_strategy():
            return []
        by_kind = {}
        for variable in variables:
            if int(np.prod(variable.shape)) >= FAST_PATH_MIN_SIZE:
                continue
            if self._overwrite_variable_with_gradient(variable):
                continue
            kind = (keras.backend.standardize_dtype(variable.dtype), self._use_weight_decay(variable))
            by_kind.setdefault(kind, []).append(variable)
        return [
            _Group(members, [self._var_key(v) for v in members], decays)
            for (_, decays), members in by_kind.items()
            if len(members) > 1
        ]

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """Keras's slots, one per variable and name, except for the small variables the fast
        path groups: theirs are one flat buffer per group and name, appended to the returned
        lists after the per-variable entries (which are None for grouped variables), at the
        index :meth:`_get_variable_index` gives the group's proxy.

        Saved files do not see the difference: :meth:`save_own_variables` writes Keras's
        per-variable layout on both paths."""
        # Keras's build creates use_ema's averages through here before the groups exist.
        if not getattr(self, "_groups", None):
            return super().add_optimizer_variables(trainable_variables, name, initializer)
        names = [name] if isinstance(name, str) else list(name)
        initializers = initializer if isinstance(initializer, (list, tuple)) else [initializer] * len(names)
        if len(names) != len(initializers):
            raise ValueError(
                f"The number of names must match the number of initializers. Received "
                f"name={name!r}, initializer={initializer!r}"
            )
        if [self._var_key(v) for v in trainable_variables] != [
            self._var_key(v) for v in self._trainable_variables
        ]:
            raise ValueError(
                "With small variables grouped, `add_optimizer_variables` takes the list the "
                "optimizer was built with."
            )
        if not self._grouped:
            self._create_group_proxies()
        start = len(self._variables)
        slots = tuple([] for _ in names)
        layout = []
        for variable in trainable_variables:
            place = self._grouped.get(self._var_key(variable))
            for i, (slot_name, slot_initializer) in enumerate(zip(names, initializers)):
                if self._overwrite_variable_with_gradient(variable):
                    slots[i].append(None)
                elif place is not None:
                    slots[i].append(None)
                    layout.append((i, *place))
                else:
                    slot = self.add_variable_from_reference(
                        variable, name=slot_name, initializer=slot_initializer
                    )
                    slots[i].append(slot)
                    layout.append(slot)
        for i, (slot_name, slot_initializer) in enumerate(zip(names, initializers)):
            for group in self._groups:
                buffer = self.add_variable(
                    shape=(sum(group.sizes),),
                    dtype=group.proxy.dtype,
                    initializer=slot_initializer,
                    name=f"{slot_name}_group_{group.index - len(self._trainable_variables)}",
                )
                slots[i].append(buffer)
                group.buffers.append(buffer)
        # Keras's order, grouped slots as (buffer, offset, shape) pieces.
        self._layout_blocks[start] = (
            len(self._variables),
            [
                entry if not isinstance(entry, tuple)
                else (slots[entry[0]][entry[1].index], entry[1].offset(entry[2]), entry[1].members[entry[2]].shape)
                for entry in layout
            ],
        )
        return slots[0] if isinstance(name, str) else slots

    def _create_group_proxies(self):
        count = len(self._trainable_variables)
        for number, group in enumerate(self._groups):
            group.index = count + number
            group.proxy = keras.Variable(
                initializer="zeros",
                shape=(sum(group.sizes),),
                dtype=group.members[0].dtype,
                trainable=False,
                name=f"group_{number}",
            )
            self._trainable_variables_indices[self._var_key(group.proxy)] = group.index
            for position, key in enumerate(group.keys):
                self._grouped[key] = (group, position)
        object.__setattr__(
            self, "_proxy_groups", {self._var_key(g.proxy): g for g in self._groups}
        )

    def _use_weight_decay(self, variable):
        group = getattr(self, "_proxy_groups", {}).get(self._var_key(variable))
        if group is not None:
            return group.decays
        return super()._use_weight_decay(variable)

    def slot_value(self, slots, variable):
        """``variable``'s entry of ``slots`` (a list from :meth:`add_optimizer_variables`) as a
        tensor of ``variable``'s shape, wherever the fast path keeps it."""
        place = getattr(self, "_grouped", {}).get(self._var_key(variable))
        if place is None:
            return ops.convert_to_tensor(slots[self._get_variable_index(variable)])
        group, position = place
        start = group.offset(position)
        flat = ops.convert_to_tensor(slots[group.index])
        return ops.reshape(flat[start : start + group.sizes[position]], variable.shape)

    def _gather_groups(self, grads, variables):
        """Replaces the grouped variables' gradients by one flat gradient per group, stepped on
        the group's proxy (loaded with the members' current values); returns the new lists
        and the function that copies the results back after the step."""
        if not self._grouped:
            return grads, variables, lambda: None
        import tensorflow as tf

        given = {self._var_key(v): g for g, v in zip(grads, variables)}
        pairs = [(g, v) for g, v in zip(grads, variables) if self._var_key(v) not in self._grouped]
        stepped = []
        for group in self._groups:
            present = [key in given for key in group.keys]
            if not any(present):
                continue
            dtype = group.proxy.dtype
            if self.lazy_sparse and any(_is_sparse(given[k]) for k in group.keys if k in given):
                pieces = [
                    (given[key], group.offset(position), member.shape)
                    for position, (key, member) in enumerate(zip(group.keys, group.members))
                    if key in given
                ]
                flat_gradient = _flat_slices(pieces, sum(group.sizes), dtype)
            else:
                flat_gradient = tf.concat(
                    [
                        _flat(tf.cast(_dense(given[key]), dtype)) if key in given
                        else tf.zeros([size], dtype)
                        for key, size in zip(group.keys, group.sizes)
                    ],
                    0,
                )
            increment = self._steps_by_increment(group)
            if increment:
                group.proxy.value.assign(tf.zeros_like(group.proxy.value))
            else:
                group.proxy.value.assign(tf.concat([_flat(m.value) for m in group.members], 0))
            # A variable without a gradient is not stepped (Keras leaves it and its slots as
            # they are): its pieces of the slots are put back after the step.
            kept = []
            for position in (p for p, here in enumerate(present) if not here):
                start, size = group.offset(position), group.sizes[position]
                kept += [(buffer, start, tf.identity(buffer.value[start : start + size])) for buffer in group.buffers]
            pairs.append((flat_gradient, group.proxy))
            stepped.append((group, present, kept, increment))

        def scatter():
            for group, present, kept, increment in stepped:
                for buffer, start, value in kept:
                    buffer.value[start : start + value.shape[0]].assign(value)
                pieces = tf.split(group.proxy.value, group.sizes)
                for member, piece, here in zip(group.members, pieces, present):
                    if here:
                        piece = piece if len(member.shape) == 1 else tf.reshape(piece, member.shape)
                        if increment:
                            member.value.assign_add(piece)
                        else:
                            member.value.assign(piece)

        return [g for g, _ in pairs], [v for _, v in pairs], scatter

    def _steps_by_increment(self, group):
        """Whether ``group`` is stepped from zero (see :attr:`increment_only`): not when weight
        decay, coupled or decoupled, reads the members, and not inside a step XLA compiles
        whole, where it measured slower (1.3-1.5x on 500 x 1000 floats: XLA fuses the copy
        into the group anyway)."""
        decoupled = self.weight_decay and not self.weight_decay_in_rule and group.decays
        return (
            self.increment_only and not self.coupled_weight_decay and not decoupled and not _inside_xla()
        )

    # -- saving: Keras's per-variable layout on every path ---------------------------------

    def _saved_layout(self):
        """The optimizer variables in the order the per-variable path creates them; a grouped
        slot is a ``(buffer, offset, shape)`` piece."""
        layout, variables, i = [], self.variables, 0
        while i < len(variables):
            if i in self._layout_blocks:
                i, block = self._layout_blocks[i]
                layout.extend(block)
            else:
                layout.append(variables[i])
                i += 1
        return layout

    def save_own_variables(self, store):
        if not getattr(self, "_layout_blocks", None):
            return super().save_own_variables(store)
        flat = {}
        for i, entry in enumerate(self._saved_layout()):
            if isinstance(entry, tuple):
                buffer, start, shape = entry
                if id(buffer) not in flat:
                    flat[id(buffer)] = keras.ops.convert_to_numpy(buffer)
                store[str(i)] = flat[id(buffer)][start : start + int(np.prod(shape))].reshape(shape)
            else:
                store[str(i)] = keras.ops.convert_to_numpy(entry)

    def load_own_variables(self, store):
        if not getattr(self, "_layout_blocks", None):
            return super().load_own_variables(store)
        layout = self._saved_layout()
        if len(store.keys()) != len(layout):
            warnings.warn(
                f"Skipping variable loading for optimizer '{self.name}', because it has "
                f"{len(layout)} variables whereas the saved optimizer has {len(store.keys())} "
                "variables.",
                stacklevel=2,
            )
            return
        flat = {}
        for i, entry in enumerate(layout):
            if isinstance(entry, tuple):
                buffer, start, shape = entry
                values = flat.setdefault(id(buffer), (buffer, keras.ops.convert_to_numpy(buffer)))[1]
                values[start : start + int(np.prod(shape))] = np.reshape(store[str(i)], -1)
            else:
                entry.assign(store[str(i)])
        for buffer, values in flat.values():
            buffer.assign(values)

    @property
    def skipped_steps(self):
        """Steps skipped for non-finite gradients (requires ``skip_nonfinite=True``)."""
        if not self.skip_nonfinite:
            raise AttributeError("`skipped_steps` is only tracked with `skip_nonfinite=True`.")
        return self._skipped_steps

    # -- non-finite protection -------------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        if not self.skip_nonfinite or len(grads) == 0:
            return super().apply(grads, trainable_variables)
        if trainable_variables is not None and not self.built:
            # Build outside the cond below: variables cannot be created inside a branch.
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        if keras.backend.backend() == "tensorflow":
            return self._tf_apply_if_finite(grads, trainable_variables)
        finite = all_finite(grads)
        trainable_variables = list(trainable_variables or self._trainable_variables)
        conditional_update(
            finite,
            lambda: super(Optimizer, self).apply(grads, trainable_variables),
            [*self.variables, *trainable_variables],
        )
        self._skipped_steps.assign_add(ops.cast(ops.logical_not(finite), self._skipped_steps.dtype))

    def _tf_apply_if_finite(self, grads, trainable_variables):
        import tensorflow as tf

        apply = super().apply

        def skip():
            self._skipped_steps.assign_add(1)

        context = tf.distribute.get_replica_context()
        if context is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
            ops.cond(all_finite(grads), lambda: apply(grads, trainable_variables), skip)
            return
        # Replicas must agree: one replica's NaN poisons the all-reduced gradient of all.
        bad = context.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(all_finite(grads)), tf.float32)
        )

        def cross_replica(distribution, bad, grads, trainable_variables):
            finite = tf.equal(distribution.experimental_local_results(bad)[0], 0.0)

            def apply_on_replicas():
                distribution.extended.call_for_each_replica(
                    apply, args=(grads, trainable_variables)
                )

            # The cond must live in cross-replica context: its branch calls merge_call.
            tf.cond(finite, apply_on_replicas, skip)

        context.merge_call(cross_replica, args=(bad, grads, trainable_variables))

    # -- the update ------------------------------------------------------------------------

    def hyperparameter(self, value):
        """``value`` as the rule uses it: rounded through float32 like Keras's casts, unless
        ``exact_hyperparameters``."""
        return float(value) if self.exact_hyperparameters else float(np.float32(value))

    def training_op(self):
        """One of TensorFlow's fused training kernels (``tf.raw_ops.ResourceApply*``) that
        computes this rule's step, in this configuration, *exactly*: the same operations on the
        same operands in the same order as :meth:`update_step`, so the same numbers to the last
        bit. Returns a function ``(gradient, variable, learning_rate)`` that applies it (both
        tensors already in the variable's dtype), or None: the default, and the answer for any
        configuration no kernel matches.

        Without XLA, one such kernel per variable replaces the several element-wise kernels of
        ``update_step`` (SGD with momentum: one instead of five) and costs less than gathering
        the variable into a flat buffer, so the fast path steps every variable of a rule that
        has one with it (dense float32/float64 gradients; sparse ones take ``update_step``),
        groups none, and makes no fused call (measured faster than both, ``tfoptim bench
        speed``). Inside a step XLA compiles whole, ``update_step`` runs.
        """
        return None

    def update_step(self, gradient, variable, learning_rate):
        """The rule's step on one variable: a rule overrides this, or :meth:`update_phases`
        (then this runs its phases in order)."""
        if type(self).update_phases is Optimizer.update_phases:
            raise NotImplementedError(
                f"{type(self).__name__} defines neither update_step nor update_phases."
            )
        for phase in self.update_phases():
            phase(gradient, variable, learning_rate)

    def update_phases(self):
        """``update_step`` as a sequence of functions ``(gradient, variable, learning_rate)``
        that, run in order, do the same operations; the fast path compiles each as its own XLA
        call. Default: ``(self.update_step,)``, one call. A rule that overrides this needs no
        ``update_step``.

        Split a rule whose step reads a slot's *old* value in one place while writing its new
        value in another (Lion: the step's direction and the momentum's update both read the
        old momentum). XLA does not update such a slot in place: it writes a freshly allocated
        buffer every step, and a fresh buffer of tens of megabytes is page-faulted memory
        (measured on one 10M-float Lion variable, 2 cores: 49-58 ms per step in one call,
        10.6-12.6 ms in two in-place calls, where the second call reads the slot again). A
        phase sees the variables as the earlier phases left them, so no phase may need an old
        value an earlier one overwrote: the old momentum's readers come first. Not used with
        ``coupled_weight_decay`` (the gradient then depends on the weights the first phase
        changes) nor by rules that reduce over all variables.
        """
        return (self.update_step,)

    # -- rules that reduce over all variables ----------------------------------------------

    def collect_statistics(self, gradient, variable, learning_rate):
        """First pass of a rule whose step needs sums over every variable (D-Adaptation,
        Prodigy: the step size comes from inner products and norms over all parameters).

        A rule that overrides this and :meth:`apply_statistics` is stepped in two passes over
        all variables, where Keras would call ``update_step`` once per variable:

        1. ``collect_statistics(gradient, variable, learning_rate)`` for every variable, before
           any is updated. It may update the variable's slots and returns a tuple of scalar
           tensors; the tuples are added up over the variables, in order.
        2. ``apply_statistics(totals, learning_rate)`` once, with the sums. It updates the
           rule's global state (scalar optimizer variables created in ``build``, so saving
           and loading resume it) and returns the rate of this step: the decoupled
           ``weight_decay`` scales with it (``theta <- theta - rate * wd * theta``) and
           ``update_step`` receives it.
        3. ``update_step(gradient, variable, rate)`` for every variable.

        ``coupled_weight_decay`` enters the gradient once, before the first pass; sparse
        gradients are made dense. The passes run wherever the step runs: once per device on
        the all-reduced gradients under ``tf.distribute`` (each replica computes the same
        sums, no extra communication), and all in one XLA call on the fast path.
        """
        return None

    def apply_statistics(self, totals, learning_rate):
        """Second pass of a rule that reduces over all variables: see
        :meth:`collect_statistics`."""
        raise NotImplementedError(f"{type(self).__name__} collects statistics, never applies them.")

    @property
    def _reduces_over_variables(self):
        return type(self).collect_statistics is not Optimizer.collect_statistics

    def step_learning_rate(self, learning_rate):
        """The rate this step applies, given the scheduled ``learning_rate`` (a scalar tensor).

        Identity here. A rule whose reference scales the rate itself (RAdam's and AdaBelief's
        TFA warm-up) overrides it: the decoupled ``weight_decay`` and every ``update_step``
        then see the scaled rate."""
        return learning_rate

    def _apply_weight_decay(self, variables):
        # Decoupled decay runs per variable in _decay_and_update, after the coupled term has read
        # the weights the gradient was taken at.
        pass

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Applies the rule to every variable; the fast path lives here.

        Keras runs ``update_step`` once per variable, about a dozen separate element-wise
        kernels each, every one a full pass over memory when the step is not XLA-compiled
        (Keras's default on CPU and under ``tf.distribute``), and each with a fixed cost that
        dominates on small variables. The fast path runs the same ``update_step`` code:

        * **Large variables** (at least ``FAST_PATH_MIN_SIZE`` elements) inside a
          ``tf.function(jit_compile=True)``, so XLA fuses each rule into one pass; the call is
          made when it would hold ``FUSED_MIN_TOTAL_SIZE`` elements in all, and split into one
          call per core that runs side by side when there is enough for each
          (:meth:`_fused_parts`), and into one call per phase for a rule that declares
          :meth:`update_phases`.
        * **Small variables** of the same dtype (and weight-decay choice), for
          :attr:`elementwise` rules, as one flat buffer: their slots are flat buffers made at
          build (:meth:`add_optimizer_variables`), their gradients are concatenated, the rule
          steps a scratch copy of their concatenated values (a variable like any other: a
          large one joins the fused call), and the pieces are written back. Per small variable
          this leaves one read and one write; for an :attr:`increment_only` rule without
          weight decay, one in-place add (the rule steps the copy from zero).
        * **Every variable**, for a rule with a :meth:`training_op` (a TensorFlow kernel that
          computes its step exactly), by that one kernel, without grouping or fused call.

        The numbers are the same up to floating-point reassociation, and the saved state is
        Keras's per-variable layout on both paths (:meth:`save_own_variables`), so models move
        freely between them. It steps aside for sparse gradients of large variables (small
        ones are made dense, the same numbers for every elementwise rule, or stay sparse for a
        :attr:`lazy_sparse` one), under any
        ``tf.distribute`` strategy (decided at build), on non-TensorFlow backends, and when
        turned off; inside a step that is already XLA-compiled it only groups. A rule that
        reduces over all variables (:meth:`collect_statistics`) is not grouped; its call takes
        every variable, small ones included, as soon as one is large enough.
        """
        learning_rate = self.step_learning_rate(learning_rate)
        if self._reduces_over_variables:
            # The step touches every element anyway (the slots decay everywhere), and dense
            # gradients keep the fused call's signature fixed.
            grads = [_dense(g) for g in grads]
        if keras.backend.backend() != "tensorflow":
            self._update_variables(grads, trainable_variables, learning_rate)
            return
        import tensorflow as tf

        if not tf.distribute.has_strategy():
            # Read once per step, not once per variable (each read is a kernel launch).
            learning_rate = tf.convert_to_tensor(learning_rate)
        grads, trainable_variables, scatter = self._gather_groups(grads, trainable_variables)
        if not self._fast_path_applies() or self._training_op is not None:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            scatter()
            return
        fused, rest, fused_size = [], [], 0
        for g, v in zip(grads, trainable_variables):
            size = (v.shape.num_elements() if hasattr(v.shape, "num_elements") else v.size) or 0
            if size >= FAST_PATH_MIN_SIZE and not _is_sparse(g):
                fused.append((g, v))
                fused_size += size
            else:
                rest.append((g, v))
        if fused_size < FUSED_MIN_TOTAL_SIZE:
            fused, rest = [], fused + rest
        if self._reduces_over_variables and fused:
            # The statistics need every variable before any is updated: one call does all.
            fused, rest = fused + rest, []
        if rest:
            super()._backend_update_step(
                [g for g, _ in rest], [v for _, v in rest], learning_rate
            )
        learning_rate = tf.convert_to_tensor(learning_rate)
        for part in self._fused_parts(fused, fused_size):
            for call in self._fused_update([v for _, v in part]):
                call([g for g, _ in part], learning_rate)
        scatter()

    def _fused_parts(self, fused, total_size):
        """The fused call's ``(gradient, variable)`` pairs as separate calls, one per core, each
        of at least ``FUSED_MIN_TOTAL_SIZE`` elements, balanced by size. Calls over disjoint
        variables run side by side on TensorFlow's executor threads (measured, 2 cores: Adam on
        100 x 256² took 14-20% less time in two calls than in one, four runs; the same on
        2 x 10M). A rule that reduces over all variables needs them in one call."""
        if not fused:
            return []
        count = min(len(fused), _cores(), total_size // FUSED_MIN_TOTAL_SIZE)
        if self._reduces_over_variables or count <= 1:
            return [fused]
        parts, loads = [[] for _ in range(count)], [0] * count
        for pair in sorted(fused, key=lambda pair: -int(np.prod(pair[1].shape))):
            lightest = loads.index(min(loads))
            parts[lightest].append(pair)
            loads[lightest] += int(np.prod(pair[1].shape))
        return parts

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        if self._reduces_over_variables:
            # The whole step once per device, on that device's copy of the all-reduced
            # gradients: inside the update context every variable (model, slots, global
            # state) reads and writes its local copy, so the replicas stay identical.
            grads, variables = [list(x) for x in zip(*grads_and_vars)]
            distribution.extended.update(
                variables[0],
                lambda _, grads: self._update_variables(grads, variables, learning_rate),
                args=(grads,),
                group=False,
            )
            return
        # Keras's TF loop, over the all-reduced gradients, calling _update_variable.
        for gradient, variable in grads_and_vars:
            distribution.extended.update(
                variable, self._update_variable, args=(gradient, learning_rate), group=False
            )

    def _update_variables(self, grads, variables, learning_rate):
        """One step over ``variables`` in the current device context: per variable, or in
        the two passes of :meth:`collect_statistics`."""
        if not self._reduces_over_variables:
            for gradient, variable in zip(grads, variables):
                self._update_variable(variable, gradient, learning_rate)
            return
        grads = [self._add_coupled_weight_decay(v, g) for g, v in zip(grads, variables)]
        totals = None
        for gradient, variable in zip(grads, variables):
            terms = self.collect_statistics(gradient, variable, learning_rate)
            totals = terms if totals is None else tuple(map(ops.add, totals, terms))
        rate = self.apply_statistics(totals, learning_rate)
        for gradient, variable in zip(grads, variables):
            self._decay_and_update(variable, gradient, rate)

    def _update_variable(self, variable, gradient, learning_rate):
        """One variable's step, after any all-reduce (so replicas add the L2 term once):
        coupled L2 from the current weights, decoupled decay, then the rule."""
        gradient = self._add_coupled_weight_decay(variable, gradient)
        self._decay_and_update(variable, gradient, learning_rate)

    def _add_coupled_weight_decay(self, variable, gradient):
        if not self.coupled_weight_decay:
            return gradient
        gradient = _dense(gradient)
        return ops.add(
            gradient, ops.multiply(ops.cast(variable, gradient.dtype), self.coupled_weight_decay)
        )

    def _decay_and_update(self, variable, gradient, learning_rate):
        self._apply_decoupled_weight_decay(variable, learning_rate)
        if self._steps_by_training_op(variable, gradient):
            dtype = variable.dtype
            self._training_op(ops.cast(gradient, dtype), variable, ops.cast(learning_rate, dtype))
        else:
            self.update_step(summed_duplicates(gradient), variable, learning_rate)

    def _apply_decoupled_weight_decay(self, variable, learning_rate):
        if self.weight_decay and not self.weight_decay_in_rule and self._use_weight_decay(variable):
            rate = ops.cast(learning_rate, variable.dtype)
            decay = self.hyperparameter(self.weight_decay)
            self.assign_sub(variable, ops.multiply(ops.multiply(variable, decay), rate))

    def _steps_by_training_op(self, variable, gradient):
        return (
            getattr(self, "_training_op", None) is not None
            and not _is_sparse(gradient)
            and keras.backend.standardize_dtype(variable.dtype) in ("float32", "float64")
            and not _inside_xla()
        )

    def _fast_path_applies(self):
        if not (self.fast_path and self.fast_path_compatible and fast_path_enabled()):
            return False
        import tensorflow as tf

        # Inside a step that XLA already compiles whole, a nested compiled call only adds a
        # boundary to the fusion XLA would do anyway.
        return not _inside_xla() and not tf.distribute.has_strategy()

    def _fused_update(self, variables):
        """The fused calls over ``variables``, in order: one per :meth:`update_phases` entry
        (one for a rule that reduces over all variables or adds ``coupled_weight_decay``)."""
        import tensorflow as tf

        variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]
        key = tuple(id(v) for v in variables)
        if key in self._fused_updates:
            return self._fused_updates[key]
        phases = self.update_phases()
        if len(phases) == 1 or self.coupled_weight_decay or self._reduces_over_variables:

            def whole_step(grads, learning_rate):
                self._update_variables(grads, variables, learning_rate)

            steps = (whole_step,)
        else:

            def first_phase(grads, learning_rate):
                for gradient, variable in zip(grads, variables):
                    self._apply_decoupled_weight_decay(variable, learning_rate)
                    phases[0](gradient, variable, learning_rate)

            def later_phase(phase):
                def step(grads, learning_rate):
                    for gradient, variable in zip(grads, variables):
                        phase(gradient, variable, learning_rate)

                return step

            steps = (first_phase, *(later_phase(phase) for phase in phases[1:]))
        compiled = tuple(tf.function(step, jit_compile=True, autograph=False) for step in steps)
        self._fused_updates[key] = compiled
        return compiled

    # -- config ----------------------------------------------------------------------------

    @classmethod
    def _own_arguments(cls):
        """Constructor arguments declared by the subclasses, in declaration order."""
        names = []
        for klass in reversed(cls.__mro__[: cls.__mro__.index(Optimizer)]):
            if "__init__" not in vars(klass):
                continue
            for parameter in inspect.signature(klass.__init__).parameters.values():
                if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                    continue
                if parameter.name not in ("self", "learning_rate", "name", *names):
                    names.append(parameter.name)
        return names

    def get_config(self):
        config = super().get_config()
        config.update(
            coupled_weight_decay=self.coupled_weight_decay,
            skip_nonfinite=self.skip_nonfinite,
            exact_hyperparameters=self.exact_hyperparameters,
            fast_path=self.fast_path,
        )
        for name in self._own_arguments():
            config[name] = getattr(self, name)
        return config
