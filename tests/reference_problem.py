"""The long-trajectory problem every update rule is checked on.

Several float64 variables of different shapes; the gradient depends on the parameters
(a quadratic pull towards a target with per-element curvature, plus a cubic term), so a rule
that mishandles its state drifts away from the reference within a few steps.

NumPy only: the PyTorch fixture recorder and the TensorFlow tests both use it.
"""

import numpy as np

SHAPES = ((3,), (4, 5), (2, 3, 2))
STEPS = 200


def initial_problem(seed=7, shapes=SHAPES):
    """Returns ``(params, targets, curvatures)``, three lists of float64 arrays."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in shapes]
    targets = [rng.normal(size=s) for s in shapes]
    curvatures = [rng.uniform(0.5, 2.0, size=s) for s in shapes]
    return params, targets, curvatures


def gradient(param, target, curvature):
    """Gradient of ``sum(curvature / 2 * (param - target)**2 + param**4 / 40)``.

    Written with operators only, so it works on NumPy arrays, torch tensors and TF tensors.
    """
    return curvature * (param - target) + 0.1 * param**3
