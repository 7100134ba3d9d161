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
    # Equal averaging weights (r=0) drag x, and so y, back along the whole valley (0.24 after
    # 20,000 steps); t**2 weights (r=2) average the recent iterates.
    "ScheduleFreeSGD": (lambda: to.ScheduleFreeSGD(1.5e-3, r=2.0), 20000),
    # The wrappers' rows check the trained (fast) weights.
    "Lookahead": (lambda: to.Lookahead(to.Adam(0.02)), 5000),
    "SWA": (lambda: to.SWA(to.Adam(0.02), start_averaging=1000, average_period=10), 5000),
    # At a constant multiplier 1.0 Prodigy's d overshoots the valley's scale and the iterate
    # wanders (1e-4 at 1,000 steps, 0.04 at 5,000); the authors pair it with cosine annealing.
    "Prodigy": (lambda: to.Prodigy(keras.optimizers.schedules.CosineDecay(1.0, 5000)), 5000),
    "DAdaptAdam": (lambda: to.DAdaptAdam(), 5000),
    "RAdam": (lambda: to.RAdam(0.02), 5000),
    # The momentum-SGD steps below rho_t = 5 (degenerated_to_sgd, the authors' default) take the
    # raw gradient (~155 at the start): at 0.02 they throw the iterate out of the valley, so the
    # rate is 0.01 and the budget twice Adam's (0.0102 at 5,000 steps).
    "AdaBelief": (lambda: to.AdaBelief(0.01), 10000),
    "Yogi": (lambda: to.Yogi(0.05), 2000),
    "NovoGrad": (lambda: to.NovoGrad(0.002), 2000),
    # The point is a 2-vector, which LARS excludes by default; here the ratio is what is
    # tested. Each step moves ~lr * eta * |point| (normalised steps): 2e-3 at 5,000 steps.
    "LARS": (lambda: to.LARS(1.0, exclude_bias_and_norm=False), 5000),
    "LazyAdam": (lambda: to.LazyAdam(0.02), 5000),
    # Learning-rate-free: the bets need ~10,000 steps to find the valley's scale (0.05 at
    # 10,000 steps, 6e-4 at 20,000).
    "COCOB": (lambda: to.COCOB(), 20000),
    "ProximalAdagrad": (lambda: to.ProximalAdagrad(1.0), 20000),
    "Adan": (lambda: to.Adan(0.01), 2000),
    "MADGRAD": (lambda: to.MADGRAD(3e-3), 2000),
    # beta_3=0.9999 (the default) remembers the steep first steps for ~10,000 steps and the
    # slow EMA keeps pushing along the valley's old direction (0.03 at 5,000 steps); 0.999
    # forgets in time (5e-10 at 5,000).
    "AdEMAMix": (lambda: to.AdEMAMix(0.02, beta_3=0.999), 5000),
    # beta_2=0.9999 (the default) keeps v at the first gradients' scale (|g| ~ 155) for
    # thousands of steps, so the normalised steps are tiny (0.43 at 5,000 steps even at rate
    # 0.05); ADOPT converges for any beta_2, and 0.99 adapts within ~100 steps (4e-4 at 2,000).
    "ADOPT": (lambda: to.ADOPT(0.01, beta_2=0.99), 2000),
    # Every step moves each coordinate by exactly the rate: the valley (~3.5 long) takes ~4,500
    # steps at 1e-3 (0.02 at 4,000), after which the point cycles within a few rates of (1, 1)
    # (0.0045 from then on; 3e-3 cycles at 0.09).
    "Lion": (lambda: to.Lion(1e-3), 5000),
    # precondition_1d gives the 2-D point its 2 x 2 preconditioner (without it SOAP is Adam
    # with a first step that does not move); weight decay would move the optimum.
    "SOAP": (lambda: to.SOAP(0.01, weight_decay=0.0, precondition_1d=True), 1000),
    # The point is a vector, which Muon leaves to its AdamW fallback (Adam's rate and budget).
    "Muon": (lambda: to.Muon(0.02, weight_decay=0.0), 5000),
    "NorMuon": (lambda: to.NorMuon(0.02, adam_lr_ratio=1.0, adam_beta_2=0.999, epsilon=1e-8), 5000),
    # Budgets count calls (a SAM step is two). SAM's fixed point is where the gradient at the
    # ascended point vanishes, about rho from the minimum along the steep direction: 0.006
    # from (1, 1) at rho=0.002.
    "SAM": (lambda: to.SAM(to.Adam(0.02), rho=0.002), 10000),
    "ScheduleFree": (lambda: to.ScheduleFree(to.SGD(1.5e-3), r=2.0), 20000),
    # The point is a vector: centralization leaves it alone (Adam's row).
    "GradientCentralization": (lambda: to.GradientCentralization(to.Adam(0.02)), 5000),
    "AdaptiveGradientClipping": (lambda: to.AdaptiveGradientClipping(to.Adam(0.02), clip_factor=0.5), 5000),
    # The point is a vector (a diagonal preconditioner) and the steps are clipped to RMS 1.1:
    # the valley takes ~1,800 steps at 3e-3 (0.64 at 1,500 steps, 0.0045 at 2,000).
    "PSGDKron": (lambda: to.PSGDKron(0.003), 2000),
    # The point is a vector: one 2x2 factor, its root renewed every step.
    "Shampoo": (lambda: to.Shampoo(0.01, precondition_frequency=1, weight_decay=0.0), 5000),
}

DIGITS = {
    "GradientDescent": (lambda: to.GradientDescent(1.0), 100),
    "SGD": (lambda: to.SGD(0.5, momentum=0.9), 100),
    "DynamicGradientDescent": (lambda: to.DynamicGradientDescent(1.0, decay_rate=0.999), 100),
    "Adagrad": (lambda: to.Adagrad(0.5), 100),
    "RMSprop": (lambda: to.RMSprop(0.01), 100),
    "Adam": (lambda: to.Adam(0.05), 100),
    "AdamW": (lambda: to.AdamW(0.05), 100),
    "ScheduleFreeSGD": (lambda: to.ScheduleFreeSGD(1.0), 100),
    "Lookahead": (lambda: to.Lookahead(to.Adam(0.05)), 100),
    "SWA": (lambda: to.SWA(to.SGD(0.5, momentum=0.9), start_averaging=50, average_period=5), 100),
    "Prodigy": (lambda: to.Prodigy(), 100),
    "DAdaptAdam": (lambda: to.DAdaptAdam(), 100),
    "RAdam": (lambda: to.RAdam(0.05), 100),
    "AdaBelief": (lambda: to.AdaBelief(0.05), 100),
    "Yogi": (lambda: to.Yogi(0.05), 100),
    "NovoGrad": (lambda: to.NovoGrad(0.05), 100),
    # The kernel starts at zero: the first step takes ratio 1 (plain SGD), then ~lr * eta of
    # the kernel's norm per step.
    "LARS": (lambda: to.LARS(5.0), 100),
    "LazyAdam": (lambda: to.LazyAdam(0.05), 100),
    "COCOB": (lambda: to.COCOB(), 100),
    "ProximalAdagrad": (lambda: to.ProximalAdagrad(0.5), 100),
    "Adan": (lambda: to.Adan(0.05), 100),
    "MADGRAD": (lambda: to.MADGRAD(0.01), 100),
    "AdEMAMix": (lambda: to.AdEMAMix(0.05), 100),
    "ADOPT": (lambda: to.ADOPT(0.05), 100),
    "Lion": (lambda: to.Lion(0.02), 100),
    "SOAP": (lambda: to.SOAP(0.1), 100),
    # The 64x10 kernel is the only matrix, so the output-head rule is turned off.
    "Muon": (lambda: to.Muon(0.1, weight_decay=0.0, exclude_output_head=False), 100),
    "NorMuon": (lambda: to.NorMuon(0.1, exclude_output_head=False), 100),
    "SAM": (lambda: to.SAM(to.Adam(0.05), rho=0.05), 200),
    "ScheduleFree": (lambda: to.ScheduleFree(to.SGD(1.0)), 100),
    "GradientCentralization": (lambda: to.GradientCentralization(to.Adam(0.05)), 100),
    # The weights start at zero: eps (1e-3) lets them move, clipped to 1e-4 per unit at first.
    "AdaptiveGradientClipping": (lambda: to.AdaptiveGradientClipping(to.Adam(0.05), clip_factor=0.1), 100),
    "PSGDKron": (lambda: to.PSGDKron(0.1), 100),
    "Shampoo": (lambda: to.Shampoo(0.05, precondition_frequency=1, epsilon=1e-8), 100),
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


@pytest.mark.matrix("name")
@pytest.mark.parametrize("name", sorted(ROSENBROCK))
def test_rosenbrock(name):
    factory, steps = ROSENBROCK[name]
    assert rosenbrock_distance(factory(), steps) <= 1e-2


@pytest.mark.matrix("name")
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
