import keras
from keras import ops

from tfoptim._validation import check_bool, check_non_negative, check_positive
from tfoptim.optimizers._wrapper import OptimizerWrapper
from tfoptim.optimizers.graph import conditional_update


@keras.saving.register_keras_serializable(package="tfoptim")
class SAM(OptimizerWrapper):
    """Sharpness-Aware Minimization (SAM, and ASAM with ``adaptive=True``) around any optimizer.

    SAM steps with the gradient taken at the worst point of a small neighbourhood of the
    weights. With ``s = |w|`` for ASAM and ``s = 1`` for SAM::

        e  = rho * s**2 * g / (||s * g|| + eps)      (g at w; the norm over all variables)
        g' = gradient at w + e
        w <- optimizer step from w with g'

    **Form: alternating calls, one gradient per call.** ``model.fit`` computes one gradient per
    step, so each call of ``apply`` does one half of the step, in turn:

    * calls 1, 3, 5, ...: the *ascent*: the weights are kept and moved to ``w + e``; the inner
      optimizer does not step;
    * calls 2, 4, 6, ...: the *descent*: the weights go back to ``w`` and the inner optimizer
      steps with the gradient it was given, taken at ``w + e``.

    So ``fit`` needs no custom training step, and a SAM step costs two ``fit`` steps (two
    forward/backward passes, as SAM always costs) and one extra copy of the weights. Two
    calls with gradients of the same function are exactly the closure form of
    ``pytorch_optimizer.SAM``: that is what the tests check, call pair against step. In
    ``fit`` the two gradients come from consecutive batches, as in optax's alternating
    ``optax.contrib.sam``; the original SAM takes both on one batch (feed each batch twice for
    that; the two forms are compared in docs/benchmarks/wrappers.md). Between the calls of a pair the model holds ``w + e``: :meth:`evaluation_values`
    gives ``w`` (and the inner optimizer's own evaluation weights at ``w``), so
    :class:`tfoptim.callbacks.EvaluationWeights` validates and saves the unperturbed weights.

    ``iterations`` and the learning rate are the inner optimizer's, so a schedule counts SAM
    steps (calls 2, 4, ...). Wrap SAM around Lookahead, SWA or ScheduleFree, not the other way:
    they count steps by ``iterations`` (wrapping SAM in one raises ``ValueError``).
    ``gradient_accumulation_steps`` on the inner optimizer averages the ascended gradients of
    that many pairs. Under ``tf.distribute`` the ascent uses the gradient summed over the
    replicas, so every replica moves to the same ``w + e``.

    Deliberate differences from ``pytorch_optimizer.SAM``: the global norm is computed at the
    variables' precision (pytorch_optimizer sums it in float32), and there is no ``use_gc``
    (wrap the inner optimizer in :class:`GradientCentralization` instead, which centralizes
    the descent gradient; pytorch_optimizer's ``use_gc`` centralizes the ascent gradient).

    References: Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for
    Efficiently Improving Generalization" (ICLR 2021); Kwon, Kim, Park & Choi, "ASAM:
    Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural
    Networks" (ICML 2021).

    Args:
        optimizer: the inner optimizer: any ``keras.optimizers.Optimizer`` (built-in or
            tfoptim), or its name.
        rho: radius of the neighbourhood (> 0). Defaults to 0.05 (ASAM's papers use larger
            values, e.g. 0.5 to 2).
        adaptive: ASAM's scale-invariant neighbourhood. Defaults to False.
        eps: added to the norm (>= 0). Defaults to 1e-12 (pytorch_optimizer's ``perturb_eps``).
        name: defaults to "sam".
    """

    steps_every_call = False

    def __init__(self, optimizer, rho=0.05, adaptive=False, eps=1e-12, name=None, **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.rho = check_positive("rho", rho)
        self.adaptive = check_bool("adaptive", adaptive)
        self.eps = check_non_negative("eps", eps)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._origins = self.add_optimizer_variables(variables, "origin")

    def _perturbed(self):
        """Whether the weights are at ``w + e`` now (an ascent was the last call). The
        wrapper's own ``_iterations`` counts its calls."""
        return ops.equal(ops.mod(self._iterations, 2), 1)

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        trainable_variables = self._built_for(trainable_variables)
        grads = list(grads)
        if keras.backend.backend() == "tensorflow":
            self._tf_alternate(grads, trainable_variables)
        else:
            conditional_update(
                ops.logical_not(self._perturbed()),
                lambda: self._ascend(grads, trainable_variables),
                [*trainable_variables, *self.variables],
                otherwise=lambda: self._descend(grads, trainable_variables),
            )
        self._iterations.assign_add(1)

    def _tf_alternate(self, grads, variables):
        import tensorflow as tf

        if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context() or (
            tf.__internal__.distribute.strategy_supports_no_merge_call()
        ):
            ops.cond(ops.logical_not(self._perturbed()),
                     lambda: self._ascend(grads, variables), lambda: self._descend(grads, variables))
            return

        # A cond in a replica context may not hold a branch that calls merge_call (the inner
        # optimizer's step does): decide in the cross-replica context and run each branch in
        # the replicas, as Keras's LossScaleOptimizer does.
        def cross_replica(distribution, grads, variables):
            def branch(half):
                return lambda: distribution.extended.call_for_each_replica(half, args=(grads, variables))

            ops.cond(ops.logical_not(self._perturbed()), branch(self._ascend), branch(self._descend))

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, variables))

    def _ascend(self, grads, variables):
        present = [i for i, g in enumerate(grads) if g is not None]
        summed, _ = self._global_gradients([grads[i] for i in present])
        variables = [variables[i] for i in present]
        grads = [ops.cast(g, v.dtype) for g, v in zip(summed, variables)]
        weights = [ops.convert_to_tensor(v) for v in variables]
        scaled = [ops.multiply(g, ops.abs(w)) if self.adaptive else g for g, w in zip(grads, weights)]
        dtype = "float64" if any(w.dtype == "float64" for w in weights) else "float32"
        norm = ops.sqrt(sum(ops.cast(ops.sum(ops.square(ops.cast(s, dtype))), dtype) for s in scaled))
        scale = ops.divide(self.rho, ops.add(norm, ops.convert_to_tensor(self.eps, dtype)))
        steps = [
            ops.multiply(ops.multiply(ops.square(w), g) if self.adaptive else g, ops.cast(scale, w.dtype))
            for g, w in zip(grads, weights)
        ]
        self._update_each(None, self._move_to_neighbour, variables, steps)

    def _move_to_neighbour(self, variable, step):
        self.assign(self._slot(self._origins, variable), variable)
        self.assign_add(variable, step)

    def _descend(self, grads, variables):
        stepped = [v for g, v in zip(grads, variables) if g is not None]
        self._update_each(None, self._move_back, stepped)
        self.inner_optimizer.apply(grads, variables)

    def _move_back(self, variable):
        self.assign(variable, self._slot(self._origins, variable))

    def evaluation_values(self, variables):
        """The unperturbed weights ``w`` of ``variables``, or the inner optimizer's evaluation
        weights taken at ``w`` where it keeps some (Lookahead's slow weights, schedule-free
        ``x``, an EMA)."""
        from tfoptim.callbacks.evaluation_weights import evaluation_values

        perturbed = self._perturbed()
        current = [ops.copy(ops.convert_to_tensor(v)) for v in variables]
        # Values, not variables: JAX's jnp.where no longer takes a Keras variable.
        origins = [ops.where(perturbed, ops.convert_to_tensor(self._slot(self._origins, v)), c)
                   for v, c in zip(variables, current)]
        # The inner optimizer's evaluation weights are functions of w: read them with w in place.
        for variable, origin in zip(variables, origins):
            variable.assign(origin)
        try:
            values = evaluation_values(self.inner_optimizer, variables)
            values = origins if values is None else [ops.copy(ops.convert_to_tensor(v)) for v in values]
        finally:
            for variable, value in zip(variables, current):
                variable.assign(value)
        return values

    def get_config(self):
        return self._config(rho=self.rho, adaptive=self.adaptive, eps=self.eps)
