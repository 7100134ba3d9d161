"""``fast_path="grouped"``: the slots of small variables kept as flat buffers, one per dtype,
weight-decay choice and slot name, and stepped together.

Per step the rule runs once on a scratch variable holding the members' concatenated values
(a variable like any other: when large enough it joins the fused call), and the pieces are
written back: per small variable one read and one write, or, for an ``increment_only`` rule
without weight decay, one in-place add (the rule steps the scratch copy from zero).

Only the in-memory layout changes. What is persisted is Keras's per-variable layout:
``.keras`` and ``.weights.h5`` files through :meth:`SmallVariableGroups.save_own_variables`,
``tf.train.Checkpoint`` through :meth:`SmallVariableGroups._trackable_children`, whose
``_variables`` list shows each grouped slot as its piece of the buffer under its Keras index.
A checkpoint therefore restores across ``fast_path`` settings, strategies and Keras's own
optimizers, before or after the optimizer is built. In memory, ``optimizer.variables`` and
``get_weights`` show the buffers: use :meth:`SmallVariableGroups.slot_value` to read one
variable's slot.
"""

import collections.abc
import dataclasses
import functools

import keras
import numpy as np
from keras import ops

from tfoptim.optimizers.graph import dense, inside_xla, is_sparse, tf_variable


@dataclasses.dataclass
class _Group:
    """Small variables of one dtype and one ``settings`` (rate factor, decoupled decay
    coefficient: :meth:`Optimizer.settings_of`) whose slots are flat buffers.

    ``proxy`` is a scratch variable the members are copied into before each step; the rule
    updates it like any variable, and its pieces are copied back after."""

    members: list
    keys: list
    settings: tuple
    index: int = 0
    proxy: object = None
    buffers: list = dataclasses.field(default_factory=list)

    @property
    def decays(self):
        return bool(self.settings[1])

    @property
    def sizes(self):
        return [int(np.prod(m.shape)) for m in self.members]

    def offset(self, position):
        return sum(self.sizes[:position])


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
        if is_sparse(gradient):
            row = int(np.prod(shape[1:]))
            rows = tf.cast(gradient.indices, tf.int64)[:, None] * row + tf.range(row, dtype=tf.int64)[None, :]
            indices.append(offset + tf.reshape(rows, [-1]))
            values.append(tf.reshape(tf.cast(gradient.values, dtype), [-1]))
        else:
            indices.append(tf.range(offset, offset + int(np.prod(shape)), dtype=tf.int64))
            values.append(tf.reshape(tf.cast(gradient, dtype), [-1]))
    return tf.IndexedSlices(tf.concat(values, 0), tf.concat(indices, 0), tf.constant([size], tf.int64))


@functools.cache
def _slot_piece_class():
    """A checkpointable view of one variable's piece of a flat buffer, saved under the key a
    per-variable slot has (``.ATTRIBUTES/VARIABLE_VALUE``). Built on first use: TensorFlow is
    imported only on its backend."""
    import tensorflow as tf

    base = tf.__internal__.tracking.Trackable

    class SlotPiece(base):
        def __init__(self, buffer, start, shape):
            self._buffer, self._start, self._shape = tf_variable(buffer), start, tuple(shape)

        def _serialize_to_tensors(self):
            size = int(np.prod(self._shape))
            piece = self._buffer[self._start : self._start + size]
            return {"VARIABLE_VALUE": tf.reshape(piece, self._shape)}

        def _restore_from_tensors(self, restored_tensors):
            value = tf.reshape(restored_tensors["VARIABLE_VALUE"], [-1])
            size = int(np.prod(self._shape))
            if value.shape[0] != size:
                raise ValueError(
                    f"A saved optimizer slot of shape {value.shape} does not fit the slot of "
                    f"shape {self._shape} it is restored into."
                )
            return self._buffer[self._start : self._start + size].assign(
                tf.cast(value, self._buffer.dtype)
            )

    class SlotLayout(base):
        """The optimizer's variables in Keras's per-variable order, as ``_variables`` shows
        them to ``tf.train.Checkpoint``."""

        def __init__(self, entries):
            self._entries = entries

        def _trackable_children(self, save_type="checkpoint", **kwargs):
            return {str(i): entry for i, entry in enumerate(self._entries)}

    return SlotPiece, SlotLayout


class SmallVariableGroups:
    """The ``fast_path="grouped"`` part of :class:`tfoptim.optimizers.base.Optimizer`."""

    def build(self, variables):
        super().build(variables)
        object.__setattr__(self, "_groups", self._small_variable_groups(variables))
        object.__setattr__(self, "_grouped", {})
        object.__setattr__(self, "_layout_blocks", {})

    def _small_variable_groups(self, variables):
        """The groups of small variables whose slots will be flat buffers: decided at build,
        so every step of this optimizer sees one layout. None for a rule stepped by a training
        op, which costs less per variable than gathering it into a group."""
        if not (
            self.fast_path == "grouped"
            and self._fast_path_allowed()
            and self.elementwise
            and not self._reduces_over_variables
            and self._training_op is None
        ):
            return []
        import tensorflow as tf

        from tfoptim.optimizers._fast_path import FAST_PATH_MIN_SIZE

        # Replicas of a distributed step update each variable in its own device context.
        if tf.distribute.has_strategy():
            return []
        by_kind = {}
        for variable in variables:
            if int(np.prod(variable.shape)) >= FAST_PATH_MIN_SIZE:
                continue
            if self._overwrite_variable_with_gradient(variable):
                continue
            kind = (keras.backend.standardize_dtype(variable.dtype), self.settings_of(variable))
            by_kind.setdefault(kind, []).append(variable)
        return [
            _Group(members, [self._var_key(v) for v in members], settings)
            for (_, settings), members in by_kind.items()
            if len(members) > 1
        ]

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """Keras's slots, one per variable and name, except for grouped small variables:
        theirs are one flat buffer per group and name, appended to the returned lists after
        the per-variable entries (which are None for grouped variables), at the index
        :meth:`_get_variable_index` gives the group's proxy."""
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
        object.__setattr__(self, "_adding_slots", True)
        try:
            slots = self._add_grouped_slots(trainable_variables, names, initializers)
        finally:
            object.__setattr__(self, "_adding_slots", False)
        return slots[0] if isinstance(name, str) else slots

    def _add_grouped_slots(self, trainable_variables, names, initializers):
        start, index = len(self._variables), len(self._saved_layout())
        slots = tuple([] for _ in names)
        layout, restored = [], {}
        for variable in trainable_variables:
            place = self._grouped.get(self._var_key(variable))
            for i, (slot_name, slot_initializer) in enumerate(zip(names, initializers)):
                if self._overwrite_variable_with_gradient(variable):
                    slots[i].append(None)
                    continue
                if place is not None:
                    slots[i].append(None)
                    layout.append((i, *place))
                    restored[len(layout) - 1] = self._take_restore(index + len(layout) - 1)
                    continue
                initializer, positions = self._restoring(index + len(layout), slot_initializer)
                slot = self.add_variable_from_reference(variable, name=slot_name, initializer=initializer)
                self._bind(positions, slot)
                slots[i].append(slot)
                layout.append(slot)
        for i, (slot_name, slot_initializer) in enumerate(zip(names, initializers)):
            for group in self._groups:
                pieces = [(group.offset(e[2]), restored[k]) for k, e in enumerate(layout)
                          if isinstance(e, tuple) and e[0] == i and e[1] is group and restored[k]]
                buffer = self.add_variable(
                    shape=(sum(group.sizes),),
                    dtype=group.proxy.dtype,
                    initializer=_with_pieces(slot_initializer, pieces) if pieces else slot_initializer,
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
        checkpoint_layout = self._checkpoint_layout()
        for k, positions in restored.items():
            self._bind(positions, checkpoint_layout[index + k])
        return slots

    def add_variable(self, *args, **kwargs):
        if getattr(self, "_pending_restores", None) and not getattr(self, "_adding_slots", False) and len(args) < 2:
            # A rule's own variable made after a grouped block: its Keras index is the
            # layout's length.
            kwargs["initializer"], positions = self._restoring(
                len(self._saved_layout()), kwargs.get("initializer", "zeros")
            )
            variable = super().add_variable(*args, **kwargs)
            self._bind(positions, variable)
            return variable
        return super().add_variable(*args, **kwargs)

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
        object.__setattr__(self, "_proxy_groups", {self._var_key(g.proxy): g for g in self._groups})
        self._take_pending_restores()

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
        if not getattr(self, "_grouped", None):
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
            if self.lazy_sparse and any(is_sparse(given[k]) for k in group.keys if k in given):
                pieces = [
                    (given[key], group.offset(position), member.shape)
                    for position, (key, member) in enumerate(zip(group.keys, group.members))
                    if key in given
                ]
                flat_gradient = _flat_slices(pieces, sum(group.sizes), dtype)
            else:
                flat_gradient = tf.concat(
                    [
                        _flat(tf.cast(dense(given[key]), dtype)) if key in given
                        else tf.zeros([size], dtype)
                        for key, size in zip(group.keys, group.sizes)
                    ],
                    0,
                )
            increment = self._steps_by_increment(group)
            proxy = tf_variable(group.proxy)
            if increment:
                proxy.assign(tf.zeros_like(proxy))
            else:
                proxy.assign(tf.concat([_flat(tf.convert_to_tensor(tf_variable(m))) for m in group.members], 0))
            # A variable without a gradient is not stepped (Keras leaves it and its slots as
            # they are): its pieces of the slots are put back after the step.
            kept = []
            for position in (p for p, here in enumerate(present) if not here):
                start, size = group.offset(position), group.sizes[position]
                kept += [
                    (buffer, start, tf.identity(tf_variable(buffer)[start : start + size]))
                    for buffer in group.buffers
                ]
            pairs.append((flat_gradient, group.proxy))
            stepped.append((group, present, kept, increment))

        def scatter():
            for group, present, kept, increment in stepped:
                for buffer, start, value in kept:
                    tf_variable(buffer)[start : start + value.shape[0]].assign(value)
                pieces = tf.split(tf.convert_to_tensor(tf_variable(group.proxy)), group.sizes)
                for member, piece, here in zip(group.members, pieces, present):
                    if here:
                        piece = piece if len(member.shape) == 1 else tf.reshape(piece, member.shape)
                        if increment:
                            tf_variable(member).assign_add(piece)
                        else:
                            tf_variable(member).assign(piece)

        return [g for g, _ in pairs], [v for _, v in pairs], scatter

    def _steps_by_increment(self, group):
        """Whether ``group`` is stepped from zero (see ``increment_only``): not when weight
        decay, coupled or decoupled, reads the members, and not inside a step XLA compiles
        whole, where XLA fuses the copy into the group anyway."""
        decoupled = not self.weight_decay_in_rule and group.decays
        return self.increment_only and not self.coupled_weight_decay and not decoupled and not inside_xla()

    # -- what is persisted: Keras's per-variable layout ------------------------------------

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
            import warnings

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

    def _checkpoint_layout(self):
        """The per-variable layout with each grouped slot as a checkpointable piece."""
        piece_class, _ = _slot_piece_class()
        pieces = getattr(self, "_checkpoint_pieces", None)
        if pieces is None:
            pieces = {}
            object.__setattr__(self, "_checkpoint_pieces", pieces)
        layout = []
        for entry in self._saved_layout():
            if isinstance(entry, tuple):
                buffer, start, shape = entry
                key = (id(buffer), start)
                if key not in pieces:
                    pieces[key] = piece_class(buffer, start, shape)
                entry = pieces[key]
            layout.append(entry)
        return layout

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if not getattr(self, "_layout_blocks", None) or save_type != "checkpoint":
            return children
        _, layout_class = _slot_piece_class()
        buffers = {id(b) for group in self._groups for b in group.buffers}

        def holds_buffer(child):
            return isinstance(child, collections.abc.Sequence) and any(id(item) in buffers for item in child)

        # Rules' own slot lists (``_momentums``, ...) hold the buffers too: the checkpoint
        # reaches every slot through ``_variables``, as it does for Keras's optimizers.
        children = {name: child for name, child in children.items() if not holds_buffer(child)}
        # The checkpoint walks the children more than once and matches them by identity.
        layout = self._checkpoint_layout()
        view = getattr(self, "_checkpoint_view", None)
        if view is None or [id(e) for e in view._entries] != [id(e) for e in layout]:
            view = layout_class(layout)
            object.__setattr__(self, "_checkpoint_view", view)
        children["_variables"] = view
        return children

    # A tf.train.Checkpoint restored before the optimizer is built waits, per index of
    # ``_variables``, for the variable created there. Once the small variables are grouped the
    # indices no longer match Keras's, so those waiting restores are taken at the first flat
    # buffer; each slot, or slot piece, then starts from its saved value (as an initial value:
    # the step that builds the optimizer may be being traced, its variables not yet made).

    def _take_pending_restores(self):
        waiting = getattr(self._variables, "_deferred_dependencies", None) or {}
        start = len(self._variables)
        taken = {int(name): waiting.pop(name) for name in list(waiting) if int(name) >= start}
        object.__setattr__(self, "_pending_restores", taken)

    def _take_restore(self, index):
        """The checkpoint positions waiting for Keras index ``index`` (an empty list if none)."""
        return getattr(self, "_pending_restores", {}).pop(index, [])

    def _restoring(self, index, initializer):
        """``initializer``, or the saved value for Keras index ``index``, and its positions."""
        positions = self._take_restore(index)
        if not positions:
            return initializer, positions
        value = _saved_value(positions[0])
        return (lambda shape, dtype=None: np.reshape(value, shape).astype(dtype or value.dtype)), positions

    @staticmethod
    def _bind(positions, trackable):
        """Marks ``trackable`` as restored from ``positions`` (what ``assert_consumed`` and
        ``assert_existing_objects_matched`` check)."""
        for position in positions:
            position.bind_object(trackable)
            trackable._update_uid = position.checkpoint.restore_uid


def _saved_value(position):
    """The value a checkpoint holds for a variable's position."""
    (key,) = [a.checkpoint_key for a in position.object_proto.attributes if a.name == "VARIABLE_VALUE"]
    from tensorflow.python.training import py_checkpoint_reader

    return py_checkpoint_reader.NewCheckpointReader(position.checkpoint.save_path_string).get_tensor(key)


def _with_pieces(initializer, pieces):
    """``initializer`` for a flat buffer, with the ``(offset, positions)`` pieces at their saved
    values."""

    def initial_value(shape, dtype=None):
        saved, mask = np.zeros(shape, keras.backend.standardize_dtype(dtype)), np.zeros(shape, bool)
        for offset, positions in pieces:
            value = np.reshape(_saved_value(positions[0]), -1)
            saved[offset : offset + value.size] = value
            mask[offset : offset + value.size] = True
        # The initializer may run inside a traced step: tensors, not NumPy, from here.
        return ops.where(mask, saved, keras.initializers.get(initializer)(shape, dtype=dtype))

    return initial_value
