"""The wrappers and transforms stacked on each other, under ``LossScaleOptimizer`` and with the
inner optimizer's ``gradient_accumulation_steps``: each stack equals the composition its parts
define, step by step (float64, the gradients of ``tests/reference_problem.py``), and resumes
from a ``.keras`` file.

The orders: a transform (GradientCentralization, AdaptiveGradientClipping) goes anywhere;
SAM goes outside Lookahead, SWA and ScheduleFree (they count steps by ``iterations``, which SAM
advances every other call; the other order raises ``ValueError``, through transforms too);
``LossScaleOptimizer`` goes outside every wrapper, as ``compile`` puts it under
``mixed_float16`` (inside one raises ``ValueError``: the wrapper would see scaled gradients).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from tfoptim.callbacks import evaluation_values
from reference_problem import gradient, initial_problem
from trajectory import assert_close, floatx
from wrapper_fixtures import SHAPES

#: The wrappers with a rule of their own, each around the inner optimizer it is given.
AROUND = {
    "SAM": lambda inner: to.SAM(inner, rho=0.2),
    "ScheduleFree": lambda inner: to.ScheduleFree(inner, warmup_steps=3),
    "GradientCentralization": lambda inner: to.GradientCentralization(inner),
    "AdaptiveGradientClipping": lambda inner: to.AdaptiveGradientClipping(inner, clip_factor=0.05),
    "Lookahead": lambda inner: to.Lookahead(inner, sync_period=3),
    "SWA": lambda inner: to.SWA(inner, start_averaging=2, average_period=3),
}
NEW = ["SAM", "ScheduleFree", "GradientCentralization", "AdaptiveGradientClipping"]
#: Exact in float64: the same operations in the same order on both sides.
RTOL = 1e-15


class Problem:
    """The reference problem's variables, stepped one ``apply`` at a time by ``optimizer``."""

    def __init__(self, optimizer):
        params, targets, curvatures = initial_problem(shapes=SHAPES)
        self.variables = [keras.Variable(p, name=f"param{i}") for i, p in enumerate(params)]
        self.optimizer = optimizer
        optimizer.build(self.variables)

        @tf.function
        def step(scale, poison):
            grads = [gradient(v.value, t, c) * scale for v, t, c in zip(self.variables, targets, curvatures)]
            grads[0] = grads[0] * poison
            optimizer.apply(grads, self.variables)

        self._step = step

    def step(self, scale=1.0, poison=1.0):
        self._step(tf.constant(scale, "float64"), tf.constant(poison, "float64"))

    def weights(self):
        return [v.numpy().copy() for v in self.variables]

    def evaluation(self):
        """The evaluation weights (the weights, for a stack that keeps none)."""
        values = evaluation_values(self.optimizer, self.variables)
        return self.weights() if values is None else [np.asarray(v) for v in values]


def calls_per_step(name):
    return 2 if name == "SAM" else 1


@pytest.mark.parametrize("outer", [to.Lookahead, to.SWA, to.ScheduleFree, to.SAM])
@pytest.mark.parametrize("transform", [to.GradientCentralization, to.AdaptiveGradientClipping])
def test_sam_is_refused_inside_a_step_counter_through_a_transform(outer, transform):
    with pytest.raises(ValueError, match="`optimizer`.*wrap the other way round"):
        outer(transform(to.SAM(to.SGD(0.1))))


@pytest.mark.parametrize("name", list(AROUND))
def test_refuses_a_loss_scale_optimizer_inside(name):
    with pytest.raises(ValueError, match="`optimizer`.*LossScaleOptimizer\\("):
        AROUND[name](keras.optimizers.LossScaleOptimizer(to.SGD(0.1)))


@pytest.mark.variants("ScheduleFree")
@pytest.mark.parametrize("name", NEW)
def test_under_loss_scale_optimizer_equals_the_unscaled_stack(name):
    """Gradients scaled by a power of two (undone exactly), one non-finite call skipped whole:
    the wrapper's state does not see it, so the stack equals the unscaled one without it."""
    with floatx("float64"):
        scaled = Problem(keras.optimizers.LossScaleOptimizer(AROUND[name](to.Adam(0.01)), initial_scale=2.0**10))
        for call in range(9):
            scaled.step(float(scaled.optimizer.dynamic_scale.numpy()), np.inf if call == 3 else 1.0)
        plain = Problem(AROUND[name](to.Adam(0.01)))
        for _ in range(8):
            plain.step()
        assert_close(scaled.weights(), plain.weights(), RTOL)
        assert_close(scaled.evaluation(), plain.evaluation(), RTOL)


def lookahead(problem, steps, per_step, sync_period=3, slow_step_size=0.5):
    """Lookahead's rule written out around ``problem``'s stack."""
    slow = problem.weights()
    for step in range(1, steps + 1):
        for _ in range(per_step):
            problem.step()
        if step % sync_period == 0:
            slow = [s + slow_step_size * (w - s) for s, w in zip(slow, problem.weights())]
            for variable, value in zip(problem.variables, slow):
                variable.assign(value)
    return problem.weights(), slow


def swa(problem, steps, per_step, start_averaging=2, average_period=3):
    """SWA's rule written out around ``problem``'s stack: the running mean of the snapshots
    (``torch.optim.swa_utils.AveragedModel``'s form)."""
    average, count = None, 0
    for step in range(steps):
        for _ in range(per_step):
            problem.step()
        if step >= start_averaging and (step - start_averaging) % average_period == 0:
            weights = problem.weights()
            average = weights if average is None else [a + (w - a) / (count + 1) for a, w in zip(average, weights)]
            count += 1
    return problem.weights(), average


@pytest.mark.variants("SAM-Lookahead", "ScheduleFree-SWA")
@pytest.mark.parametrize("outer", ["Lookahead", "SWA"])
@pytest.mark.parametrize("name", NEW)
def test_averaging_wrapper_around_equals_the_composition(name, outer):
    """Lookahead or SWA around each wrapper (SAM: around means SAM outside, the only order
    allowed, and Lookahead's or SWA's rule then sees SAM's steps) equals its rule written out
    around the wrapper's own stack."""
    per_step = calls_per_step(name)
    with floatx("float64"):
        if name == "SAM":
            stacked = Problem(to.SAM(AROUND[outer](to.SGD(0.05)), rho=0.2))
        else:
            stacked = Problem(AROUND[outer](AROUND[name](to.SGD(0.05))))
        for _ in range(12 * per_step):
            stacked.step()
        written_out = (lookahead if outer == "Lookahead" else swa)(Problem(AROUND[name](to.SGD(0.05))), 12, per_step)
        weights, held = stacked.weights(), stacked.evaluation()
    assert_close(weights, written_out[0], RTOL)
    assert_close(held, written_out[1], RTOL)


@pytest.mark.variants("AdaptiveGradientClipping-SWA")
@pytest.mark.parametrize("inner", ["Lookahead", "SWA"])
@pytest.mark.parametrize("transform", ["GradientCentralization", "AdaptiveGradientClipping"])
def test_a_transform_commutes_with_an_averaging_wrapper(transform, inner):
    """A transform changes the gradient before any step; Lookahead and SWA act after the
    step: either order is the same stack."""
    with floatx("float64"):
        outside = Problem(AROUND[transform](AROUND[inner](to.SGD(0.05))))
        inside = Problem(AROUND[inner](AROUND[transform](to.SGD(0.05))))
        for _ in range(12):
            outside.step()
            inside.step()
        assert_close(outside.weights(), inside.weights(), RTOL)
        assert_close(outside.evaluation(), inside.evaluation(), RTOL)


@pytest.mark.variants("SWA", "SAM")
@pytest.mark.parametrize("stack", [
    *(pytest.param(lambda inner, name=name: AROUND[name](inner), id=name) for name in AROUND),
    # The deepest stack the orders allow: Keras's accumulation three wrappers below SAM's cond.
    pytest.param(lambda inner: AROUND["SAM"](AROUND["Lookahead"](AROUND["GradientCentralization"](inner))),
                 id="SAM-Lookahead-GradientCentralization"),
])
def test_gradient_accumulation_on_the_innermost_optimizer(stack):
    """Accumulating two micro-batches of the gradient at the same weights is one step with
    that gradient: after 2n calls the stack (weights and evaluation weights) is where it is
    after n calls without accumulation. The calls that only accumulate leave every wrapper's
    state alone, SWA takes its snapshot on the update's call only."""
    with floatx("float64"):
        accumulated = Problem(stack(to.SGD(0.05, gradient_accumulation_steps=2)))
        plain = Problem(stack(to.SGD(0.05)))
        per_step = 2 if isinstance(plain.optimizer, to.SAM) else 1
        for _ in range(8 * per_step):
            plain.step()
            for _ in range(2):
                accumulated.step()
        assert_close(accumulated.weights(), plain.weights(), RTOL)
        assert_close(accumulated.evaluation(), plain.evaluation(), RTOL)
