"""Runs an optimizer along the reference problem's trajectory (see ``reference_problem``)."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from reference_problem import SHAPES, STEPS, gradient, initial_problem

#: Shapes that take every branch of the fast path: eleven small variables (updated together as
#: one flat buffer of 16,414 elements) and two above ``FAST_PATH_MIN_SIZE``, all three sent to
#: the fused call (306,414 elements in all, above ``FUSED_MIN_TOTAL_SIZE``).
MIXED_SHAPES = ((3,), (4, 5), (7,), *[(2048,)] * 8, (300, 300), (200000,))


@contextlib.contextmanager
def floatx(dtype):
    """Sets Keras's floatx and layer dtype policy: the optimizer's learning-rate variable and a
    model's weights are then created in ``dtype`` (the policy, once used, ignores floatx)."""
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(previous_policy)


def run(optimizer, checkpoints=(STEPS,), dtype="float64", shapes=SHAPES, jit_compile=False):
    """Applies ``optimizer`` for ``max(checkpoints)`` steps with state-dependent gradients.

    Returns ``{step: [param arrays]}`` at every checkpoint. The loop runs inside one
    ``tf.function`` (XLA-compiled with ``jit_compile``), as a training step would.
    """
    params, targets, curvatures = initial_problem(shapes=shapes)
    variables = [keras.Variable(p.astype(dtype), name=f"param{i}") for i, p in enumerate(params)]
    targets = [tf.constant(t, dtype) for t in targets]
    curvatures = [tf.constant(c, dtype) for c in curvatures]
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def advance(steps):
        for _ in tf.range(steps):
            grads = [gradient(v.value, t, c) for v, t, c in zip(variables, targets, curvatures)]
            optimizer.apply(grads, variables)

    results, done = {}, 0
    for step in sorted(checkpoints):
        advance(tf.constant(step - done))
        done = step
        results[step] = [v.numpy().copy() for v in variables]
    return results


def assert_close(actual, expected, rtol):
    """Each variable's max abs difference is at most ``rtol`` times its largest entry."""
    for i, (a, e) in enumerate(zip(actual, expected)):
        scale = np.max(np.abs(e))
        error = np.max(np.abs(a - e)) / scale
        assert error <= rtol, f"param{i}: relative difference {error:.3e} > {rtol:.0e}"


def assert_fast_path_follows_slow_path(make, steps, rtol):
    """``make(fast_path)``'s float64 trajectories over ``MIXED_SHAPES`` agree to ``rtol`` at
    step 1 and ``steps``: fused by XLA and grouped into flat buffers (``fast_path="grouped"``,
    which takes every branch of ``fast_path=True`` too), or Keras's per-variable loop. Returns
    the fast-path optimizer (one fused call per phase, checked) for further checks."""
    with floatx("float64"):
        fast_optimizer = make("grouped")
        fast = run(fast_optimizer, (1, steps), shapes=MIXED_SHAPES)
        slow = run(make(False), (1, steps), shapes=MIXED_SHAPES)
    (calls,) = fast_optimizer._fused_updates.values()
    # One XLA call per phase (Optimizer.update_phases), unless the step must stay whole.
    whole = fast_optimizer.coupled_weight_decay or fast_optimizer._reduces_over_variables
    assert len(calls) == (1 if whole else len(fast_optimizer.update_phases()))
    for step in (1, steps):
        assert_close(fast[step], slow[step], rtol)
    return fast_optimizer
