"""ScheduleFree(optimizer) follows the authors' ``schedulefree`` 1.4.1: ``AdamWScheduleFree``
(recorded by ``tests/fixtures/record_wrappers.py``) around an Adam without first moment, and
``SGDScheduleFree`` (the references of ``test_schedule_free_sgd.py``, recorded by
``record_averaging.py``) around plain SGD; and Keras's own ``ScheduleFreeAdamW``, run here.
Both the training weights ``y`` and the evaluation weights ``x`` are compared.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from reference_problem import SHAPES as SGD_SHAPES
from tfoptim.callbacks import evaluation_values
from tfoptim.compat import torch as torch_compat
from trajectory import assert_close, floatx, run
from wrapper_fixtures import CHECKPOINTS, MANIFEST, SHAPES, configs, expected

FIXTURES = Path(__file__).parents[1] / "fixtures"
AVERAGING = json.loads((FIXTURES / "averaging_trajectories.json").read_text())
AVERAGING_ARRAYS = np.load(FIXTURES / "averaging_trajectories.npz")
SGD_CONFIGS = sorted(k for k, c in AVERAGING["configs"].items() if c["source"].startswith("schedulefree"))
# The same float64 arithmetic in another order, the inner step read off as a difference of
# weights (exact to an ulp of the weights): below 2e-13 relative over 200 steps.
RTOL = 1e-12


def adamw_schedule_free(kwargs):
    kwargs = dict(kwargs)
    beta_1, beta_2 = kwargs.pop("betas", (0.9, 0.999))
    inner = torch_compat.AdamW(lr=kwargs.pop("lr", 0.0025), betas=(0.0, beta_2), eps=kwargs.pop("eps", 1e-8),
                               weight_decay=kwargs.pop("weight_decay", 0.0))
    return to.ScheduleFree(inner, momentum=beta_1, **kwargs)


def sgd_schedule_free(kwargs):
    kwargs = dict(kwargs)
    inner = to.SGD(kwargs.pop("lr", 1.0), coupled_weight_decay=kwargs.pop("weight_decay", 0.0),
                   exact_hyperparameters=True)
    return to.ScheduleFree(inner, **kwargs)


def check(make, steps, shapes, expected_at):
    for eval_step in (10, steps[-1]):
        with floatx("float64"):
            optimizer = make()
            ours = run(optimizer, [s for s in steps if s <= eval_step], shapes=shapes)
            x = [np.asarray(v) for v in optimizer.evaluation_values(optimizer._trainable_variables)]
        for step, params in ours.items():
            assert_close(params, expected_at(step, "param"), RTOL)
        assert_close(x, expected_at(eval_step, "eval"), RTOL)


@pytest.mark.parametrize("config", configs("AdamWScheduleFree"))
def test_matches_adamw_schedule_free(config):
    kwargs = MANIFEST["configs"][config]["kwargs"]
    check(lambda: adamw_schedule_free(kwargs), CHECKPOINTS, SHAPES, lambda s, k: expected(config, s, k))


@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_matches_sgd_schedule_free(config):
    kwargs = AVERAGING["configs"][config]["kwargs"]

    def expected_at(step, kind):
        return [AVERAGING_ARRAYS[f"{config}/step{step}/{kind}{i}"] for i in range(len(SGD_SHAPES))]

    check(lambda: sgd_schedule_free(kwargs), AVERAGING["checkpoint_steps"], SGD_SHAPES, expected_at)


class KerasScheduleFreeAdamW(keras.optimizers.ScheduleFreeAdamW):
    """Keras 3.15's ``ScheduleFreeAdamW.update_step`` with ``z`` read before its step.

    On the TensorFlow backend Keras's ``momentum_old = momentum.value`` is the variable itself,
    not a copy, so ``x_old`` is recovered from the ``z`` already stepped: from the second step
    on, its ``y`` moves by ``(1 - beta_1 + beta_1 c) u`` less than the rule (on JAX, where
    values are immutable, it follows the rule). The copy below is the only change."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = keras.ops.cast(learning_rate, dtype), keras.ops.cast(gradient, dtype)
        local_step = keras.ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = keras.ops.cast(self.beta_1, dtype), keras.ops.cast(self.beta_2, dtype)
        if self.warmup_steps > 0:
            lr = lr * keras.ops.minimum(local_step / keras.ops.cast(self.warmup_steps, dtype), 1.0)
        momentum = self._momentums[self._get_variable_index(variable)]
        velocity = self._velocities[self._get_variable_index(variable)]
        momentum_old = keras.ops.copy(momentum.value)
        bias_correction_2 = 1 - keras.ops.power(beta_2, local_step)
        self.assign_add(velocity, (keras.ops.square(gradient) - velocity) * (1 - beta_2))
        denom = keras.ops.sqrt(velocity / bias_correction_2) + keras.ops.cast(self.epsilon, dtype)
        self.assign_sub(momentum, lr * gradient / denom)
        weight = 1.0 / local_step
        x_old = (variable - (1 - beta_1) * momentum_old) / beta_1
        x_new = (1 - weight) * x_old + weight * momentum
        self.assign(variable, (1 - beta_1) * momentum + beta_1 * x_new)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("warmup_steps", [0, 15])
def test_matches_keras_schedule_free_adamw(warmup_steps, dtype, rtol):
    """Keras's ScheduleFreeAdamW weighs the points equally: weight_lr_power=0. float32: a
    few ulps per step (another order of the same operations). Compared over 50 steps: later,
    one element of the convolution kernel that oscillates about its optimum separates the two
    float64 trajectories (1.6e-3 at step 100, while all else agrees to 1e-15); the official's
    trajectories (above) agree over 200."""
    with floatx(dtype):
        keras_run = run(KerasScheduleFreeAdamW(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-6,
                                                          warmup_steps=warmup_steps), (10, 50), dtype=dtype,
                        shapes=SHAPES)
        # Keras casts beta_1, beta_2 and epsilon through float32 (Python floats), whatever the dtype.
        beta_1, beta_2, epsilon = (float(np.float32(h)) for h in (0.8, 0.99, 1e-6))
        inner = torch_compat.Adam(lr=0.003, betas=(0.0, beta_2), eps=epsilon)
        ours = run(to.ScheduleFree(inner, momentum=beta_1, warmup_steps=warmup_steps, weight_lr_power=0.0),
                   (10, 50), dtype=dtype, shapes=SHAPES)
    for step in (10, 50):
        assert_close(ours[step], keras_run[step], rtol)


def test_evaluation_weights_protocol():
    with floatx("float64"):
        optimizer = to.ScheduleFree(to.SGD(0.1))
        assert evaluation_values(optimizer, []) is None  # not built yet
        run(optimizer, (5,), shapes=SHAPES)
        variables = optimizer._trainable_variables
        values = [np.asarray(v) for v in evaluation_values(optimizer, variables)]
        own = [np.asarray(v) for v in optimizer.evaluation_values(variables)]
    assert_close(values, own, 0.0)
    assert not np.allclose(values[1], variables[1].numpy())


def test_gradient_accumulation_advances_the_average_on_update_steps():
    """Two micro-steps with the gradient at the same y: the step of one, averaged in once."""
    with floatx("float64"):
        accumulated = to.ScheduleFree(to.SGD(0.1, gradient_accumulation_steps=2), warmup_steps=3)
        ours = run(accumulated, (2, 12), shapes=SHAPES)
        x = [np.asarray(v) for v in accumulated.evaluation_values(accumulated._trainable_variables)]
        plain = to.ScheduleFree(to.SGD(0.1), warmup_steps=3)
        reference = run(plain, (1, 6), shapes=SHAPES)
        x_plain = [np.asarray(v) for v in plain.evaluation_values(plain._trainable_variables)]
    assert_close(ours[2], reference[1], 1e-15)
    assert_close(ours[12], reference[6], 1e-15)
    assert_close(x, x_plain, 1e-15)


def test_inside_lookahead():
    """Lookahead(ScheduleFree(SGD)) with sync_period=1 and a full step is ScheduleFree(SGD)."""
    with floatx("float64"):
        wrapped = run(to.Lookahead(to.ScheduleFree(to.SGD(0.1)), 1, 1.0), (30,), shapes=SHAPES)[30]
        plain = run(to.ScheduleFree(to.SGD(0.1)), (30,), shapes=SHAPES)[30]
    assert_close(wrapped, plain, 1e-15)


def test_config():
    optimizer = to.ScheduleFree(keras.optimizers.Adam(0.01, beta_1=0.0), momentum=0.95, warmup_steps=10, r=0.5,
                                weight_lr_power=1.0)
    config = optimizer.get_config()
    assert set(config) == {"name", "optimizer", "momentum", "warmup_steps", "r", "weight_lr_power"}
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is to.ScheduleFree and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(momentum=0.0), "momentum"), (dict(momentum=1.0), "momentum"), (dict(warmup_steps=-1), "warmup_steps"),
     (dict(warmup_steps=2.5), "warmup_steps"), (dict(r=-1.0), "r"), (dict(weight_lr_power=-1.0), "weight_lr_power"),
     (dict(weight_decay=0.1), "weight_decay")],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        to.ScheduleFree(keras.optimizers.SGD(), **kwargs)
