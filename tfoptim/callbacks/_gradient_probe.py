"""Measuring the gradients that the training step really applies.

Mechanism: while a callback needs it, the model's (outermost) optimizer gets an instance-level
``apply`` that computes a few statistics of the gradients it receives, stores them in
variables, and then calls the class's ``apply`` unchanged. ``train_step`` reaches ``apply``
through ``apply_gradients``, so this sees exactly the gradients of the real step (no second
forward pass) for every optimizer class, wrapped or not, and for custom training loops too.
Installing or removing the hook re-traces the step function once (``make_train_function(force=
True)``); after that the statistics are ordinary graph ops, so nothing re-traces per step.

What the hook sees is what ``train_step`` computed on one replica, before loss-scale
unscaling, clipping and the cross-replica sum. So it:

* divides by the loss scale the step used (``optimizer.scale_loss(1)``: ``LossScaleOptimizer``'s
  dynamic scale or ``loss_scale_factor``), giving the gradient of the unscaled loss;
* under a multi-replica ``tf.distribute`` strategy, sums the gradients across replicas (one
  extra all-reduce per step, the price of a global norm; none on a single device), giving the
  gradient of the global-batch loss that the optimizer applies;
* measures before clipping, so ``clipnorm``/``global_clipnorm`` do not hide large gradients.

The statistics live in ``ON_READ`` variables with ``ONLY_FIRST_REPLICA`` aggregation: after the
all-reduce every replica holds the same numbers, so each writes its own copy without a
cross-replica synchronisation, and reading returns the first copy. They are not tracked by the
optimizer or the model, so nothing about saving changes.
"""

import numpy as np
import tensorflow as tf


def _as_float32(gradient):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(
            tf.cast(gradient.values, tf.float32), gradient.indices, gradient.dense_shape
        )
    return tf.cast(gradient, tf.float32)


def _scaled(gradient, scale):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / scale, gradient.indices, gradient.dense_shape)
    return gradient / scale


def _entries(gradient):
    """The entries of the dense gradient that ``gradient`` stands for (sparse rows that share
    an index are summed first, as applying them would)."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    unique, position = tf.unique(gradient.indices)
    return tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(unique)[0])


def _stat_variable(initial_value, dtype, name):
    return tf.Variable(
        initial_value,
        dtype=dtype,
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


class GradientProbe:
    """Statistics of the last applied step, read from the host with the properties below.

    Obtain one with :func:`attach` and give it back with :func:`detach`; several callbacks
    share one probe per optimizer.
    """

    def __init__(self, model):
        self.model = model
        self.optimizer = model.optimizer
        self.variables = list(model.trainable_variables)
        self.track_updates = False
        self.keep_gradients = False
        self.users = 0
        # How many times the hook was traced: once per step-function trace and replica, never
        # once per step (the tests check it).
        self.traces = 0
        count = len(self.variables)
        with model.distribute_strategy.scope():
            self._grad_sq = _stat_variable(np.zeros(count, np.float32), tf.float32, "grad_sq")
            self._nonfinite = _stat_variable(0, tf.int64, "nonfinite")
            self._nonfinite_total = _stat_variable(0, tf.int64, "nonfinite_total")
            self._steps = _stat_variable(0, tf.int64, "probed_steps")
        self._shadowed_apply = None

    def _enable(self, track_updates, keep_gradients):
        """Adds the optional measurements; True if any was added (the step must re-trace)."""
        count = len(self.variables)
        added = False
        with self.model.distribute_strategy.scope():
            if track_updates and not self.track_updates:
                self._update_sq = _stat_variable(np.zeros(count, np.float32), tf.float32, "upd_sq")
                self._weight_sq = _stat_variable(np.zeros(count, np.float32), tf.float32, "w_sq")
                self.track_updates = added = True
            if keep_gradients and not self.keep_gradients:
                self._gradients = [
                    _stat_variable(tf.zeros(v.shape, tf.float32), tf.float32, "gradient")
                    for v in self.variables
                ]
                self._updates = [
                    _stat_variable(tf.zeros(v.shape, tf.float32), tf.float32, "update")
                    for v in self.variables
                ]
                self.keep_gradients = added = True
        return added

    # Host-side readings -------------------------------------------------------------------

    @property
    def steps(self):
        """Number of optimizer steps observed since the probe was attached."""
        return int(self._steps.numpy())

    @property
    def nonfinite(self):
        """Non-finite gradient entries in the last step."""
        return int(self._nonfinite.numpy())

    @property
    def nonfinite_total(self):
        """Non-finite gradient entries since the probe was attached."""
        return int(self._nonfinite_total.numpy())

    def gradient_norms(self):
        """Per-variable gradient norms of the last step (order of ``self.variables``)."""
        return np.sqrt(self._grad_sq.numpy().astype(np.float64))

    def grad_norm(self):
        """Global gradient norm of the last step."""
        return float(np.sqrt(self._grad_sq.numpy().astype(np.float64).sum()))

    def update_sq(self):
        """Per-variable ``(||w_after - w_before||**2, ||w_before||**2)`` of the last step."""
        return self._update_sq.numpy().astype(np.float64), self._weight_sq.numpy().astype(
            np.float64
        )

    def gradients(self):
        """The last step's gradient and update of every variable (``keep_gradients`` only)."""
        return [g.numpy() for g in self._gradients], [u.numpy() for u in self._updates]

    # The hook -----------------------------------------------------------------------------

    def _install(self):
        original = self.optimizer.apply
        index = {id(v): i for i, v in enumerate(self.variables)}

        def apply(grads, trainable_variables=None):
            grads = list(grads)
            variables = (
                list(trainable_variables)
                if trainable_variables is not None
                else list(self.optimizer._trainable_variables)
            )
            before = self._record_gradients(grads, [index.get(id(v)) for v in variables])
            result = original(grads, trainable_variables)
            if before is not None:
                self._record_updates(before)
            return result

        # The hook is how callbacks find the probe: no registry that would keep optimizers alive.
        apply.gradient_probe = self
        # Someone else's instance-level `apply` is wrapped like the class's, and put back.
        self._shadowed_apply = vars(self.optimizer).get("apply")
        self.optimizer.apply = apply

    def _uninstall(self):
        if self._shadowed_apply is not None:
            self.optimizer.apply = self._shadowed_apply
        else:
            del self.optimizer.apply

    def _record_gradients(self, grads, slots):
        # Runs once per trace (Python), not once per step.
        self.traces += 1
        present = [(g, s) for g, s in zip(grads, slots) if g is not None and s is not None]
        if not present:
            return None
        gradients = [_as_float32(g) for g, _ in present]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        scale = tf.cast(self.optimizer.scale_loss(1.0), tf.float32)
        gradients = [_scaled(g, scale) for g in gradients]
        entries = [_entries(g) for g in gradients]

        squares = [tf.zeros((), tf.float32)] * len(self.variables)
        for e, (_, s) in zip(entries, present):
            squares[s] = tf.reduce_sum(tf.square(e))
        nonfinite = tf.add_n(
            [tf.math.count_nonzero(tf.logical_not(tf.math.is_finite(e))) for e in entries]
        )
        self._grad_sq.assign(tf.stack(squares))
        self._nonfinite.assign(nonfinite)
        self._nonfinite_total.assign_add(nonfinite)
        self._steps.assign_add(1)
        if self.keep_gradients:
            for g, (_, s) in zip(gradients, present):
                dense = tf.convert_to_tensor(g)
                self._gradients[s].assign(tf.reshape(dense, self._gradients[s].shape))
        if not (self.track_updates or self.keep_gradients):
            return None
        return {s: tf.cast(tf.identity(self.variables[s].value), tf.float32) for _, s in present}

    def _record_updates(self, before):
        update_sq = [tf.zeros((), tf.float32)] * len(self.variables)
        weight_sq = [tf.zeros((), tf.float32)] * len(self.variables)
        for s, old in before.items():
            delta = tf.cast(self.variables[s].value, tf.float32) - old
            update_sq[s] = tf.reduce_sum(tf.square(delta))
            weight_sq[s] = tf.reduce_sum(tf.square(old))
            if self.keep_gradients:
                self._updates[s].assign(delta)
        if self.track_updates:
            self._update_sq.assign(tf.stack(update_sq))
            self._weight_sq.assign(tf.stack(weight_sq))


def attach(model, track_updates=False, keep_gradients=False):
    """The probe of ``model``'s optimizer, installed if needed, with at least these features.

    Callbacks share the probe: asking for more features extends it in place (so probes already
    handed out see them too) and re-traces the step once. Call once the model is built; pair
    with :func:`detach`.
    """
    probe = getattr(vars(model.optimizer).get("apply"), "gradient_probe", None)
    retrace = probe is None
    if probe is None:
        probe = GradientProbe(model)
        probe._install()
    retrace = probe._enable(track_updates, keep_gradients) or retrace
    if retrace:
        model.make_train_function(force=True)
    probe.users += 1
    return probe


def detach(probe):
    """Gives ``probe`` back; the last user removes the hook (and re-traces the step once)."""
    probe.users -= 1
    if probe.users == 0:
        probe._uninstall()
        probe.model.make_train_function(force=True)

