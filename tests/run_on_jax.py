"""Runs every case of ``backend_cases.py`` on Keras's JAX backend; writes the trajectories to an .npz.

Usage: ``python tests/run_on_jax.py OUTPUT.npz [FIT_CASE ...]`` (sets ``KERAS_BACKEND=jax`` and float64 itself). The
steps run as a JAX training step does: ``optimizer.stateless_apply`` inside ``jax.jit``, the
gradient of the reference problem computed from the current parameters; and the wrappers named
(of ``FIT_CASES``) through a literal ``model.fit``.
"""

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_ENABLE_X64"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from backend_cases import CASES, CHECKPOINTS, FIT_CASES, fit_run, make  # noqa: E402
from reference_problem import gradient, initial_problem  # noqa: E402


def run(optimizer, checkpoints=CHECKPOINTS):
    params, targets, curvatures = initial_problem()
    variables = [keras.Variable(p, name=f"param{i}") for i, p in enumerate(params)]
    optimizer.build(variables)

    @jax.jit
    def advance(steps, trainable, state):
        def step(_, carry):
            trainable, state = carry
            grads = [gradient(p, t, c) for p, t, c in zip(trainable, targets, curvatures)]
            trainable, state = optimizer.stateless_apply(state, grads, trainable)
            return list(trainable), list(state)

        return jax.lax.fori_loop(0, steps, step, (trainable, state))

    trainable = [v.value for v in variables]
    state = [v.value for v in optimizer.variables]
    results, done = {}, 0
    for checkpoint in checkpoints:
        trainable, state = advance(checkpoint - done, trainable, state)
        done = checkpoint
        results[checkpoint] = [np.asarray(p) for p in trainable]
    return results


def skipped_step():
    """One jitted step of ``Adam(skip_nonfinite=True)`` on a NaN gradient: the weights before
    and after it, ``skipped_steps`` and ``iterations``."""
    variable = keras.Variable(np.arange(4.0))
    optimizer = make("adam_skip_nonfinite")
    optimizer.build([variable])
    state = [v.value for v in optimizer.variables]
    step = jax.jit(lambda grads, trainable, state: optimizer.stateless_apply(state, grads, trainable))
    (after,), state = step([np.array([1.0, np.nan, 1.0, 1.0])], [variable.value], state)
    for v, value in zip(optimizer.variables, state):
        v.assign(value)
    return {
        "skip/before": np.asarray(variable.value),
        "skip/after": np.asarray(after),
        "skip/skipped_steps": np.asarray(optimizer.skipped_steps.value),
        "skip/iterations": np.asarray(optimizer.iterations.value),
    }


def main(output, fit_cases=()):
    keras.config.set_floatx("float64")
    arrays = skipped_step()
    for case in CASES:
        for step, params in run(make(case)).items():
            for i, p in enumerate(params):
                arrays[f"{case}/step{step}/param{i}"] = p
    for case in fit_cases:
        if case not in FIT_CASES:
            raise SystemExit(f"unknown fit case {case!r}; choose from {FIT_CASES}")
        weights, val_loss = fit_run(make(case))
        for i, w in enumerate(weights):
            arrays[f"fit/{case}/weight{i}"] = w
        arrays[f"fit/{case}/val_loss"] = val_loss
    np.savez(output, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
