"""Reference trajectories recorded once from other libraries, and the check that tfoptim follows them.

A group's fixture is ``tests/fixtures/<group>_trajectories.npz`` (keys
``<config_id>/step<k>/param<i>``) plus its ``.json`` manifest (``checkpoint_steps``, and per
config the library, class and kwargs it was recorded with).
"""

import json
from pathlib import Path

import numpy as np

from trajectory import floatx, run

FIXTURES = Path(__file__).parent / "fixtures"


class Recorded:
    def __init__(self, group):
        self.manifest = json.loads((FIXTURES / f"{group}_trajectories.json").read_text())
        self.arrays = np.load(FIXTURES / f"{group}_trajectories.npz")
        self.steps = self.manifest["checkpoint_steps"]

    def config_ids(self, *class_names):
        """Every recorded config of the given reference classes."""
        return sorted(k for k, c in self.manifest["configs"].items() if c["optimizer"] in class_names)

    def expected(self, config_id, step):
        count = len([k for k in self.arrays.files if k.startswith(f"{config_id}/step{step}/")])
        return [self.arrays[f"{config_id}/step{step}/param{i}"] for i in range(count)]

    def relative_difference(self, config_id, make_optimizer):
        """The largest, over checkpoints and variables, of ``max|ours - theirs| / max|theirs|``
        along the float64 reference problem (``make_optimizer()`` is called under float64, so the
        learning rate is a float64 variable)."""
        with floatx("float64"):
            ours = run(make_optimizer(), self.steps)
        return max(
            np.max(np.abs(a - e)) / np.max(np.abs(e))
            for step in self.steps
            for a, e in zip(ours[step], self.expected(config_id, step))
        )


def tfa_float32(value):
    """``value`` as TensorFlow Addons applies it to float64 weights: TFA's legacy Keras
    optimizers hold every ``_set_hyper`` hyperparameter (learning rate, betas, weight decay...)
    in a float32 variable. Tests pass these rounded values with ``exact_hyperparameters=True``."""
    return float(np.float32(value))
