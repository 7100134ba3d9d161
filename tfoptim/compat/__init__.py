"""Exact ports of other frameworks' optimizer conventions.

``tfoptim.compat.tf1`` takes ``tf.compat.v1.train`` arguments, ``tfoptim.compat.torch`` takes
``torch.optim`` arguments; both return tfoptim optimizers that follow that framework's
trajectory, not merely "the same algorithm".
"""

from tfoptim.compat import tf1, torch

__all__ = ["tf1", "torch"]
