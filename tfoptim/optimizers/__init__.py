"""tfoptim's update rules, each a ``keras.optimizers.Optimizer``.

Use them anywhere a Keras optimizer goes: ``model.compile(optimizer=tfoptim.optimizers.Adam())``
or ``optimizer.apply_gradients(zip(grads, variables))`` in a custom loop.
"""

from tfoptim.optimizers.adagrad import Adagrad
from tfoptim.optimizers.adam import Adam
from tfoptim.optimizers.adamw import AdamW
from tfoptim.optimizers.base import (
    FAST_PATH_MIN_SIZE,
    STATELESS_FAST_PATH_MIN_SIZE,
    Optimizer,
    fast_path_enabled,
)
from tfoptim.optimizers.dynamic_gradient_descent import DynamicGradientDescent
from tfoptim.optimizers.gradient_descent import GradientDescent
from tfoptim.optimizers.rmsprop import RMSprop
from tfoptim.optimizers.sgd import SGD

__all__ = [
    "Adagrad",
    "Adam",
    "AdamW",
    "DynamicGradientDescent",
    "FAST_PATH_MIN_SIZE",
    "GradientDescent",
    "Optimizer",
    "RMSprop",
    "SGD",
    "STATELESS_FAST_PATH_MIN_SIZE",
    "fast_path_enabled",
]
