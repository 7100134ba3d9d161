"""The fast path: TensorFlow-specific machinery that runs a rule's own ``update_step`` in fewer,
larger kernels. It changes how a step is computed, never what is stored: the optimizer's
variables keep Keras's per-variable layout (``fast_path="grouped"`` adds flat buffers for small
variables, see ``_grouping.py``).

Keras runs ``update_step`` once per variable, about a dozen separate element-wise kernels
each, every one a full pass over memory when the step is not XLA-compiled (Keras's default on
CPU and under ``tf.distribute``), each with a fixed cost that dominates on small variables.
The fast path runs the same code:

* **Large variables** (at least ``FAST_PATH_MIN_SIZE`` elements) inside a
  ``tf.function(jit_compile=True)``, so XLA fuses each rule into one pass; the call is made when
  it would hold ``FUSED_MIN_TOTAL_SIZE`` elements in all, split into one call per core
  (:meth:`FastPath._fused_parts`), and into one call per phase for a rule that declares
  ``update_phases``.
* **Every variable**, for a rule with a ``training_op`` (a TensorFlow kernel that computes its
  step exactly), by that one kernel, without fused call.

It steps aside for sparse gradients of large variables, under any ``tf.distribute`` strategy,
on other backends, inside a step that XLA already compiles whole, and when turned off
(``fast_path=False`` or the environment variable ``TFOPTIM_FAST_PATH=0``). Measurements:
``docs/performance.md``.
"""

import os

import keras
import numpy as np

from tfoptim.optimizers.graph import dense, inside_xla, is_sparse, tf_variable

#: Variables with at least this many elements go to the fused call; below it XLA's fixed cost
#: per variable outweighs the passes it saves.
FAST_PATH_MIN_SIZE = 16384
#: The fused call has a fixed launch cost: it runs only when the variables sent to it hold at
#: least this many elements in all (1 MiB of float32); below, Keras's kernels are faster.
FUSED_MIN_TOTAL_SIZE = 2**18

_FAST_PATH_ENV = "TFOPTIM_FAST_PATH"


def fast_path_enabled():
    """False when the environment variable ``TFOPTIM_FAST_PATH`` is ``0``/``false``/``off``."""
    return os.environ.get(_FAST_PATH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _cores():
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _size(variable):
    return int(np.prod(variable.shape))


class FastPath:
    """The fast-path part of :class:`tfoptim.optimizers.base.Optimizer`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Compiled updates, keyed by the variables they close over. Set through object so
        # Keras's trackable machinery does not try to save the tf.functions.
        object.__setattr__(self, "_fused_updates", {})

    def build(self, variables):
        super().build(variables)
        object.__setattr__(self, "_training_op", self.training_op() if self._fast_path_allowed() else None)

    def _fast_path_allowed(self):
        """Whether this optimizer may use the fast path at all (decided at build)."""
        return (
            bool(self.fast_path)
            and self.fast_path_compatible
            and fast_path_enabled()
            and keras.backend.backend() == "tensorflow"
        )

    def _fast_path_applies(self):
        """Whether this step may take it (decided while tracing the step)."""
        if not self._fast_path_allowed():
            return False
        import tensorflow as tf

        # Inside a step that XLA already compiles whole, a nested compiled call only adds a
        # boundary to the fusion XLA would do anyway.
        return not inside_xla() and not tf.distribute.has_strategy()

    def _steps_by_training_op(self, variable, gradient):
        return (
            getattr(self, "_training_op", None) is not None
            and not is_sparse(gradient)
            and keras.backend.standardize_dtype(variable.dtype) in ("float32", "float64")
            and not inside_xla()
        )

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        learning_rate = self.step_learning_rate(learning_rate)
        if self._reduces_over_variables:
            # The step touches every element anyway (the slots decay everywhere), and dense
            # gradients keep the fused call's signature fixed.
            grads = [dense(g) for g in grads]
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
            if _size(v) >= FAST_PATH_MIN_SIZE and not is_sparse(g):
                fused.append((g, v))
                fused_size += _size(v)
            else:
                rest.append((g, v))
        if fused_size < FUSED_MIN_TOTAL_SIZE:
            fused, rest = [], fused + rest
        if self._reduces_over_variables and fused:
            # The statistics need every variable before any is updated: one call does all.
            fused, rest = fused + rest, []
        if rest:
            super()._backend_update_step([g for g, _ in rest], [v for _, v in rest], learning_rate)
        learning_rate = tf.convert_to_tensor(learning_rate)
        for part in self._fused_parts(fused, fused_size):
            for call in self._fused_update([v for _, v in part]):
                call([g for g, _ in part], learning_rate)
        scatter()

    def _fused_parts(self, fused, total_size):
        """The fused call's ``(gradient, variable)`` pairs as separate calls, one per core, each
        of at least ``FUSED_MIN_TOTAL_SIZE`` elements, balanced by size: calls over disjoint
        variables run side by side on TensorFlow's executor threads. A rule that reduces over
        all variables needs them in one call."""
        if not fused:
            return []
        count = min(len(fused), _cores(), total_size // FUSED_MIN_TOTAL_SIZE)
        if self._reduces_over_variables or count <= 1:
            return [fused]
        parts, loads = [[] for _ in range(count)], [0] * count
        for pair in sorted(fused, key=lambda pair: -_size(pair[1])):
            lightest = loads.index(min(loads))
            parts[lightest].append(pair)
            loads[lightest] += _size(pair[1])
        return parts

    def _fused_update(self, variables):
        """The fused calls over ``variables``, in order: one per ``update_phases`` entry (one
        for a rule that reduces over all variables or adds ``coupled_weight_decay``)."""
        import tensorflow as tf

        variables = [tf_variable(v) for v in variables]
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
                    rate = self.variable_learning_rate(variable, learning_rate)
                    self._apply_decoupled_weight_decay(variable, rate)
                    phases[0](gradient, variable, rate)

            def later_phase(phase):
                def step(grads, learning_rate):
                    for gradient, variable in zip(grads, variables):
                        phase(gradient, variable, self.variable_learning_rate(variable, learning_rate))

                return step

            steps = (first_phase, *(later_phase(phase) for phase in phases[1:]))
        compiled = tuple(tf.function(step, jit_compile=True, autograph=False) for step in steps)
        self._fused_updates[key] = compiled
        return compiled
