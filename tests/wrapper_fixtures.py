"""The references of SAM, ScheduleFree and the gradient transforms, recorded once by
``tests/fixtures/record_wrappers.py`` (float64, 200 steps of ``tests/reference_problem.py`` on
:data:`SHAPES`: a bias, a dense kernel, a 3x3 convolution kernel, a 6x8 kernel)."""

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "wrappers_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "wrappers_trajectories.npz")
SHAPES = tuple(tuple(s) for s in MANIFEST["shapes"])
CHECKPOINTS = MANIFEST["checkpoint_steps"]


def configs(source):
    return sorted(k for k, c in MANIFEST["configs"].items() if source in str(c["source"]))


def expected(config, step, kind="param"):
    return [ARRAYS[f"{config}/step{step}/{kind}{i}"] for i in range(len(SHAPES))]
