"""What Lookahead and SWA share: wrapping any Keras optimizer (built-in or tfoptim).

Written the way Keras's own ``LossScaleOptimizer`` wraps one: the inner optimizer applies the
gradients and owns the learning rate and ``iterations``; the wrapper's ``variables`` are its own
slots followed by the inner optimizer's (so ``.keras`` files hold both, and callbacks that
snapshot ``optimizer.variables`` see everything); ``get_config`` holds the serialized inner
optimizer and ``from_config`` rebuilds it. Callbacks find the inner optimizer through
``inner_optimizer``, as they do for ``LossScaleOptimizer``.
"""

import keras
from keras import ops

from tfoptim.optimizers.graph import conditional_update, dense


class OptimizerWrapper(keras.optimizers.Optimizer):
    """Runs :meth:`_before_step`, ``optimizer``'s step, then :meth:`_after_step`."""

    #: False for a wrapper whose ``apply`` steps its inner optimizer only on some calls (SAM:
    #: every other one), so ``iterations`` does not count its calls.
    steps_every_call = True
    #: True for a wrapper that counts steps by ``iterations`` (Lookahead, SWA, ScheduleFree):
    #: it refuses to wrap one that is not ``steps_every_call``.
    counts_iterations = True

    def __init__(self, optimizer, name=None, **kwargs):
        if isinstance(optimizer, (str, dict)):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "`optimizer` must be a `keras.optimizers.Optimizer` instance (or its name). "
                f"Received: optimizer={optimizer!r}"
            )
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                f"`optimizer`: {type(self).__name__} would see gradients still multiplied by the "
                "loss scale (and the non-finite ones the scale skips); wrap the other way round, "
                f"LossScaleOptimizer({type(self).__name__}(...)), as `compile` does under "
                f"mixed_float16. Received: optimizer={optimizer!r}"
            )
        if self.counts_iterations and not getattr(optimizer, "steps_every_call", True):
            outer, inner = type(self).__name__, type(optimizer).__name__
            raise ValueError(
                f"`optimizer`: {outer} counts steps by `iterations`, which {inner} advances only on "
                f"some calls; wrap the other way round, {inner}({outer}(...)). Received: "
                f"optimizer={optimizer!r}"
            )
        if kwargs:
            raise ValueError(
                f"{type(self).__name__} does not take `{'`, `'.join(kwargs)}`: set it on the "
                "inner optimizer."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer

    def build(self, variables):
        if self.built:
            return
        self.inner_optimizer.build(variables)
        super().build(variables)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def _built_for(self, trainable_variables):
        """The variables an ``apply`` steps (``None``: those the optimizer was built for),
        building the wrapper on the first call as Keras's ``apply`` does."""
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if self.built:
            return trainable_variables

        def build(*_):
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # In a replica of a strategy, built in the cross-replica context: a value restored
            # from a checkpoint before the build is assigned to each new variable as it is
            # created, which a mirrored variable updated once per step (`only_first_replica`)
            # allows there only.
            tf.__internal__.distribute.interim.maybe_merge_call(build, tf.distribute.get_strategy())
        else:
            build()
        self.built = True
        return trainable_variables

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        trainable_variables = self._built_for(trainable_variables)
        # Variables without a gradient are not stepped: left out, as the inner rule does.
        stepped = [v for g, v in zip(grads, trainable_variables) if g is not None]
        with keras.name_scope(self.name, caller=self):
            self._before_step(stepped)
        self.inner_optimizer.apply(grads, trainable_variables)
        with keras.name_scope(self.name, caller=self):
            self._after_step(stepped)

    def _rule(self):
        """The optimizer at the bottom of the stack of wrappers, whose
        ``gradient_accumulation_steps`` decide which calls update the weights."""
        rule = self.inner_optimizer
        while isinstance(rule, OptimizerWrapper):
            rule = rule.inner_optimizer
        return rule

    def _updates(self, after):
        """Whether this call of ``apply`` updates the weights (the inner optimizer's
        ``iterations`` advance), rather than only accumulating a micro-batch's gradient: read
        before the inner step (``after=False``) or after it."""
        rule = self._rule()
        steps = rule.gradient_accumulation_steps or 1
        return ops.equal(ops.mod(rule._iterations + (0 if after else 1), steps), 0)

    def _before_step(self, variables):
        """Runs before the inner step (with ``iterations`` not yet advanced)."""

    def _after_step(self, variables):
        """Runs after the inner step (``iterations`` advanced)."""

    def _update_each(self, due, update, variables, values=None):
        """``update(variable)`` for each of ``variables`` (``update(variable, value)`` with the
        matching entry of ``values``, tensors computed where ``apply`` runs) when ``due()`` (a
        scalar boolean, evaluated where the update runs; None: always) holds: one ``cond`` per
        step and variable, not a ``where`` over every element."""
        arguments = [()] * len(variables) if values is None else [(value,) for value in values]
        if keras.backend.backend() != "tensorflow":

            def update_all():
                for variable, args in zip(variables, arguments):
                    update(variable, *args)

            if due is None:
                update_all()
            else:
                conditional_update(due(), update_all, [*variables, *self.variables])
            return
        import tensorflow as tf

        variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]

        def cross_replica(distribution, variables, arguments):
            # Each replica's copy of a mirrored variable is updated in place, as in Keras's own
            # update step (`extended.update`, which runs the cond on each device; a value
            # computed in each replica arrives as that device's).
            condition = None if due is None else due()

            def update_one(variable, *args):
                if condition is None:
                    update(variable, *args)
                    return

                def run():
                    update(variable, *args)

                tf.cond(condition, run, lambda: None)

            for variable, args in zip(variables, arguments):
                distribution.extended.update(variable, update_one, args=args, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica, self._distribution_strategy, variables, arguments
        )

    def _global_gradients(self, grads):
        """``grads`` summed over the replicas, where ``apply`` runs in a replica of a
        ``tf.distribute`` strategy (each replica's gradient is its share of the batch's), for
        rules that need the whole gradient before the inner optimizer (which all-reduces its own
        input) sees it; and the number of replicas. Sparse gradients are made dense."""
        grads = [None if g is None else dense(g) for g in grads]
        if keras.backend.backend() != "tensorflow":
            return grads, 1
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return grads, 1
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
        for i, g in zip(present, summed):
            grads[i] = g
        return grads, context.num_replicas_in_sync

    def _slot(self, slots, variable):
        return slots[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("The inner optimizer applies the gradients.")

    def _config(self, **own):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            **own,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)
