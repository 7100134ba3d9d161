"""GradientCentralization and AdaptiveGradientClipping follow pytorch_optimizer's
``centralize_gradient`` and ``agc`` (4.1.0) applied before a ``torch.optim`` step (recorded by
``tests/fixtures/record_wrappers.py`` in PyTorch's layout, outputs first, stored in Keras's);
the three-axis case, where pytorch_optimizer reduces one axis only, follows the NumPy formula
of optax and NFNets.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from tfoptim.compat import torch as torch_compat
from trajectory import assert_close, floatx, run
from wrapper_fixtures import CHECKPOINTS, MANIFEST, SHAPES, configs, expected

# The same float64 arithmetic in another order: below 3e-14 relative over 200 steps.
RTOL = 1e-12


def wrapped(spec):
    optimizer = getattr(torch_compat, spec["base"].rsplit(".", 1)[1])(**spec["base_kwargs"])
    for transform in reversed(spec["transforms"]):
        kwargs = transform["kwargs"]
        if transform["function"].endswith("agc"):
            optimizer = to.AdaptiveGradientClipping(optimizer, clip_factor=kwargs["agc_clip_val"], eps=kwargs["agc_eps"])
        else:
            optimizer = to.GradientCentralization(optimizer, conv_only=kwargs["gc_conv_only"])
    return optimizer


@pytest.mark.parametrize("config", configs("centralize_gradient") + configs("pytorch_optimizer.agc"))
def test_matches_pytorch_optimizer(config):
    with floatx("float64"):
        ours = run(wrapped(MANIFEST["configs"][config]), CHECKPOINTS, shapes=SHAPES)
    for step in CHECKPOINTS:
        assert_close(ours[step], expected(config, step), RTOL)


def numpy_unitwise_norm(x):
    if x.ndim <= 1:
        return np.sqrt(np.sum(x**2))
    return np.sqrt(np.sum(x**2, axis=tuple(range(x.ndim - 1)), keepdims=True))


def numpy_agc(g, w, clip, eps):
    max_norm = np.maximum(numpy_unitwise_norm(w), eps) * clip
    g_norm = np.maximum(numpy_unitwise_norm(g), 1e-6)
    return np.where(g_norm > max_norm, g * (max_norm / g_norm), g)


def numpy_gc(g):
    return g if g.ndim <= 1 else g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True)


# A one-dimensional convolution kernel (width, in, out), a zero-initialised bias (eps decides its
# clipping), a scalar.
SHAPES_3D = ((3, 2, 4), (5,), ())


@pytest.mark.parametrize("transform", ["agc", "gc"])
def test_numpy_formula_three_axes_zero_bias_and_scalar(transform):
    params, targets, curvatures = initial_problem(shapes=SHAPES_3D)
    params[1] = np.zeros(5)
    with floatx("float64"):
        variables = [keras.Variable(p) for p in params]
        inner = keras.optimizers.SGD(0.1)
        optimizer = (to.AdaptiveGradientClipping(inner, clip_factor=0.05, eps=0.01) if transform == "agc"
                     else to.GradientCentralization(inner))
        for _ in range(20):
            optimizer.apply([gradient(v.value, t, c) for v, t, c in zip(variables, targets, curvatures)], variables)
    for _ in range(20):
        grads = [gradient(p, t, c) for p, t, c in zip(params, targets, curvatures)]
        grads = [numpy_agc(g, p, 0.05, 0.01) if transform == "agc" else numpy_gc(g) for g, p in zip(grads, params)]
        params = [p - 0.1 * g for p, g in zip(params, grads)]
    assert_close([v.numpy() for v in variables], params, 1e-14)
    assert not np.allclose(params[1], 0.0)


def test_composes_with_lookahead_and_gradient_accumulation():
    """Lookahead(GradientCentralization(SGD with accumulation 2)) on gradients of one function:
    two micro-steps from the same weights are one step, so it equals the same stack without
    accumulation after half the calls."""
    with floatx("float64"):
        accumulated = run(to.Lookahead(to.GradientCentralization(to.SGD(0.05, gradient_accumulation_steps=2)),
                                       sync_period=1, slow_step_size=1.0), (20,), shapes=SHAPES)[20]
        plain = run(to.GradientCentralization(to.SGD(0.05)), (10,), shapes=SHAPES)[10]
    assert_close(accumulated, plain, 1e-15)


@pytest.mark.parametrize("cls", [to.GradientCentralization, to.AdaptiveGradientClipping])
def test_config(cls):
    optimizer = cls(keras.optimizers.Adam(0.01))
    config = optimizer.get_config()
    own = {"conv_only"} if cls is to.GradientCentralization else {"clip_factor", "eps"}
    assert set(config) == {"name", "optimizer"} | own
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize(
    "make, name",
    [(lambda: to.AdaptiveGradientClipping("sgd", clip_factor=0.0), "clip_factor"),
     (lambda: to.AdaptiveGradientClipping("sgd", eps=-1.0), "eps"),
     (lambda: to.GradientCentralization("sgd", conv_only=1), "conv_only"),
     (lambda: to.GradientCentralization("sgd", clipnorm=1.0), "clipnorm"),
     (lambda: to.AdaptiveGradientClipping(3), "optimizer")],
)
def test_invalid_arguments(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()
