"""``skip_nonfinite``: a step whose gradients hold a NaN or Inf is skipped whole.

Variables, slots and ``iterations`` stay as they were, on every replica of a distributed step,
and ``skipped_steps`` counts the skip. Without it, non-finite gradients flow into the state as
in Keras.
"""

import keras
from keras import ops

from tfoptim.optimizers.graph import all_finite, conditional_update


class NonFiniteSkipping:
    """The ``skip_nonfinite`` part of :class:`tfoptim.optimizers.base.Optimizer`."""

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

    @property
    def skipped_steps(self):
        """Steps skipped for non-finite gradients (requires ``skip_nonfinite=True``)."""
        if not self.skip_nonfinite:
            raise AttributeError("`skipped_steps` is only tracked with `skip_nonfinite=True`.")
        return self._skipped_steps

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
            lambda: super(NonFiniteSkipping, self).apply(grads, trainable_variables),
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
