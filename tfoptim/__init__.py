"""tfoptim: optimizers, learning-rate schedules, training callbacks and optimizer tuning for Keras 3."""

from tfoptim import compat, optimizers

__version__ = "0.1.0"

__all__ = ["compat", "optimizers", "__version__"]
