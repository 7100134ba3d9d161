"""The problems of ``tfoptim bench convergence``: small, made in code or shipped with scikit-learn.

Each :class:`Problem` states its metric, the target that counts as "converged", its step budget
and how often the metric is recorded. ``problem.setup()`` makes the variables once; the
benchmark then traces one training loop per optimizer and problem and reruns it for every
learning rate and seed, so a setup's ``init(seed)`` assigns fresh starting values in place and
``loss(seed, step)`` draws its minibatch or gradient noise statelessly from ``(seed, step)``:
a run is a pure function of the problem, the optimizer, the rate and the seed. ``metric(values)``
takes the parameter values to judge, so the benchmark can pass an optimizer's evaluation
weights (schedule-free's ``x``) instead of the trained ones.

Gradient noise is added through the loss, ``loss + <stop_gradient(noise), theta>``, whose
gradient is ``grad f + noise``; the recorded metric is always the noiseless one.
"""

import dataclasses
from typing import Callable

import numpy as np

#: The problem definitions' own random numbers (the quadratic's spectrum and rotation, the
#: digits split). Fixed: the problems are the same in every run; only ``init`` and the noise
#: depend on the run's seed.
PROBLEM_SEED = 0


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    description: str
    metric: str
    goal: str  # "min" or "max": whether a smaller or a larger metric is better
    target: float
    steps: int
    quick_steps: int
    every: int  # record the metric every `every` steps
    deterministic: bool  # every seed gives the same run (fixed start, no noise)
    make: Callable

    def reached(self, values):
        """Boolean array: which recorded values meet the target."""
        values = np.asarray(values, dtype=float)
        with np.errstate(invalid="ignore"):
            return values <= self.target if self.goal == "min" else values >= self.target

    def setup(self):
        return self.make()


@dataclasses.dataclass
class Setup:
    """What a training loop needs: the variables, and three functions of them.

    ``init(seed)`` assigns starting values (NumPy, outside any graph); ``loss(seed, step)``
    returns the training loss whose gradient the optimizer sees (traced); ``metric(values)``
    returns the recorded metric at the given parameter values, one tensor per variable (traced).
    """

    variables: list
    init: Callable
    loss: Callable
    metric: Callable


def _variables(*shapes):
    import keras

    return [keras.Variable(np.zeros(shape, "float32"), name=f"theta{i}") for i, shape in enumerate(shapes)]


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(np.asarray(value, "float32"))


def _noise(seed, step, shape, salt=0):
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32) * 4 + salt])
    return tf.random.stateless_normal(shape, seed=key)


# ---------------------------------------------------------------------------------------------
# The seed document's linear regression


def _linear():
    import tensorflow as tf

    from tfoptim.demo import least_squares, make_data

    x, y = make_data()
    optimum = least_squares(x, y)[2]
    x, y = tf.constant(x), tf.constant(y)
    weight, bias = variables = _variables((1, 1), (1,))

    def init(seed):
        # As in `tfoptim demo`: weight ~ U[0, 1), bias 0.
        _assign(variables, [np.random.default_rng(seed).random((1, 1)), np.zeros(1)])

    def mse(w, b):
        return tf.reduce_mean((y - (x @ w + b)) ** 2)

    def loss(seed, step):
        return mse(weight.value, bias.value)

    def metric(values):
        return mse(*values) / optimum

    return Setup(variables, init, loss, metric)


# ---------------------------------------------------------------------------------------------
# Rosenbrock

ROSENBROCK_START = (-1.5, 2.0)
ROSENBROCK_NOISE = 1.0


def _rosenbrock(noise):
    import tensorflow as tf

    (point,) = variables = _variables((2,))

    def init(seed):
        _assign(variables, [ROSENBROCK_START])

    def value():
        x, y = point[0], point[1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    def loss(seed, step):
        if not noise:
            return value()
        return value() + tf.reduce_sum(tf.stop_gradient(noise * _noise(seed, step, (2,))) * point)

    def metric(values):
        return tf.norm(values[0] - 1.0)

    return Setup(variables, init, loss, metric)


# ---------------------------------------------------------------------------------------------
# The noisy quadratic

QUADRATIC_DIM = 100


def quadratic_spectrum(dim=QUADRATIC_DIM, seed=PROBLEM_SEED):
    """Hessian eigenvalues: 90% uniform in (0, 1), 10% uniform in (30, 60), and a random rotation."""
    rng = np.random.default_rng(seed)
    high = dim // 10
    eigenvalues = np.concatenate([rng.uniform(0, 1, dim - high), rng.uniform(30, 60, high)])
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return eigenvalues, rotation


#: 1% of the expected loss at the start, E[0.5 x'Hx] = 0.5 tr(H) for x ~ N(0, I).
QUADRATIC_TARGET = round(0.01 * 0.5 * float(quadratic_spectrum()[0].sum()), 2)


def _quadratic():
    import tensorflow as tf

    eigenvalues, rotation = quadratic_spectrum()
    hessian = tf.constant((rotation * eigenvalues) @ rotation.T, tf.float32)
    # Gradient noise with covariance H (the noisy quadratic model of Zhang et al., 2019):
    # noise = Q diag(sqrt(h)) z, z ~ N(0, I).
    noise_map = tf.constant(rotation * np.sqrt(eigenvalues), tf.float32)
    (theta,) = variables = _variables((QUADRATIC_DIM,))

    def init(seed):
        _assign(variables, [np.random.default_rng(seed).standard_normal(QUADRATIC_DIM)])

    def value(values):
        return 0.5 * tf.tensordot(values[0], tf.linalg.matvec(hessian, values[0]), 1)

    def loss(seed, step):
        noise = tf.linalg.matvec(noise_map, _noise(seed, step, (QUADRATIC_DIM,)))
        return value([theta.value]) + tf.reduce_sum(tf.stop_gradient(noise) * theta)

    return Setup(variables, init, loss, value)


# ---------------------------------------------------------------------------------------------
# Digits: logistic regression, MLP, CNN

DIGITS_BATCH = 32


def digits_split():
    """scikit-learn's digits, pixels in [0, 1], split 75/25 (stratified, fixed)."""
    from sklearn.model_selection import train_test_split

    from tfoptim.callbacks.cli import digits_data

    x, y = digits_data()
    return train_test_split(x, y, test_size=0.25, random_state=PROBLEM_SEED, stratify=y)


def _glorot(rng, shape):
    fan_in = int(np.prod(shape[:-1]))
    fan_out = shape[-1] * (int(np.prod(shape[:-2])) if len(shape) > 2 else 1)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def _digits(shapes, forward, full_batch):
    """A classifier on digits: ``forward(variables, x) -> logits``; Glorot-uniform weights,
    zero biases (Keras's defaults), drawn from the run's seed. The metric is test accuracy."""
    import tensorflow as tf

    x_train, x_test, y_train, y_test = (tf.constant(a) for a in digits_split())
    n = int(x_train.shape[0])
    variables = _variables(*shapes)

    def init(seed):
        rng = np.random.default_rng(seed)
        _assign(variables, [_glorot(rng, s) if len(s) > 1 else np.zeros(s) for s in shapes])

    def loss(seed, step):
        if full_batch:
            x, y = x_train, y_train
        else:
            key = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32) * 4 + 1])
            index = tf.random.stateless_uniform((DIGITS_BATCH,), key, 0, n, dtype=tf.int32)
            x, y = tf.gather(x_train, index), tf.gather(y_train, index)
        logits = forward([v.value for v in variables], x)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    def metric(values):
        logits = forward(values, x_test)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        return tf.reduce_mean(tf.cast(predictions == y_test, tf.float32))

    return Setup(variables, init, loss, metric)


def _logistic():
    def forward(params, x):
        weights, bias = params
        return x @ weights + bias

    return _digits([(64, 10), (10,)], forward, full_batch=True)


def _mlp():
    import tensorflow as tf

    def forward(params, x):
        w1, b1, w2, b2 = params
        return tf.nn.relu(x @ w1 + b1) @ w2 + b2

    return _digits([(64, 64), (64,), (64, 10), (10,)], forward, full_batch=False)


def _cnn():
    import tensorflow as tf

    def forward(params, x):
        k1, b1, k2, b2, w, b = params
        h = tf.reshape(x, (-1, 8, 8, 1))
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, k1, 1, "SAME") + b1), 2, 2, "VALID")
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, k2, 1, "SAME") + b2), 2, 2, "VALID")
        return tf.reshape(h, (-1, 2 * 2 * 16)) @ w + b

    shapes = [(3, 3, 1, 8), (8,), (3, 3, 8, 16), (16,), (64, 10), (10,)]
    return _digits(shapes, forward, full_batch=False)


PROBLEMS = {
    p.name: p
    for p in [
        Problem(
            "linear-regression",
            "the seed document's y = 2x + 1 + U[0,1) on 100 points, weight and bias, full batch; "
            "metric: MSE / least-squares optimum",
            metric="loss / optimum", goal="min", target=1.01, steps=1000, quick_steps=300,
            every=10, deterministic=False, make=_linear,
        ),
        Problem(
            "rosenbrock",
            "(1 - x)^2 + 100 (y - x^2)^2 from (-1.5, 2); metric: distance to (1, 1)",
            metric="distance", goal="min", target=1e-2, steps=5000, quick_steps=1000,
            every=50, deterministic=True, make=lambda: _rosenbrock(0.0),
        ),
        Problem(
            "rosenbrock-noisy",
            f"Rosenbrock with N(0, {ROSENBROCK_NOISE:g}^2) noise added to each gradient "
            "coordinate; metric: distance to (1, 1)",
            metric="distance", goal="min", target=0.1, steps=5000, quick_steps=1000,
            every=50, deterministic=False, make=lambda: _rosenbrock(ROSENBROCK_NOISE),
        ),
        Problem(
            "noisy-quadratic",
            f"0.5 x'Hx in {QUADRATIC_DIM} dimensions, H = Q diag(h) Q' with a random rotation Q, "
            "90% of h in (0, 1) and 10% in (30, 60); gradient noise N(0, H); start N(0, I); "
            f"metric: noiseless loss; target: 1% of the expected starting loss 0.5 tr(H)",
            metric="loss", goal="min", target=QUADRATIC_TARGET, steps=2000, quick_steps=500,
            every=20, deterministic=False, make=_quadratic,
        ),
        Problem(
            "digits-logistic",
            "softmax regression on scikit-learn's digits (1,347 train / 450 test), full batch; "
            "metric: test accuracy",
            metric="test accuracy", goal="max", target=0.95, steps=500, quick_steps=150,
            every=10, deterministic=False, make=_logistic,
        ),
        Problem(
            "digits-mlp",
            f"64-64-10 ReLU MLP on digits, minibatches of {DIGITS_BATCH}; metric: test accuracy",
            metric="test accuracy", goal="max", target=0.95, steps=1000, quick_steps=300,
            every=20, deterministic=False, make=_mlp,
        ),
        Problem(
            "digits-cnn",
            "CNN on the 8x8 digits (conv 3x3x8, pool, conv 3x3x16, pool, dense), "
            f"minibatches of {DIGITS_BATCH}; metric: test accuracy",
            metric="test accuracy", goal="max", target=0.95, steps=500, quick_steps=200,
            every=25, deterministic=False, make=_cnn,
        ),
    ]
}
