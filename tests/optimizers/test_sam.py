"""SAM and ASAM follow ``pytorch_optimizer.SAM`` (4.1.0, closure form, float64 norm; see
``tests/fixtures/record_wrappers.py``) around ``torch.optim`` bases; here the bases are the exact
PyTorch ports of ``tfoptim.compat.torch``.

tfoptim's SAM alternates: an ascent call, then a descent call. With the gradients of one
function, as on the reference problem, a pair of calls is exactly one closure-form step, so
the trajectory after ``2k`` calls is compared with the reference after ``k`` steps.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from tfoptim.callbacks import evaluation_values
from tfoptim.compat import torch as torch_compat
from trajectory import assert_close, floatx, run
from wrapper_fixtures import CHECKPOINTS, MANIFEST, SHAPES, configs, expected

# The same float64 arithmetic in another order: below 3e-15 relative over 200 steps.
RTOL = 1e-12


def sam_from(spec):
    kwargs = {"eps" if k == "perturb_eps" else k: v for k, v in spec["kwargs"].items()}
    base = getattr(torch_compat, spec["base"].rsplit(".", 1)[1])(**spec["base_kwargs"])
    return to.SAM(base, **kwargs)


@pytest.mark.parametrize("config", configs("pytorch_optimizer.SAM"))
def test_call_pairs_match_pytorch_optimizer_closure_steps(config):
    with floatx("float64"):
        ours = run(sam_from(MANIFEST["configs"][config]), [2 * s for s in CHECKPOINTS], shapes=SHAPES)
    for step in CHECKPOINTS:
        assert_close(ours[2 * step], expected(config, step), RTOL)


def numpy_sam_sgd(lr, rho, adaptive, pairs, shapes=SHAPES):
    """The paper's SAM (and ASAM) with plain SGD, restated in NumPy."""
    params, targets, curvatures = initial_problem(shapes=shapes)
    for _ in range(pairs):
        grads = [gradient(p, t, c) for p, t, c in zip(params, targets, curvatures)]
        scale = [np.abs(p) if adaptive else 1.0 for p in params]
        norm = np.sqrt(sum(np.sum((s * g) ** 2) for s, g in zip(scale, grads)))
        ascended = [p + rho * s**2 * g / (norm + 1e-12) for p, s, g in zip(params, scale, grads)]
        grads = [gradient(p, t, c) for p, t, c in zip(ascended, targets, curvatures)]
        params = [p - lr * g for p, g in zip(params, grads)]
    return params


@pytest.mark.parametrize("adaptive", [False, True])
def test_the_paper_rule(adaptive):
    with floatx("float64"):
        ours = run(to.SAM(keras.optimizers.SGD(0.05), rho=0.3, adaptive=adaptive), (20,), shapes=SHAPES)
    assert_close(ours[20], numpy_sam_sgd(0.05, 0.3, adaptive, 10), 1e-13)


def test_ascent_holds_the_weights_for_evaluation():
    """After an ascent the model is at w + e; evaluation weights and the descent return to w."""
    with floatx("float64"):
        sam = to.SAM(keras.optimizers.SGD(0.0), rho=0.5)
        start = run(keras.optimizers.SGD(0.0), (1,), shapes=SHAPES)[1]
        ascended = run(sam, (1,), shapes=SHAPES)[1]
        variables = sam._trainable_variables
        held = [np.asarray(v) for v in sam.evaluation_values(variables)]
        assert int(sam.iterations) == 0
        sam.apply([tf.zeros_like(v) for v in variables], variables)
        back = [v.numpy() for v in variables]
    assert not np.allclose(ascended[1], start[1])
    assert_close(held, start, 0.0)
    assert_close(back, start, 0.0)
    assert int(sam.iterations) == 1


def test_inner_evaluation_weights_are_taken_at_the_unperturbed_weights():
    """SAM(ScheduleFree(...)) mid-pair: the evaluation weights are ScheduleFree's x at w."""
    with floatx("float64"):
        sam = to.SAM(to.ScheduleFree(to.SGD(0.1)), rho=0.2)
        run(sam, (7,), shapes=SHAPES)
        variables = sam._trainable_variables
        perturbed = [v.numpy() for v in variables]
        values = [np.asarray(v) for v in evaluation_values(sam, variables)]
        for variable in variables:
            variable.assign(sam._slot(sam._origins, variable))
        x = [np.asarray(v) for v in sam.inner_optimizer.evaluation_values(variables)]
    assert_close(values, x, 0.0)
    assert not np.allclose(perturbed[1], x[1])


def test_gradient_accumulation_averages_the_ascended_gradients():
    """Accumulating 2 pairs from the same weights gives the one pair's gradient twice."""
    with floatx("float64"):
        accumulated = run(to.SAM(to.SGD(0.05, gradient_accumulation_steps=2)), (8,), shapes=SHAPES)[8]
        plain = run(to.SAM(to.SGD(0.05)), (4,), shapes=SHAPES)[4]
    assert_close(accumulated, plain, 1e-15)


def test_wraps_lookahead():
    """SAM(Lookahead(SGD)): Lookahead sees SAM's steps, synchronising every k of them."""
    with floatx("float64"):
        ours = run(to.SAM(to.Lookahead(keras.optimizers.SGD(0.05), sync_period=3), rho=0.3), (12,),
                   shapes=SHAPES)[12]
    params, targets, curvatures = initial_problem(shapes=SHAPES)
    slow = [p.copy() for p in params]
    for step in range(1, 7):
        grads = [gradient(p, t, c) for p, t, c in zip(params, targets, curvatures)]
        norm = np.sqrt(sum(np.sum(g**2) for g in grads))
        grads = [gradient(p + 0.3 * g / (norm + 1e-12), t, c) for p, g, t, c in zip(params, grads, targets, curvatures)]
        params = [p - 0.05 * g for p, g in zip(params, grads)]
        if step % 3 == 0:
            slow = [s + 0.5 * (p - s) for s, p in zip(slow, params)]
            params = [s.copy() for s in slow]
    assert_close(ours, params, 1e-13)


def test_cannot_be_wrapped_by_a_wrapper_that_counts_iterations():
    for outer in (to.Lookahead, to.SWA, to.ScheduleFree, to.SAM):
        with pytest.raises(ValueError, match="`optimizer`.*wrap the other way round"):
            outer(to.SAM(to.SGD(0.1)))


def test_loss_scale_optimizer_skips_a_non_finite_ascent_without_losing_the_phase():
    with floatx("float64"):
        variables = [keras.Variable(p) for p in initial_problem(shapes=SHAPES)[0]]
        _, targets, curvatures = initial_problem(shapes=SHAPES)
        scaled = keras.optimizers.LossScaleOptimizer(to.SAM(to.SGD(0.05), rho=0.2), initial_scale=2.0**10)
        scaled.build(variables)
        for call in range(7):
            scale = scaled.dynamic_scale.numpy()
            grads = [gradient(v.value, t, c) * scale for v, t, c in zip(variables, targets, curvatures)]
            if call == 2:
                grads[0] = grads[0] * np.inf
            scaled.apply(grads, variables)
        plain = run(to.SAM(to.SGD(0.05), rho=0.2), (6,), shapes=SHAPES)[6]
    assert_close([v.numpy() for v in variables], plain, 1e-15)


def test_resumes_mid_pair_after_save_and_load(tmp_path):
    """Three batches an epoch: the save after the first epoch falls between ascent and descent."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")

    def compiled():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=to.SAM(to.Adam(0.01), rho=0.1), loss="mse")
        return model

    def fit(model, epochs, initial_epoch=0):
        model.fit(x, y, batch_size=16, epochs=initial_epoch + epochs, initial_epoch=initial_epoch,
                  shuffle=False, verbose=0)

    straight = compiled()
    fit(straight, 3)
    interrupted = compiled()
    fit(interrupted, 1)
    assert bool(interrupted.optimizer._perturbed())
    interrupted.save(tmp_path / "model.keras")
    resumed = keras.models.load_model(tmp_path / "model.keras")
    fit(resumed, 2, initial_epoch=1)
    for a, b in zip(resumed.get_weights() + [v.numpy() for v in resumed.optimizer.variables],
                    straight.get_weights() + [v.numpy() for v in straight.optimizer.variables]):
        np.testing.assert_array_equal(a, b)


def test_config():
    sam = to.SAM(keras.optimizers.Adam(0.01), rho=0.5, adaptive=True, eps=1e-8)
    config = sam.get_config()
    assert set(config) == {"name", "optimizer", "rho", "adaptive", "eps"}
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(sam))
    assert type(restored) is to.SAM and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(rho=0.0), "rho"), (dict(rho=-1.0), "rho"), (dict(adaptive="yes"), "adaptive"),
     (dict(eps=-1e-12), "eps"), (dict(learning_rate=0.1), "learning_rate")],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        to.SAM(keras.optimizers.SGD(), **kwargs)
