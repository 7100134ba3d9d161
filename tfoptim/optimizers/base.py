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
* **The fast path** (``fast_path``): see :meth:`Optimizer._backend_update_step`.
* **Rules that reduce over all variables** (D-Adaptation, Prodigy): see
  :meth:`Optimizer.collect_statistics`.
"""

import inspect
import os

import keras
import numpy as np
from keras import ops

from tfoptim._validation import check_learning_rate, check_non_negative, check_positive

#: Variables with at least this many elements are updated by the fast path. Below it, the fixed
#: cost per variable inside an XLA launch (~13 us on a 2-core CPU) outweighs the saved passes.
FAST_PATH_MIN_SIZE = 16384
#: The same for rules without slots (gradient descent): Keras already needs only two kernels
#: for them, so fusion pays only on large variables (measured: 1.1x slower at 65,536 elements,
#: 4.5x faster at 10M; ``tfoptim bench speed``).
STATELESS_FAST_PATH_MIN_SIZE = 2**20

_FAST_PATH_ENV = "TFOPTIM_FAST_PATH"


def fast_path_enabled():
    """False when the environment variable ``TFOPTIM_FAST_PATH`` is ``0``/``false``/``off``."""
    return os.environ.get(_FAST_PATH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _is_sparse(gradient):
    return hasattr(gradient, "indices") and hasattr(gradient, "values")


def _dense(gradient):
    """``gradient`` as a dense tensor (Keras's ``convert_to_tensor`` passes IndexedSlices on)."""
    if not _is_sparse(gradient):
        return gradient
    import tensorflow as tf

    return tf.convert_to_tensor(gradient)


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


def all_finite(grads):
    """A scalar boolean tensor: every gradient entry is finite."""
    checks = [
        ops.all(ops.isfinite(g.values if _is_sparse(g) else g)) for g in grads if g is not None
    ]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


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
        fast_path: update large variables in one XLA-compiled call per step (on by default;
            the environment variable ``TFOPTIM_FAST_PATH=0`` turns it off everywhere).
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
        # Whatever a subclass adds after this is a slot: tells stateless rules apart.
        object.__setattr__(self, "_base_variable_count", len(self.variables))

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
        ops.cond(
            all_finite(grads),
            lambda: super(Optimizer, self).apply(grads, trainable_variables),
            lambda: self._skipped_steps.assign_add(1),
        )

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

    def _apply_weight_decay(self, variables):
        # Decoupled decay runs per variable in _decay_and_update, after the coupled term has read
        # the weights the gradient was taken at.
        pass

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Applies the rule to every variable; the fast path lives here.

        Keras runs ``update_step`` once per variable, about a dozen separate element-wise
        kernels each, every one a full pass over memory when the step is not XLA-compiled
        (Keras's default on CPU and under ``tf.distribute``). The fast path runs the same
        ``update_step`` code for all large, densely-updated variables inside one
        ``tf.function(jit_compile=True)``, so XLA fuses each rule into a single pass. The state
        stays in the usual per-variable slots (same saved layout as the slow path; models move
        freely between the two), and the numbers are the same up to floating-point
        reassociation. It steps aside (to Keras's per-variable loop) for small variables,
        sparse gradients, under any ``tf.distribute`` strategy, inside a step that is already
        XLA-compiled, on non-TensorFlow backends, and when turned off. For a rule that reduces
        over all variables (:meth:`collect_statistics`) the call takes every variable, small
        ones included, as soon as one is large enough.
        """
        if self._reduces_over_variables:
            # The step touches every element anyway (the slots decay everywhere), and dense
            # gradients keep the fused call's signature fixed.
            grads = [_dense(g) for g in grads]
        if keras.backend.backend() != "tensorflow":
            self._update_variables(grads, trainable_variables, learning_rate)
            return
        if not self._fast_path_applies():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        stateless = len(self.variables) == self._base_variable_count
        threshold = STATELESS_FAST_PATH_MIN_SIZE if stateless else FAST_PATH_MIN_SIZE
        fused, rest = [], []
        for g, v in zip(grads, trainable_variables):
            size = (v.shape.num_elements() if hasattr(v.shape, "num_elements") else v.size) or 0
            (fused if size >= threshold and not _is_sparse(g) else rest).append((g, v))
        if self._reduces_over_variables and fused:
            # The statistics need every variable before any is updated: one call does all.
            fused, rest = fused + rest, []
        if rest:
            super()._backend_update_step(
                [g for g, _ in rest], [v for _, v in rest], learning_rate
            )
        if fused:
            import tensorflow as tf

            update = self._fused_update([v for _, v in fused])
            update([g for g, _ in fused], tf.convert_to_tensor(learning_rate))

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
        if self.weight_decay and not self.weight_decay_in_rule and self._use_weight_decay(variable):
            rate = ops.cast(learning_rate, variable.dtype)
            decay = self.hyperparameter(self.weight_decay)
            self.assign_sub(variable, ops.multiply(ops.multiply(variable, decay), rate))
        self.update_step(summed_duplicates(gradient), variable, learning_rate)

    def _fast_path_applies(self):
        if not (self.fast_path and self.fast_path_compatible and fast_path_enabled()):
            return False
        import tensorflow as tf
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util

        # Inside a step that XLA already compiles whole, a nested compiled call only adds a
        # boundary to the fusion XLA would do anyway.
        if control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()):
            return False
        return not tf.distribute.has_strategy()

    def _fused_update(self, variables):
        import tensorflow as tf

        variables = [v.value if isinstance(v, keras.Variable) else v for v in variables]
        key = tuple(id(v) for v in variables)
        if key not in self._fused_updates:

            @tf.function(jit_compile=True, autograph=False)
            def update(grads, learning_rate):
                self._update_variables(grads, variables, learning_rate)

            self._fused_updates[key] = update
        return self._fused_updates[key]

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
