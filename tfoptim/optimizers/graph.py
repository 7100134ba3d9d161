"""Graph helpers for update rules: conditional updates that run on every Keras backend,
finiteness checks, and sparse gradients.

A rule's ``update_step`` must not branch in Python on a tensor's value (it would retrace, or
fail under ``tf.function``); these helpers are the branches it may take instead.
"""

import keras
from keras import ops


def tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (a raw ``tf.Variable`` is returned as is:
    models built from ``tf.Module``s hold those, and Keras optimizers train them)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def resource(variable):
    """The resource handle of a Keras or TensorFlow variable, as ``tf.raw_ops.ResourceApply*``
    take it (under a strategy's update, the local copy's)."""
    return tf_variable(variable).handle


def is_sparse(gradient):
    """True for an ``IndexedSlices``-like gradient (an Embedding's)."""
    return hasattr(gradient, "indices") and hasattr(gradient, "values")


def dense(gradient):
    """``gradient`` as a dense tensor (Keras's ``convert_to_tensor`` passes IndexedSlices on)."""
    if not is_sparse(gradient):
        return gradient
    import tensorflow as tf

    return tf.convert_to_tensor(gradient)


def summed_duplicates(gradient):
    """A sparse gradient with each row once, its duplicates' values added up.

    An Embedding looked up twice in a batch sends the same row twice. Rules that square the
    gradient (Adagrad, RMSprop, Adam, ...) must see the row's total ``(g1 + g2)**2``, as the
    dense gradient gives, not ``g1**2 + g2**2``: Keras's own optimizers get this wrong."""
    if not is_sparse(gradient):
        return gradient
    import tensorflow as tf

    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


def all_finite(grads):
    """A scalar boolean tensor: every gradient entry is finite."""
    checks = [ops.all(ops.isfinite(g.values if is_sparse(g) else g)) for g in grads if g is not None]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


def inside_xla():
    """True while tracing a TensorFlow step that XLA compiles whole."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def conditional_update(condition, update, variables, otherwise=None):
    """Runs ``update()`` when the scalar boolean ``condition`` holds, else ``otherwise()`` (when
    given). The branches change variables only by assigning them, and ``variables`` lists every
    variable they read or assign.

    On TensorFlow this is a ``cond``: the branch not taken reads and writes nothing. A JAX
    branch must be a pure function (an assignment inside it would leak a tracer, or take effect
    whichever branch runs), so there each branch runs in its own ``keras.StatelessScope`` over
    ``variables``, the ``cond`` returns their new values, and these are assigned after it.
    """
    if keras.backend.backend() == "tensorflow":
        ops.cond(condition, update, otherwise or (lambda: None))
        return
    current = [ops.convert_to_tensor(v) for v in variables]

    def values_after(branch):
        def run():
            with keras.StatelessScope(state_mapping=list(zip(variables, current))) as scope:
                branch()
            return [scope.get_current_value(v) for v in variables]

        return run

    new = ops.cond(condition, values_after(update), values_after(otherwise) if otherwise else lambda: current)
    for variable, value in zip(variables, new):
        variable.assign(value)
