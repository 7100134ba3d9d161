"""tfoptim's rules on Keras's JAX backend follow their TensorFlow trajectories.

The JAX side runs in one subprocess (``tests/run_on_jax.py``: a process has one Keras backend), as a
JAX training step does: ``stateless_apply`` under ``jax.jit``. The TensorFlow side is the path
every other test checks against its references, so a case that agrees here agrees with them.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend_cases import CASES, CHECKPOINTS, FIT_CASES, fit_run, make
from trajectory import assert_close, floatx, run

# The same operations, compiled by XLA on one side and run by TensorFlow's kernels (or the
# fast path's XLA calls, fused differently) on the other: reassociation and fused
# multiply-adds, grown over 200 steps.
RTOL = 1e-10
LOOSER = {
    # Keras computes a schedule in float32 on TensorFlow (a Python float becomes a float32
    # tensor there) and in floatx on JAX: the rate differs by float32 rounding, ~3e-8.
    "dynamic_gradient_descent": 1e-7,
    # The layer norms, summed in another order, differ by 1e-16 per step, and LARS's orbit
    # about its optimum amplifies them (as in test_lars.py): measured 1.1e-9 at step 200.
    "lars": 1e-8,
    # XLA's eigendecomposition and QR against LAPACK's (TensorFlow): bases equal to ~1e-15,
    # grown through the projections: measured 8e-10 at step 200.
    "soap": 1e-8,
    # d, a ratio of sums over every element, amplifies last-bit differences near the optimum:
    # measured 1.7e-11 at step 200, and a rate moved by 1 to 34 ulps moves TensorFlow's own
    # trajectory by 2e-11 to 6e-10 there.
    "dadapt_adam": 1e-9,
}
# Trajectories that amplify last-bit differences so fast that only the last checkpoint needs
# more room (the earlier ones keep RTOL): ASAM at rho 0.5 agrees to 1e-16 at steps 1 and 10
# and differs by 1.8e-4 at step 200, where a 1e-15 relative change of TensorFlow's own initial
# weights moves its step-200 weights by 5.7e-6 (3.6e-14 at step 100), and JAX's rounding
# differs at every step, not once.
LOOSER_AT_END = {"asam": 1e-3}
# Keras's training steps themselves differ between the backends in float64: the same fit with
# plain GradientDescent (no wrapper, the rule exact to 1e-10 above) ends 6.8e-7 apart element-
# wise, Adam 1.0e-7; a wrong rule or the wrong evaluation weights move these weights by 1e-2.
FIT_RTOL = 1e-5


def _fit_cases(session):
    """The ``FIT_CASES`` this run's selected tests check (each ``model.fit`` on JAX compiles
    its own steps: the default tier needs one)."""
    prefix = f"{test_model_fit_on_jax_follows_tensorflow.__name__}["
    return [case for case in FIT_CASES if any(item.name == f"{prefix}{case}]" for item in session.items)]


def _run_on_jax(output, fit_cases):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    partial = output.with_suffix(".partial.npz")
    subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "run_on_jax.py"), str(partial), *fit_cases],
        check=True,
        env=env,
        timeout=600,
    )
    partial.replace(output)  # whole or not at all, for the workers waiting on it


@pytest.fixture(scope="session")
def jax_trajectories(tmp_path_factory, request):
    """One JAX subprocess per test run. Under pytest-xdist each worker asks for it: the first to
    claim it runs it into the run's shared temporary folder, the others wait for its file."""
    fit_cases = _fit_cases(request.session)
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        output = tmp_path_factory.mktemp("jax") / "trajectories.npz"
        _run_on_jax(output, fit_cases)
        return np.load(output)
    shared = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    output, failed = shared / "jax_trajectories.npz", shared / "jax_trajectories.failed"
    try:
        os.close(os.open(shared / "jax_trajectories.claim", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        deadline = time.monotonic() + 660
        while not output.exists():
            if failed.exists() or time.monotonic() > deadline:
                pytest.fail("the JAX subprocess failed in another worker (its error is reported there)")
            time.sleep(0.5)
        return np.load(output)
    try:
        _run_on_jax(output, fit_cases)
    except BaseException:
        failed.touch()
        raise
    return np.load(output)


@pytest.mark.parametrize("case", list(CASES))
def test_jax_follows_tensorflow(case, jax_trajectories):
    with floatx("float64"):
        ours = run(make(case), CHECKPOINTS)
    for step in CHECKPOINTS:
        count = len(ours[step])
        expected = [jax_trajectories[f"{case}/step{step}/param{i}"] for i in range(count)]
        end = LOOSER_AT_END.get(case) if step == max(CHECKPOINTS) else None
        assert_close(expected, ours[step], end or LOOSER.get(case, RTOL))


def test_jax_skips_a_nonfinite_step(jax_trajectories):
    """``skip_nonfinite`` under ``jax.jit``: weights, slots and ``iterations`` untouched."""
    np.testing.assert_array_equal(jax_trajectories["skip/after"], jax_trajectories["skip/before"])
    assert int(jax_trajectories["skip/skipped_steps"]) == 1
    assert int(jax_trajectories["skip/iterations"]) == 0


@pytest.mark.variants("sam")
@pytest.mark.parametrize("case", FIT_CASES)
def test_model_fit_on_jax_follows_tensorflow(case, jax_trajectories):
    """The wrappers in Keras's own training step on each backend: weights after 18 steps and
    the validation losses at the evaluation weights, epoch by epoch."""
    with floatx("float64"):
        weights, val_loss = fit_run(make(case))
    expected = [jax_trajectories[f"fit/{case}/weight{i}"] for i in range(len(weights))]
    assert_close(expected, weights, FIT_RTOL)
    assert_close([jax_trajectories[f"fit/{case}/val_loss"]], [val_loss], FIT_RTOL)
