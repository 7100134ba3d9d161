"""Data and models shared by the callback tests: scikit-learn's digits (shipped, no download)
and a small synthetic linear regression."""

import contextlib

import keras
import numpy as np
import pytest

from tfoptim.callbacks.cli import digits_data


@pytest.fixture(scope="session")
def digits():
    """``(x_train, y_train, x_val, y_val)``: a fixed, stratified 75/25 split."""
    from sklearn.model_selection import train_test_split

    x, y = digits_data()
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, y_train, x_val, y_val


@pytest.fixture
def digits_model():
    """``make(optimizer="adam", strategy=None)``: a compiled 64-32-10 MLP, seeded.

    ``optimizer`` is a name, an instance, or a function returning one; under a strategy pass a
    name or a function, so that the optimizer's variables are created in the strategy's scope.
    """

    def make(optimizer="adam", strategy=None, hidden=32):
        keras.utils.set_random_seed(0)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = keras.Sequential(
                [
                    keras.Input((64,)),
                    keras.layers.Dense(hidden, activation="relu", name="hidden"),
                    keras.layers.Dense(10, name="logits"),
                ],
                name="mlp",
            )
            if callable(optimizer) and not isinstance(optimizer, keras.optimizers.Optimizer):
                optimizer = optimizer()
            model.compile(
                optimizer=keras.optimizers.get(optimizer),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
        return model

    return make


@pytest.fixture(scope="session")
def regression():
    """``(x, y, w, b)``: y = x @ w + b + noise, 512 samples, 4 features, float32."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype(np.float32)
    w = np.array([[1.5], [-2.0], [0.5], [3.0]], np.float32)
    b = np.float32(0.7)
    y = (x @ w + b + 0.1 * rng.normal(size=(512, 1))).astype(np.float32)
    return x, y, w, b


def _state_of(model):
    return [np.array(v.numpy()) for v in model.variables] + [
        np.array(v.numpy()) for v in model.optimizer.variables
    ]


def _assert_same_state(before, after):
    assert len(before) == len(after)
    for i, (a, b) in enumerate(zip(before, after)):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"variable {i} changed"


@pytest.fixture
def state_of():
    """``state_of(model)``: every value a training step can change (model variables, then
    optimizer variables), copied to NumPy."""
    return _state_of


@pytest.fixture
def assert_same_state():
    """``assert_same_state(before, after)``: bit-for-bit equality of two ``state_of``."""
    return _assert_same_state
