"""Behaviours a Keras optimizer has, which a drop-in replacement must keep: raw ``tf.Variable``s
train beside Keras variables, every argument Keras accepts is accepted, and optimizers are
named uniquely the way Keras names its own."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from tfoptim.optimizers._wrapper import OptimizerWrapper

#: tfoptim's twins of Keras's built-ins, with arguments that take each one's main branch.
TWINS = {
    "SGD": dict(learning_rate=0.1, momentum=0.9),
    "Adagrad": dict(learning_rate=0.1),
    "RMSprop": dict(learning_rate=0.01, momentum=0.5, centered=True),
    "Adam": dict(learning_rate=0.1, amsgrad=True),
    "AdamW": dict(learning_rate=0.1, weight_decay=0.05),
    "Lion": dict(learning_rate=0.01),
}
#: Every tfoptim rule.
RULES = [name for name in to.__all__ if isinstance(getattr(to, name), type)
         and issubclass(getattr(to, name), to.Optimizer) and name != "Optimizer"]


def mixed_variables():
    """A Keras variable and a raw ``tf.Variable`` (what ``tf.Module`` models hold), both small."""
    return [keras.Variable(np.linspace(-1.0, 1.0, 6, dtype="float32").reshape(2, 3)),
            tf.Variable(np.linspace(0.5, -0.5, 4, dtype="float32"))]


def train(optimizer, compiled, steps=5):
    variables = mixed_variables()

    def step():
        grads = [tf.sin(tf.convert_to_tensor(v)) + 0.1 for v in variables]
        optimizer.apply_gradients(zip(grads, variables))

    step = tf.function(step) if compiled else step
    for _ in range(steps):
        step()
    return [np.asarray(v.numpy()) for v in variables]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("fast_path", [True, "grouped"])
@pytest.mark.parametrize("name", list(TWINS))
def test_twins_train_raw_tf_variables_as_keras_does(name, fast_path, compiled):
    expected = train(getattr(keras.optimizers, name)(**TWINS[name]), compiled)
    actual = train(getattr(to, name)(fast_path=fast_path, **TWINS[name]), compiled)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.matrix("name")
def test_every_rule_trains_raw_tf_variables(name):
    """With small variables grouped where the rule allows it, the steps of the per-variable
    loop (each rule's reference path)."""
    grouped = getattr(to, name)(fast_path="grouped")
    actual = train(grouped, compiled=True)
    expected = train(getattr(to, name)(fast_path=False), compiled=True)
    rule = getattr(to, name)
    assert bool(grouped._groups) == (rule.elementwise and rule.fast_path_compatible
                                     and not grouped._reduces_over_variables and grouped._training_op is None)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def test_nesterov_without_momentum_is_plain_sgd_as_in_keras():
    expected = train(keras.optimizers.SGD(0.1, nesterov=True), compiled=False)
    actual = train(to.SGD(0.1, nesterov=True), compiled=False)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


def test_default_names_are_unique_as_in_keras():
    """``Adam()`` is named ``adam``, then ``adam_1``, ...: one counter per name, shared with
    Keras's own optimizers, so two optimizers never share variable paths (a GAN's two)."""
    first, keras_one, second = to.Adam(), keras.optimizers.Adam(), to.Adam()
    numbers = [int(re.fullmatch(r"adam(?:_(\d+))?", o.name).group(1) or 0) for o in (first, keras_one, second)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    for a, b in ((to.AdamW(), keras.optimizers.AdamW()), (to.RMSprop(), keras.optimizers.RMSprop())):
        assert re.sub(r"_\d+$", "", a.name) == re.sub(r"_\d+$", "", b.name)
    generator, discriminator = to.Adam(), to.Adam()
    generator.build([keras.Variable(np.ones(2, "float32"))])
    discriminator.build([keras.Variable(np.ones(2, "float32"))])
    assert generator.iterations.path != discriminator.iterations.path


@pytest.mark.matrix("name")
@pytest.mark.parametrize("name", [n for n in to.__all__ if isinstance(getattr(to, n), type)
                                  and issubclass(getattr(to, n), keras.optimizers.Optimizer)
                                  and n != "Optimizer"])
def test_every_optimizer_is_named_from_its_class(name):
    cls = getattr(to, name)
    # A wrapper is made around an inner optimizer, and is not wrapped itself.
    wrapper = issubclass(cls, OptimizerWrapper)
    make = (lambda: cls(to.Adam())) if wrapper else cls
    a, b = make(), make()
    prefix = re.sub(r"_\d+$", "", a.name)
    assert a.name != b.name and re.fullmatch(re.escape(prefix) + r"_\d+", b.name)
    if not wrapper:
        assert to.Lookahead(make()).name.startswith("lookahead")
