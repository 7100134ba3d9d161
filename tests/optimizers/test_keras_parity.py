"""Every tfoptim optimizer with a Keras twin follows the twin's trajectory.

200 float64 steps of the reference problem, checked at steps 1, 10, 50 and 200, for the
defaults, every flag of each rule and every common Keras argument. The formulas are the same
up to the order of floating-point operations, so the tolerance is 1e-12, not the issue's 1e-6.

Keras casts some Python-float hyperparameters through float32 even for float64 variables;
tfoptim does the same unless ``exact_hyperparameters=True`` (the PyTorch ports' setting). The
flag cases below use values float32 represents exactly, so they hold either way; the defaults
are compared directly, and the size of the flag's effect is pinned down at the end.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from trajectory import assert_close, floatx, run

K = keras.optimizers
CHECKPOINTS = (1, 10, 50, 200)
RTOL = 1e-12
# Identical float32 arithmetic, up to the order of a few operations.
FLOAT32_RTOL = 1e-6

ADAM = dict(beta_1=0.875, beta_2=1 - 2**-10)
LION = dict(beta_1=0.875, beta_2=1 - 2**-7)
CASES = {
    "gradient_descent": (lambda: to.GradientDescent(0.05), lambda: K.SGD(0.05)),
    "sgd": (lambda: to.SGD(0.05), lambda: K.SGD(0.05)),
    "sgd_momentum": (lambda: to.SGD(0.05, momentum=0.875), lambda: K.SGD(0.05, momentum=0.875)),
    "sgd_nesterov": (
        lambda: to.SGD(0.05, momentum=0.875, nesterov=True),
        lambda: K.SGD(0.05, momentum=0.875, nesterov=True),
    ),
    "dynamic_gradient_descent": (
        lambda: to.DynamicGradientDescent(0.1, decay_rate=0.98),
        lambda: K.SGD(K.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.98)),
    ),
    "adagrad": (
        lambda: to.Adagrad(0.1, initial_accumulator_value=0.125),
        lambda: K.Adagrad(0.1, initial_accumulator_value=0.125),
    ),
    "adagrad_args": (
        lambda: to.Adagrad(0.1, initial_accumulator_value=0.5, epsilon=1e-3),
        lambda: K.Adagrad(0.1, initial_accumulator_value=0.5, epsilon=1e-3),
    ),
    "rmsprop": (lambda: to.RMSprop(0.01), lambda: K.RMSprop(0.01)),
    "rmsprop_momentum": (
        lambda: to.RMSprop(0.01, momentum=0.875, rho=0.75),
        lambda: K.RMSprop(0.01, momentum=0.875, rho=0.75),
    ),
    "rmsprop_centered": (
        lambda: to.RMSprop(0.01, centered=True, momentum=0.5, epsilon=1e-4),
        lambda: K.RMSprop(0.01, centered=True, momentum=0.5, epsilon=1e-4),
    ),
    "adam": (lambda: to.Adam(0.01, **ADAM), lambda: K.Adam(0.01, **ADAM)),
    "adam_amsgrad": (
        lambda: to.Adam(0.01, beta_1=0.75, beta_2=0.9375, epsilon=1e-3, amsgrad=True),
        lambda: K.Adam(0.01, beta_1=0.75, beta_2=0.9375, epsilon=1e-3, amsgrad=True),
    ),
    "adamw": (
        lambda: to.AdamW(0.01, weight_decay=2**-8, **ADAM),
        lambda: K.AdamW(0.01, weight_decay=2**-8, **ADAM),
    ),
    "adamw_amsgrad": (
        lambda: to.AdamW(0.01, weight_decay=0.125, amsgrad=True, **ADAM),
        lambda: K.AdamW(0.01, weight_decay=0.125, amsgrad=True, **ADAM),
    ),
    "lion": (lambda: to.Lion(0.01, **LION), lambda: K.Lion(0.01, **LION)),
    # c = m: the step follows the momentum alone (Keras rejects beta_1 = 0, allows 1).
    "lion_momentum_only": (
        lambda: to.Lion(0.01, beta_1=1.0, beta_2=0.875),
        lambda: K.Lion(0.01, beta_1=1.0, beta_2=0.875),
    ),
}

# The common Keras arguments, each exercised on a stateless and a stateful rule.
COMMON = {
    "weight_decay": dict(weight_decay=0.0625),
    "clipnorm": dict(clipnorm=0.5),
    "clipvalue": dict(clipvalue=0.3),
    "global_clipnorm": dict(global_clipnorm=0.8),
    "use_ema": dict(use_ema=True, ema_momentum=0.875, ema_overwrite_frequency=7),
    "gradient_accumulation_steps": dict(gradient_accumulation_steps=3),
    "loss_scale_factor": dict(loss_scale_factor=8.0),
}
LEARNING_RATES = {
    "schedule": lambda: K.schedules.CosineDecay(0.02, decay_steps=150, alpha=0.1),
    "callable": lambda: (lambda: 0.015),
}
# RMSprop runs at a smaller rate: at 0.01 plain RMSprop reaches the sign-like orbit around the
# optimum, where one-ulp differences grow chaotically and no comparison is meaningful.
RULES = {
    "SGD": (0.01, {"momentum": 0.875}),
    "Adam": (0.01, ADAM),
    "RMSprop": (0.001, {}),
    "Lion": (0.01, LION),
}
for rule, (rate, extra) in RULES.items():
    for arg, kwargs in COMMON.items():
        CASES[f"{rule.lower()}_{arg}"] = (
            lambda rule=rule, rate=rate, kw={**extra, **kwargs}: getattr(to, rule)(rate, **kw),
            lambda rule=rule, rate=rate, kw={**extra, **kwargs}: getattr(K, rule)(rate, **kw),
        )
    for kind, make_lr in LEARNING_RATES.items():
        CASES[f"{rule.lower()}_lr_{kind}"] = (
            lambda rule=rule, make_lr=make_lr, kw=extra: getattr(to, rule)(make_lr(), **kw),
            lambda rule=rule, make_lr=make_lr, kw=extra: getattr(K, rule)(make_lr(), **kw),
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras_twin(case):
    make_ours, make_keras = CASES[case]
    with floatx("float64"):
        ours = run(make_ours(), CHECKPOINTS)
        theirs = run(make_keras(), CHECKPOINTS)
    for step in CHECKPOINTS:
        assert_close(ours[step], theirs[step], RTOL)


@pytest.mark.variants("adam", "sgd_momentum")
@pytest.mark.parametrize("case", ["adam", "sgd_momentum", "rmsprop_centered", "lion_weight_decay"])
def test_matches_keras_twin_under_xla(case):
    make_ours, make_keras = CASES[case]
    with floatx("float64"):
        ours = run(make_ours(), jit_compile=True)
        theirs = run(make_keras(), jit_compile=True)
    assert_close(ours[200], theirs[200], RTOL)


# Each optimizer with its defaults (only the learning rate set, for a visible trajectory).
DEFAULTS = {
    "GradientDescent": ("SGD", 0.05),
    "SGD": ("SGD", 0.05),
    "Adagrad": ("Adagrad", 0.1),
    "RMSprop": ("RMSprop", 0.001),
    "Adam": ("Adam", 0.01),
    "AdamW": ("AdamW", 0.01),
    "Lion": ("Lion", 0.01),
}


@pytest.mark.parametrize("dtype, rtol", [("float64", RTOL), ("float32", FLOAT32_RTOL)])
@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_match_keras_twin(name, dtype, rtol):
    keras_name, learning_rate = DEFAULTS[name]
    with floatx(dtype):
        ours = run(getattr(to, name)(learning_rate), CHECKPOINTS, dtype=dtype)
        theirs = run(getattr(K, keras_name)(learning_rate), CHECKPOINTS, dtype=dtype)
    for step in CHECKPOINTS:
        assert_close(ours[step], theirs[step], rtol)


def test_exact_hyperparameters_leave_keras_float32_rounding_behind():
    """With ``exact_hyperparameters=True`` the betas stay float64: default Adam then differs from
    Keras's by much more than rounding (1 - 0.999 shifts by 1.3e-5 in float32) yet, over 200
    steps, by at most 6.2e-6 relative (measured)."""
    with floatx("float64"):
        keras_run = run(K.Adam(0.01), CHECKPOINTS)
        exact = run(to.Adam(0.01, exact_hyperparameters=True), CHECKPOINTS)
    gaps = [
        max(np.max(np.abs(a - b)) / np.max(np.abs(b)) for a, b in zip(exact[s], keras_run[s]))
        for s in CHECKPOINTS
    ]
    assert 1e-9 < max(gaps) <= 1e-5, gaps
