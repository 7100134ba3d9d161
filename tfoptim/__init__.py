"""tfoptim: optimizers, learning-rate schedules, training callbacks and optimizer tuning for Keras 3.

Subpackages load on first use (``tfoptim.optimizers``, ``tfoptim.compat``,
``tfoptim.schedules``, ``tfoptim.callbacks``, ``tfoptim.tuning``), so the ``tfoptim`` command
can configure TensorFlow's logging before TensorFlow is imported.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("callbacks", "compat", "optimizers", "schedules", "tuning")
__all__ = [*_SUBPACKAGES, "find_learning_rate", "__version__"]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tfoptim.{name}")
    if name == "find_learning_rate":
        return importlib.import_module("tfoptim.callbacks").find_learning_rate
    raise AttributeError(f"module 'tfoptim' has no attribute {name!r}")
