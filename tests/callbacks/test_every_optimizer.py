"""Every Keras and tfoptim optimizer, with the callbacks that reach into the optimizer."""

import inspect

import keras
import numpy as np
import pytest

import tfoptim.optimizers
from tfoptim.callbacks import (
    NonFiniteRecovery,
    OptimizerMonitor,
    ScheduleAwareReduceLROnPlateau,
    find_learning_rate,
)

_WRAPPERS = ("LossScaleOptimizer", "MultiOptimizer", "Optimizer", "OptimizerMap")
# tfoptim's wrappers need an inner optimizer: the callbacks must reach its learning rate.
_WRAPPED = {
    "Lookahead": lambda: tfoptim.optimizers.Lookahead(keras.optimizers.Adam()),
    "SWA": lambda: tfoptim.optimizers.SWA(keras.optimizers.SGD(), average_period=2),
    "SAM": lambda: tfoptim.optimizers.SAM(keras.optimizers.Adam()),
    "ScheduleFree": lambda: tfoptim.optimizers.ScheduleFree(keras.optimizers.Adam()),
    "GradientCentralization": lambda: tfoptim.optimizers.GradientCentralization(keras.optimizers.Adam()),
    "AdaptiveGradientClipping": lambda: tfoptim.optimizers.AdaptiveGradientClipping(keras.optimizers.Adam()),
}


def _optimizers():
    found = []
    for module, prefix in ((keras.optimizers, "keras"), (tfoptim.optimizers, "tfoptim")):
        for name in dir(module):
            cls = getattr(module, name)
            if (
                inspect.isclass(cls)
                and issubclass(cls, keras.optimizers.Optimizer)
                and name not in _WRAPPERS
            ):
                found.append(pytest.param(cls, id=f"{prefix}.{name}"))
    return found


@pytest.mark.matrix("optimizer_class")
@pytest.mark.parametrize("optimizer_class", _optimizers())
def test_callbacks_with_every_optimizer(tmp_path, regression, optimizer_class):
    x, y, _, _ = regression
    x, y = x[:128], y[:128]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=_WRAPPED.get(optimizer_class.__name__, optimizer_class)(), loss="mse")
    history = model.fit(
        x, y, batch_size=32, epochs=2, verbose=0,
        callbacks=[
            OptimizerMonitor(),
            NonFiniteRecovery(verbose=0),
            ScheduleAwareReduceLROnPlateau(monitor="loss", patience=0, factor=0.5,
                                           min_delta=100.0),
        ],
    )
    assert np.all(np.isfinite(history.history["grad_norm"]))
    assert history.history["nonfinite_grads"] == [0, 0]
    rates = history.history["learning_rate"]
    assert rates[1] < rates[0]

    before = [v.numpy() for v in model.variables + model.optimizer.variables]
    find_learning_rate(model, x, y, num_steps=8, progress=False)
    after = [v.numpy() for v in model.variables + model.optimizer.variables]
    assert len(before) == len(after)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
