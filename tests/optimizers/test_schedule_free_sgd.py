"""ScheduleFreeSGD follows the authors' implementation (``schedulefree`` 1.4.1).

The references were recorded once by ``tests/fixtures/record_averaging.py`` (float64, 200
steps of ``tests/reference_problem.py``; see ``averaging_trajectories.json``): both the
train-mode parameters ``y`` after every checkpoint step and the evaluation weights ``x``
(the parameters after the official ``optimizer.eval()``). ``SGDScheduleFree`` and the simpler
``SGDScheduleFreeReference`` (which stores x, y and z) give the same trajectory.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import tfoptim.optimizers as to
from reference_problem import SHAPES
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "averaging_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "averaging_trajectories.npz")
CONFIGS = sorted(k for k, c in MANIFEST["configs"].items() if c["source"].startswith("schedulefree"))
RENAMED = {"lr": "learning_rate", "weight_decay": "coupled_weight_decay"}
# The same arithmetic in another order (torch's lerp_, add_ with alpha): float64 rounding over
# 200 steps stays below 1e-13 relative.
RTOL = 1e-12


def expected(config, step, kind="param"):
    return [ARRAYS[f"{config}/step{step}/{kind}{i}"] for i in range(len(SHAPES))]


@pytest.mark.parametrize("eval_step", [10, 200])
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_schedulefree(config, eval_step):
    kwargs = {RENAMED.get(k, k): v for k, v in MANIFEST["configs"][config]["kwargs"].items()}
    steps = [s for s in MANIFEST["checkpoint_steps"] if s <= eval_step]
    with floatx("float64"):
        optimizer = to.ScheduleFreeSGD(**kwargs, exact_hyperparameters=True)
        ours = run(optimizer, steps)
        x = optimizer.evaluation_values(optimizer._trainable_variables)
    for step in steps:
        assert_close(ours[step], expected(config, step), RTOL)
    assert_close([np.asarray(v) for v in x], expected(config, eval_step, "eval"), RTOL)


def test_defaults_are_the_official_defaults():
    config = to.ScheduleFreeSGD().get_config()
    assert (config["learning_rate"], config["momentum"], config["warmup_steps"], config["r"],
            config["weight_lr_power"]) == (1.0, 0.9, 0, 0.0, 2.0)


def test_paper_average_without_warmup():
    """Constant rate, no warm-up: the average is the plain mean of the z iterates (c = 1/t)."""
    lr, momentum = 0.1, 0.9
    with floatx("float64"):
        optimizer = to.ScheduleFreeSGD(lr, momentum=momentum, exact_hyperparameters=True)
        (final,) = run(optimizer, (5,), shapes=((1,),)).values()
        x = np.asarray(optimizer.evaluation_values(optimizer._trainable_variables)[0])
    from reference_problem import gradient, initial_problem

    (p,), (t,), (c,) = initial_problem(shapes=((1,),))
    z, zs, y = p.copy(), [], p.copy()
    for _ in range(5):
        z = z - lr * gradient(y, t, c)
        zs.append(z)
        mean = np.mean(zs, axis=0)
        y = momentum * mean + (1 - momentum) * z
    np.testing.assert_allclose(final[0], y, rtol=1e-13)
    np.testing.assert_allclose(x, mean, rtol=1e-13)


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(momentum=0.0), "momentum"), (dict(momentum=1.0), "momentum"),
     (dict(warmup_steps=-1), "warmup_steps"), (dict(warmup_steps=1.5), "warmup_steps"),
     (dict(r=-1.0), "r"), (dict(weight_lr_power=-0.5), "weight_lr_power"),
     (dict(learning_rate=-1.0), "learning_rate")],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        to.ScheduleFreeSGD(**kwargs)


def test_fast_path_matches_slow_path():
    shapes = ((200, 100), (7,))
    with floatx("float64"):
        fast = run(to.ScheduleFreeSGD(0.1, warmup_steps=5), (30,), shapes=shapes)[30]
        slow = run(to.ScheduleFreeSGD(0.1, warmup_steps=5, fast_path=False), (30,), shapes=shapes)[30]
    assert_close(fast, slow, 1e-14)
