"""``tfoptim.compat.torch`` follows PyTorch's trajectories.

The references were recorded once from ``torch.optim`` (2.13.0, CPU, float64,
``foreach=False``) by ``tests/fixtures/record_torch_trajectories.py``; see
``tests/fixtures/torch_trajectories.json`` for the exact arguments. torch is not needed here.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from reference_problem import SHAPES, initial_problem
from tfoptim.compat import torch as torch_compat
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "torch_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "torch_trajectories.npz")
PORTED = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RAdam")
# Same formulas evaluated in another order (torch's addcdiv_, in-place sqrt): float64 rounding
# accumulated over 200 steps stays below 1e-12 relative.
RTOL = 1e-12
# Keras's InverseTimeDecay (PyTorch's lr_decay) evaluates in float32 whatever the model's dtype.
LOOSER = {"adagrad_lr_decay": 1e-7}


def torch_kwargs(config):
    kwargs = dict(config["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return kwargs


def test_fixture_problem_is_the_reference_problem():
    params, targets, curvatures = initial_problem(MANIFEST["problem_seed"])
    for i in range(len(SHAPES)):
        np.testing.assert_array_equal(ARRAYS[f"problem/param{i}"], params[i])
        np.testing.assert_array_equal(ARRAYS[f"problem/target{i}"], targets[i])
        np.testing.assert_array_equal(ARRAYS[f"problem/curvature{i}"], curvatures[i])


@pytest.mark.parametrize(
    "config_id",
    sorted(k for k, c in MANIFEST["configs"].items() if c["optimizer"] in PORTED),
)
def test_matches_pytorch_trajectory(config_id):
    config = MANIFEST["configs"][config_id]
    steps = MANIFEST["checkpoint_steps"]
    with floatx("float64"):
        optimizer = getattr(torch_compat, config["optimizer"])(**torch_kwargs(config))
        ours = run(optimizer, steps)
    for step in steps:
        expected = [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(len(SHAPES))]
        assert_close(ours[step], expected, LOOSER.get(config_id, RTOL))


@pytest.mark.parametrize("name", PORTED)
def test_defaults_are_pytorch_defaults(name):
    """A ported optimizer built with no arguments differs from Keras's twin where torch does."""
    expected = {
        "SGD": dict(learning_rate=0.001, momentum_buffer="gradient"),
        "Adagrad": dict(learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-10),
        "RMSprop": dict(learning_rate=0.01, rho=0.99, epsilon=1e-8, epsilon_inside_sqrt=False),
        "Adam": dict(learning_rate=0.001, epsilon=1e-8, bias_corrected_epsilon=True),
        "AdamW": dict(learning_rate=0.001, weight_decay=0.01, bias_corrected_epsilon=True),
        "RAdam": dict(learning_rate=0.001, epsilon=1e-8, degenerated_to_sgd=True, coupled_weight_decay=0.0),
    }[name]
    config = getattr(torch_compat, name)().get_config()
    for key, value in expected.items():
        assert config[key] == (value if isinstance(value, str) else pytest.approx(value)), key


INVALID = [
    (lambda: torch_compat.SGD(maximize=True), "maximize"),
    (lambda: torch_compat.SGD(lr=-1.0), "lr"),
    (lambda: torch_compat.Adam(betas=0.9), "betas"),
    (lambda: torch_compat.Adam(betas=(0.9, 1.0)), "betas\\[1\\]"),
    (lambda: torch_compat.AdamW(eps=0.0), "eps"),
    (lambda: torch_compat.Adagrad(lr_decay=-1.0), "lr_decay"),
    (lambda: torch_compat.SGD(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (lambda: torch_compat.SGD(nesterov=True), "Nesterov"),
    (lambda: torch_compat.RMSprop(alpha=1.0), "alpha"),
]


@pytest.mark.parametrize("call, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_name_the_pytorch_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
