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

from tfoptim._validation import check_learning_rate, check_non_negative, check_positive
from tfoptim.optimizers._fast_path import FastPath
from tfoptim.optimizers._grouping import SmallVariableGroups
from tfoptim.optimizers._nonfinite import NonFiniteSkipping
from tfoptim.optimizers.graph import dense, summed_duplicates


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
        if not (isinstance(fast_path, (bool, np.bool_)) or fast_path == "grouped"):
            raise ValueError(f"`fast_path` must be True, False or 'grouped'. Received: fast_path={fast_path!r}")
        super().__init__(learning_rate=check_learning_rate(learning_rate), **kwargs)
        self.coupled_weight_decay = check_non_negative("coupled_weight_decay", coupled_weight_decay)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.exact_hyperparameters = bool(exact_hyperparameters)
        self.fast_path = fast_path if fast_path == "grouped" else bool(fast_path)

    # -- the rule --------------------------------------------------------------------------

    def hyperparameter(self, value):
        """``value`` as the rule uses it: rounded through float32 like Keras's casts, unless
        ``exact_hyperparameters``. A Python float: combine it with tensors directly or through
        ``ops.convert_to_tensor(value, dtype)``; ``ops.cast(value, dtype)`` would make it a
        float32 tensor first."""
        return float(value) if self.exact_hyperparameters else float(np.float32(value))

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
