"""The base class every tfoptim optimizer derives from: what a rule author reads.

It is a ``keras.optimizers.Optimizer``, so everything Keras does around an update rule
(``weight_decay``, clipping, ``use_ema``, ``gradient_accumulation_steps``,
``loss_scale_factor``, ``tf.distribute``, ``.keras`` saving) works unchanged. A rule declares
its arguments in ``__init__``, its slots in ``build`` and its step in ``update_step`` (or
``update_phases``); this class adds what each rule would otherwise repeat:

* **Validation and config.** ``get_config`` is built from the subclass's constructor signature,
  so it holds exactly the constructor arguments; every argument is checked at construction.
* **Weight decay, both kinds.** Keras's ``weight_decay`` is the decoupled kind
  (``theta <- theta - lr * wd * theta``, as in AdamW); ``coupled_weight_decay`` adds L2 to the
  gradient, ``g <- g + lambda * theta`` (the ``weight_decay`` of ``torch.optim.SGD/Adagrad/
  RMSprop/Adam``). Both use the weights the gradient was taken at.
* **Parameter groups** (``learning_rate_multipliers``, ``weight_decay_overrides``): per-variable
  rates and decoupled decay chosen by patterns on the variables' paths; see
  :mod:`tfoptim.optimizers.parameter_groups` for the rule and the layer-wise decay helper.
* **Hyperparameter precision** (``exact_hyperparameters``, :meth:`Optimizer.hyperparameter`).
* **Rules that reduce over all variables** (:meth:`Optimizer.collect_statistics`).
* **Distribution**: under ``tf.distribute`` each variable is stepped in its own device context
  on the all-reduced gradient.

The rest lives beside it: non-finite skipping (``_nonfinite.py``), the fast path
(``_fast_path.py``), grouped small variables (``_grouping.py``), and the graph helpers rules
may use (:mod:`tfoptim.optimizers.graph`).
"""

import inspect

import keras
import numpy as np
from keras import ops

from tfoptim._validation import check_bool, check_learning_rate, check_non_negative, check_positive
from tfoptim.optimizers._fast_path import FastPath
from tfoptim.optimizers._grouping import SmallVariableGroups
from tfoptim.optimizers._nonfinite import NonFiniteSkipping
from tfoptim.optimizers.graph import dense, summed_duplicates
from tfoptim.optimizers.parameter_groups import check_patterns, first_match

#: ``moment_dtype`` values of the rules that take it (see :meth:`Optimizer.add_moment_variables`).
MOMENT_DTYPES = ("float32", "bfloat16")


class Optimizer(SmallVariableGroups, FastPath, NonFiniteSkipping, keras.optimizers.Optimizer):
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
            precision. Only float64 variables see a difference. The PyTorch ports use True.
        fast_path: ``True`` (default): large variables updated in XLA-compiled calls, or every
            variable by a TensorFlow training kernel that computes the rule exactly; the state
            keeps Keras's per-variable layout. ``"grouped"``: also keeps the slots of small
            variables as flat buffers stepped together (faster on models with many small
            variables; ``optimizer.variables`` then lists the buffers, while saved files and
            checkpoints keep Keras's layout). ``False``: Keras's per-variable loop. The
            environment variable ``TFOPTIM_FAST_PATH=0`` turns it off everywhere.
        learning_rate_multipliers: ``{pattern: factor}``, factors >= 0: a variable whose
            ``path`` the first matching pattern (``re.search``, in the dict's order) names
            steps with ``factor`` times the rate (its decoupled decay too, which scales with the
            rate). Unmatched variables: factor 1. None (default): every variable the same.
        weight_decay_overrides: ``{pattern: coefficient}``, coefficients >= 0: the decoupled
            ``weight_decay`` of a variable whose ``path`` the first matching pattern names
            (0 excludes it). Variables Keras's ``exclude_from_weight_decay`` names keep no
            decay; unmatched variables keep ``weight_decay``. Not for rules that apply the
            decay inside their own step in another form (``weight_decay_in_rule`` and not
            :attr:`per_variable_weight_decay`).
        **kwargs: the common Keras optimizer arguments (``weight_decay``, ``clipnorm``,
            ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency``, ``loss_scale_factor``, ``gradient_accumulation_steps``,
            ``name``: by default Keras's unique name from the class, ``adam``, ``adam_1``, ...).
            Unknown keywords raise ``ValueError``.
    """

    #: False for a rule that XLA compiles badly: the fast path leaves all its variables to
    #: Keras's per-variable loop (SOAP: XLA's CPU eigendecomposition is slower than LAPACK's
    #: and less accurate).
    fast_path_compatible = True
    #: True for a rule that applies Keras's decoupled ``weight_decay`` itself, where its
    #: reference implementation does (SOAP: after the step); the base then leaves it out.
    weight_decay_in_rule = False
    #: True for a rule that treats every element alike, given per-step scalars: applied to the
    #: concatenation of several variables it gives each the same numbers, so
    #: ``fast_path="grouped"`` may keep the slots of small variables in flat buffers. False
    #: for per-variable norms (LARS, NovoGrad) and matrix structure (SOAP).
    elementwise = True
    #: True for a rule that steps only the rows a sparse gradient holds (LazyAdam). In a group
    #: of small variables, a member's sparse gradient then stays sparse: its rows become the
    #: flat buffer's elements. Otherwise a grouped variable's sparse gradient is made dense,
    #: which an element-wise rule without lazy rows steps to the same numbers.
    lazy_sparse = False
    #: True for a rule whose ``update_step`` never reads the variable's value and writes it
    #: once, with ``assign_add`` or ``assign_sub`` (SGD, Adagrad, RMSprop, the Adam family,
    #: Lion, COCOB): a group of small variables is then stepped from zero and the increment
    #: added to each member, which saves reading them into the group. ``theta + (0 - u)`` is
    #: ``theta - u`` exactly.
    increment_only = False
    #: True for a ``weight_decay_in_rule`` rule that reads its coefficient per variable from
    #: :meth:`weight_decay_of` (so ``weight_decay_overrides`` reach it: Adan, ADOPT, MADGRAD,
    #: SOAP).
    per_variable_weight_decay = False

    def __init__(
        self,
        learning_rate,
        coupled_weight_decay=0.0,
        skip_nonfinite=False,
        exact_hyperparameters=False,
        fast_path=True,
        learning_rate_multipliers=None,
        weight_decay_overrides=None,
        **kwargs,
    ):
        if kwargs.get("weight_decay") is not None:
            check_non_negative("weight_decay", kwargs["weight_decay"])
        for name in ("clipnorm", "clipvalue", "global_clipnorm"):
            if kwargs.get(name) is not None:
                check_positive(name, kwargs[name])
        if not (isinstance(fast_path, (bool, np.bool_)) or fast_path == "grouped"):
            raise ValueError(f"`fast_path` must be True, False or 'grouped'. Received: fast_path={fast_path!r}")
        super().__init__(learning_rate=check_learning_rate(learning_rate), **kwargs)
        self.coupled_weight_decay = check_non_negative("coupled_weight_decay", coupled_weight_decay)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.exact_hyperparameters = bool(exact_hyperparameters)
        self.fast_path = fast_path if fast_path == "grouped" else bool(fast_path)
        self.learning_rate_multipliers = check_patterns("learning_rate_multipliers", learning_rate_multipliers)
        self.weight_decay_overrides = check_patterns("weight_decay_overrides", weight_decay_overrides)
        if self.weight_decay_overrides and self.weight_decay_in_rule and not self.per_variable_weight_decay:
            raise ValueError(
                f"`weight_decay_overrides` is not supported by {type(self).__name__}, whose rule "
                "applies its weight decay itself. Received: "
                f"weight_decay_overrides={self.weight_decay_overrides!r}"
            )
        # Each variable's (rate factor, decay coefficient), by variable key, filled at build.
        object.__setattr__(self, "_variable_settings", {})

    # -- the rule --------------------------------------------------------------------------

    def hyperparameter(self, value):
        """``value`` as the rule uses it: rounded through float32 like Keras's casts, unless
        ``exact_hyperparameters``. A Python float: combine it with tensors directly or through
        ``ops.convert_to_tensor(value, dtype)``; ``ops.cast(value, dtype)`` would make it a
        float32 tensor first."""
        return float(value) if self.exact_hyperparameters else float(np.float32(value))

    def init_cautious(self, cautious):
        """Checks and stores ``cautious`` (see :func:`tfoptim.optimizers._moments.cautious`)."""
        self.cautious = check_bool("cautious", cautious)
        # The mask's mean runs over each variable: grouped small variables would share it.
        self.elementwise = not self.cautious

    def add_moment_variables(self, variables, names, **kwargs):
        """``add_optimizer_variables(variables, names, **kwargs)`` for a rule's moments: stored
        in ``self.moment_dtype``.

        ``"float32"`` (the default): each slot takes its variable's dtype, as Keras's slots do
        (float32 for float32 and mixed-precision models, float64 for float64 variables).
        ``"bfloat16"``: every moment slot is bfloat16, half the bytes of float32. The rule's
        arithmetic stays in the variable's dtype: it reads a moment through
        ``ops.cast(slot, dtype)`` and writes the new value rounded to bfloat16 (round to
        nearest even), with :func:`tfoptim.optimizers._moments.store`."""
        if self.moment_dtype == "float32":
            return self.add_optimizer_variables(variables, names, **kwargs)
        object.__setattr__(self, "_slot_dtype", self.moment_dtype)
        try:
            return self.add_optimizer_variables(variables, names, **kwargs)
        finally:
            object.__setattr__(self, "_slot_dtype", None)

    def add_variable(self, *args, **kwargs):
        # Inside add_moment_variables, every slot (per variable or a grouped buffer) takes the
        # moments' dtype.
        if getattr(self, "_slot_dtype", None) is not None:
            kwargs["dtype"] = self._slot_dtype
        return super().add_variable(*args, **kwargs)

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
        old momentum): XLA does not update such a slot in place but writes a fresh buffer
        every step. A phase sees the variables as the earlier phases left them, so no phase may
        need an old value an earlier one overwrote: the old momentum's readers come first. Not
        used with ``coupled_weight_decay`` (the gradient then depends on the weights the first
        phase changes) nor by rules that reduce over all variables.
        """
        return (self.update_step,)

    def training_op(self):
        """One of TensorFlow's fused training kernels (``tf.raw_ops.ResourceApply*``) that
        computes this rule's step, in this configuration, *exactly*: the same operations on the
        same operands in the same order as :meth:`update_step`. Returns a function
        ``(gradient, variable, learning_rate)`` that applies it (both tensors already in the
        variable's dtype), or None: the default, and the answer for any configuration no kernel
        matches. On the fast path, outside XLA, it then steps every variable with dense
        float32/float64 gradients (one kernel instead of several per variable)."""
        return None

    def step_learning_rate(self, learning_rate):
        """The rate this step applies, given the scheduled ``learning_rate`` (a scalar tensor).

        Identity here. A rule whose reference scales the rate itself (RAdam's and AdaBelief's
        TFA warm-up) overrides it: the decoupled ``weight_decay`` and every ``update_step``
        then see the scaled rate."""
        return learning_rate

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

    # -- one step: weight decay, the rule, distribution ------------------------------------

    def _apply_weight_decay(self, variables):
        # Decoupled decay runs per variable in _decay_and_update, after the coupled term has read
        # the weights the gradient was taken at.
        pass

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
        gradient = dense(gradient)
        return ops.add(
            gradient, ops.multiply(ops.cast(variable, gradient.dtype), self.coupled_weight_decay)
        )

    def build(self, variables):
        # Decided from the model's variables (keras.Variable, with their paths): the update
        # may be handed the backend's variable, under tf.distribute, say.
        self._variable_settings.update((self._var_key(v), self._settings(v)) for v in variables)
        super().build(variables)

    def settings_of(self, variable):
        """``(rate factor, decoupled decay coefficient)`` of ``variable``: from
        ``learning_rate_multipliers`` and ``weight_decay_overrides`` (the first pattern that
        matches its path), Keras's ``exclude_from_weight_decay`` and ``weight_decay``. Python
        floats, decided when the optimizer is built and fixed for its life: the compiled step
        closes over them."""
        key = self._var_key(variable)
        if key not in self._variable_settings:
            self._variable_settings[key] = self._settings(variable)
        return self._variable_settings[key]

    def _settings(self, variable):
        group = getattr(self, "_proxy_groups", {}).get(self._var_key(variable))
        if group is not None:
            return group.settings
        path = getattr(variable, "path", variable.name)
        factor = first_match(self.learning_rate_multipliers, path, 1.0)
        if not self._use_weight_decay(variable):
            return factor, 0.0
        return factor, float(first_match(self.weight_decay_overrides, path, self.weight_decay or 0.0))

    def weight_decay_of(self, variable):
        """The decoupled weight decay coefficient of ``variable`` (0.0 for none): what a
        ``per_variable_weight_decay`` rule applies."""
        return self.settings_of(variable)[1]

    def variable_learning_rate(self, variable, learning_rate):
        """``learning_rate`` times ``variable``'s factor from ``learning_rate_multipliers``."""
        factor = self.settings_of(variable)[0]
        if factor == 1.0:
            return learning_rate
        return ops.multiply(learning_rate, self.hyperparameter(factor))

    def _decay_and_update(self, variable, gradient, learning_rate):
        learning_rate = self.variable_learning_rate(variable, learning_rate)
        self._apply_decoupled_weight_decay(variable, learning_rate)
        if self._steps_by_training_op(variable, gradient):
            dtype = variable.dtype
            self._training_op(ops.cast(gradient, dtype), variable, ops.cast(learning_rate, dtype))
        else:
            self.update_step(summed_duplicates(gradient), variable, learning_rate)

    def _apply_decoupled_weight_decay(self, variable, learning_rate):
        coefficient = self.weight_decay_of(variable)
        if coefficient and not self.weight_decay_in_rule:
            rate = ops.cast(learning_rate, variable.dtype)
            decay = self.hyperparameter(coefficient)
            self.assign_sub(variable, ops.multiply(ops.multiply(variable, decay), rate))

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
            learning_rate_multipliers=self.learning_rate_multipliers,
            weight_decay_overrides=self.weight_decay_overrides,
        )
        for name in self._own_arguments():
            config[name] = getattr(self, name)
        return config
