"""Every optimizer reaches the answer of two small problems within a stated step budget.

* Rosenbrock ``(1 - x)**2 + 100 (y - x**2)**2`` from ``(-1.5, 2)``: within 1e-2 of ``(1, 1)``
  (Euclidean distance) after ``steps`` full-gradient steps, float64.
* Multinomial logistic regression on scikit-learn's digits (1,797 images, 64 pixels scaled to
  [0, 1], 10 classes, full batch): training accuracy >= 0.9 after ``steps`` steps, float32.

Each row of ``ROSENBROCK`` / ``DIGITS`` is ``name: (factory, step budget)``. The budget is the
claim: a rule that needs more steps than stated fails. Rates are tuned per rule (a rate that
suits a badly conditioned 2-D valley is not a default for a network).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from tfoptim.callbacks.cli import digits_data

ROSENBROCK = {
    "GradientDescent": (lambda: to.GradientDescent(1e-3), 20000),
    "SGD": (lambda: to.SGD(1e-3, momentum=0.9), 2000),
    "DynamicGradientDescent": (lambda: to.DynamicGradientDescent(2e-3, decay_rate=0.9999), 5000),
    "Adagrad": (lambda: to.Adagrad(1.0), 20000),
    "RMSprop": (lambda: to.RMSprop(1e-3), 20000),
    "Adam": (lambda: to.Adam(0.02), 5000),
    "AdamW": (lambda: to.AdamW(0.02, weight_decay=0.0), 5000),
}

DIGITS = {
    "GradientDescent": (lambda: to.GradientDescent(1.0), 100),
    "SGD": (lambda: to.SGD(0.5, momentum=0.9), 100),
    "DynamicGradientDescent": (lambda: to.DynamicGradientDescent(1.0, decay_rate=0.999), 100),
    "Adagrad": (lambda: to.Adagrad(0.5), 100),
    "RMSprop": (lambda: to.RMSprop(0.01), 100),
    "Adam": (lambda: to.Adam(0.05), 100),
    "AdamW": (lambda: to.AdamW(0.05), 100),
}


def _minimize(optimizer, variables, loss_fn, steps):
    optimizer.build(variables)

    @tf.function
    def train(steps):
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = loss_fn()
            optimizer.apply(tape.gradient(loss, variables), variables)

    train(tf.constant(steps))


def rosenbrock_distance(optimizer, steps):
    """Distance to ``(1, 1)`` after ``steps`` steps from ``(-1.5, 2)``."""
    point = keras.Variable(np.array([-1.5, 2.0]), dtype="float64", name="point")

    def loss_fn():
        x, y = point[0], point[1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    _minimize(optimizer, [point], loss_fn, steps)
    return float(np.linalg.norm(point.numpy() - 1.0))


@pytest.fixture(scope="module")
def digits():
    x, y = digits_data()
    return tf.constant(x), tf.constant(y)


def digits_accuracy(optimizer, steps, digits):
    """Training accuracy of softmax regression on digits after ``steps`` full-batch steps."""
    x, y = digits
    weights = keras.Variable(np.zeros((64, 10), "float32"), name="weights")
    bias = keras.Variable(np.zeros((10,), "float32"), name="bias")

    def loss_fn():
        logits = x @ weights.value + bias.value
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    _minimize(optimizer, [weights, bias], loss_fn, steps)
    predictions = tf.argmax(x @ weights.value + bias.value, axis=1, output_type=tf.int32)
    return float(tf.reduce_mean(tf.cast(predictions == y, tf.float32)))


@pytest.mark.parametrize("name", sorted(ROSENBROCK))
def test_rosenbrock(name):
    factory, steps = ROSENBROCK[name]
    assert rosenbrock_distance(factory(), steps) <= 1e-2


@pytest.mark.parametrize("name", sorted(DIGITS))
def test_digits_logistic_regression(name, digits):
    factory, steps = DIGITS[name]
    assert digits_accuracy(factory(), steps, digits) >= 0.9


def test_every_optimizer_has_a_convergence_row():
    public = {
        name
        for name in to.__all__
        if isinstance(getattr(to, name), type)
        and issubclass(getattr(to, name), keras.optimizers.Optimizer)
        and name not in ("Optimizer", "Lookahead", "SWA")
    }
    assert public <= set(ROSENBROCK) and public <= set(DIGITS)
