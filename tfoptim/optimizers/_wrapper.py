"""What Lookahead and SWA share: wrapping any Keras optimizer (built-in or tfoptim).

Written the way Keras's own ``LossScaleOptimizer`` wraps one: the inner optimizer applies the
gradients and owns the learning rate and ``iterations``; the wrapper's ``variables`` are its own
slots followed by the inner optimizer's (so ``.keras`` files hold both, and callbacks that
snapshot ``optimizer.variables`` see everything); ``get_config`` holds the serialized inner
optimizer and ``from_config`` rebuilds it. Callbacks find the inner optimizer through
``inner_optimizer``, as they do for ``LossScaleOptimizer``.
"""

import keras

from tfoptim.optimizers.graph import conditional_update


class OptimizerWrapper(keras.optimizers.Optimizer):
    """Runs :meth:`_before_step`, ``optimizer``'s step, then :meth:`_after_step`."""

    def __init__(self, optimizer, name=None, **kwargs):
        if isinstance(optimizer, (str, dict)):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "`optimizer` must be a `keras.optimizers.Optimizer` instance (or its name). "
                f"Received: optimizer={optimizer!r}"
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

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        # Variables without a gradient are not stepped: left out, as the inner rule does.
        stepped = [v for g, v in zip(grads, trainable_variables) if g is not None]
        with keras.name_scope(self.name, caller=self):
            self._before_step(stepped)
        self.inner_optimizer.apply(grads, trainable_variables)
        with keras.name_scope(self.name, caller=self):
            self._after_step(stepped)

    def _before_step(self, variables):
        """Runs before the inner step (with ``iterations`` not yet advanced)."""

    def _after_step(self, variables):
        """Runs after the inner step (``iterations`` advanced)."""

    def _update_each(self, due, update, variables):
        """``update(variable)`` for each of ``variables`` when ``due()`` (a scalar boolean,
        evaluated where the update runs) holds: one ``cond`` per step and variable, not a
        ``where`` over every element."""
        if keras.backend.backend() != "tensorflow":

            def update_all():
                for variable in variables:
                    update(variable)

            conditional_update(due(), update_all, [*variables, *self.variables])
            return
        import tensorflow as tf

        variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]

        def cross_replica(distribution, variables):
            # Each replica's copy of a mirrored variable is updated in place, as in Keras's own
            # update step (`extended.update`, which runs the cond on each device).
            condition = due()

            def update_one(variable):
                def run():
                    update(variable)

                tf.cond(condition, run, lambda: None)

            for variable in variables:
                distribution.extended.update(variable, update_one, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica, self._distribution_strategy, variables
        )

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
