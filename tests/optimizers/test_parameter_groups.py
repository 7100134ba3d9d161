"""Parameter groups: ``learning_rate_multipliers`` and ``weight_decay_overrides`` (patterns on
variable paths) and :func:`tfoptim.optimizers.layer_wise_learning_rate_multipliers`.

Reference: the NumPy rules of ``numpy_rules`` run per variable with that variable's rate
(``factor * lr``) and decoupled decay (``theta <- theta - factor * lr * wd * theta`` before the
rule), 200 float64 steps of ``tests/reference_problem.py`` (variables ``param0..param2``).
"""

import keras
import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import STEPS, gradient, initial_problem
from trajectory import MIXED_SHAPES, assert_close, floatx, run

CHECKPOINTS = (1, 10, 50, STEPS)
# First match wins: param2 matches both rate patterns and takes 0.5.
MULTIPLIERS = {"param[02]$": 0.5, "param2": 3.0, "param1": 2.0}
# param0 excluded, param2 decayed more; param1 keeps the optimizer's weight_decay.
OVERRIDES = {"param0": 0.0, "param2": 0.2}
FACTORS, DECAYS = (0.5, 2.0, 0.5), lambda wd: (0.0, wd, 0.2)


def numpy_trajectory(rule_factory, lr, weight_decay, **kwargs):
    params, targets, curvatures = initial_problem()
    rules = [nr.decoupled_weight_decay(rule_factory(**kwargs), wd) for wd in DECAYS(weight_decay)]
    states = [init(p) for (_, init), p in zip(rules, params)]
    out = {}
    for t in range(STEPS):
        params = [
            step(s, p, gradient(p, y, c), lr * factor, t)
            for (step, _), s, p, y, c, factor in zip(rules, states, params, targets, curvatures, FACTORS)
        ]
        if t + 1 in CHECKPOINTS:
            out[t + 1] = [p.copy() for p in params]
    return out


# id -> (tfoptim class, kwargs, NumPy factory, its kwargs). SGD's float64 step is TensorFlow's
# training kernel (its training_op), the others run their own update_step.
CASES = {
    "adam": (to.Adam, dict(amsgrad=True), nr.adam, dict(amsgrad=True)),
    "sgd": (to.SGD, dict(momentum=0.9, nesterov=True), nr.sgd, dict(momentum=0.9, nesterov=True)),
    "lion": (to.Lion, dict(), nr.lion, dict()),
}


@pytest.mark.parametrize("fast_path", [True, False, "grouped"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_follows_numpy(case, fast_path):
    klass, kwargs, factory, numpy_kwargs = CASES[case]
    lr, weight_decay = (0.003 if klass is to.Lion else 0.01), 0.05
    with floatx("float64"):
        optimizer = klass(
            lr, weight_decay=weight_decay, learning_rate_multipliers=MULTIPLIERS,
            weight_decay_overrides=OVERRIDES, exact_hyperparameters=True, fast_path=fast_path, **kwargs,
        )
        ours = run(optimizer, CHECKPOINTS)
    expected = numpy_trajectory(factory, lr, weight_decay, **numpy_kwargs)
    for step in CHECKPOINTS:
        assert_close(ours[step], expected[step], nr.RTOL)
    assert [optimizer.settings_of(v) for v in optimizer._trainable_variables] == list(zip(FACTORS, DECAYS(weight_decay)))


def test_grouped_small_variables_split_by_settings():
    """``fast_path="grouped"`` keeps one flat group per (dtype, rate factor, decay): the same
    trajectory as Keras's per-variable loop."""
    multipliers, overrides = {"param[0-4]$": 0.5, "param1[12]": 2.0}, {"param[3-6]$": 0.0}
    results, groups = {}, None
    with floatx("float64"):
        for fast in ("grouped", False):
            optimizer = to.Adam(0.01, weight_decay=0.01, learning_rate_multipliers=multipliers,
                                weight_decay_overrides=overrides, fast_path=fast)
            results[fast] = run(optimizer, (1, 20), shapes=MIXED_SHAPES)
            if fast:
                groups = sorted((g.settings, len(g.members)) for g in optimizer._groups)
    for step in (1, 20):
        assert_close(results["grouped"][step], results[False][step], 1e-12)
    # param0..2 (rate 0.5, decay 0.01), param3..4 (0.5, none), param5..6 (1, none), param7..10 (1, 0.01).
    assert groups == [((0.5, 0.0), 2), ((0.5, 0.01), 3), ((1.0, 0.0), 2), ((1.0, 0.01), 4)]


@pytest.mark.matrix("make_optimizer")
def test_every_optimizer_freezes_a_variable_at_factor_zero(make_optimizer):
    """A factor of 0 gives the variable a rate of 0, which stops it in every rule (the rate
    multiplies each step, the learning-rate-free ones included), while the others move. The
    wrappers (Lookahead, SWA) take the settings on the optimizer they wrap."""
    base = make_optimizer()
    if not isinstance(base, to.Optimizer):
        base = base.inner_optimizer
    if isinstance(base, to.ProximalAdagrad):
        pytest.skip("TensorFlow's ResourceApplyProximalAdagrad refuses a rate of 0")
    config = {**base.get_config(), "learning_rate_multipliers": {"param1$": 0.0}}
    with floatx("float64"):
        optimizer = type(base).from_config(config)
        moved = run(optimizer, (20,))[20]
    start = initial_problem()[0]
    np.testing.assert_array_equal(moved[1], start[1])
    assert not np.array_equal(moved[0], start[0]) and not np.array_equal(moved[2], start[2])


def test_keras_exclusion_wins_over_overrides():
    variables = [keras.Variable(np.ones(3), name=n) for n in ("kernel", "bias")]
    optimizer = to.AdamW(weight_decay=0.1, weight_decay_overrides={".*": 0.3})
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build(variables)
    assert [optimizer.weight_decay_of(v) for v in variables] == [0.3, 0.0]


def test_overrides_refused_where_the_rule_owns_its_decay():
    with pytest.raises(ValueError, match="weight_decay_overrides"):
        to.Muon(weight_decay_overrides={"bias": 0.0})


@pytest.mark.parametrize("argument", ["learning_rate_multipliers", "weight_decay_overrides"])
@pytest.mark.parametrize("value, match", [
    ([("a", 1.0)], "must be a dict"),
    ({"(": 1.0}, "invalid pattern"),
    ({"a": -1.0}, "finite floats >= 0"),
    ({"a": float("nan")}, "finite floats >= 0"),
    ({"a": "1"}, "finite floats >= 0"),
    ({1: 1.0}, "regular-expression strings"),
])
def test_bad_patterns(argument, value, match):
    with pytest.raises(ValueError, match=match):
        to.SGD(**{argument: value})


def model_of_three():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="tanh", name="embed")(inputs)
    hidden = keras.layers.Dense(6, activation="tanh", name="block")(hidden)
    outputs = keras.layers.Dense(2, name="head")(hidden)
    return keras.Model(inputs, outputs)


def test_layer_wise_decay_by_layer_order():
    multipliers = to.layer_wise_learning_rate_multipliers(model_of_three(), 0.5)
    assert multipliers == {
        "^embed/kernel$": 0.25, "^embed/bias$": 0.25,
        "^block/kernel$": 0.5, "^block/bias$": 0.5,
        "^head/kernel$": 1.0, "^head/bias$": 1.0,
    }


def test_layer_wise_decay_by_function_and_depth():
    """BEiT's assignment: embeddings 0, block k at k + 1, the head at depth = blocks + 1."""
    index = {"embed": 0, "block": 1, "head": 2}
    multipliers = to.layer_wise_learning_rate_multipliers(
        model_of_three(), 0.8, layer_index=lambda path: index[path.split("/")[0]], depth=3
    )
    assert multipliers["^embed/kernel$"] == pytest.approx(0.8**3, rel=1e-15)
    assert multipliers["^head/bias$"] == pytest.approx(0.8, rel=1e-15)


@pytest.mark.parametrize("kwargs, match", [
    (dict(decay=0.0), "decay"),
    (dict(decay=1.5), "decay"),
    (dict(decay=0.5, layer_index=3), "layer_index"),
    (dict(decay=0.5, layer_index=lambda path: -1), "int >= 0"),
    (dict(decay=0.5, depth=1), "depth"),
])
def test_layer_wise_decay_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to.layer_wise_learning_rate_multipliers(model_of_three(), **kwargs)


def test_keras_file_resumes_exactly(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    keras.utils.set_random_seed(1)
    first = model_of_three()
    multipliers = to.layer_wise_learning_rate_multipliers(first, 0.7)
    first.compile(
        optimizer=to.AdamW(0.01, learning_rate_multipliers=multipliers, weight_decay_overrides={"bias": 0.0}),
        loss="mse",
    )
    first.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "m.keras")
    resumed = keras.saving.load_model(tmp_path / "m.keras")
    config = resumed.optimizer.get_config()
    assert config["learning_rate_multipliers"] == multipliers
    assert config["weight_decay_overrides"] == {"bias": 0.0}
    for model in (first, resumed):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(first.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    factors = {v.path: resumed.optimizer.settings_of(v) for v in resumed.trainable_variables}
    assert factors["embed/kernel"] == (pytest.approx(0.49), 0.004)
    assert factors["head/bias"] == (1.0, 0.0)


@pytest.mark.parametrize("make", [
    lambda **kw: to.AdamW(0.01, weight_decay=0.1, **kw),
    lambda **kw: to.Adan(0.01, weight_decay=0.1, **kw),
    lambda **kw: to.ADOPT(0.005, weight_decay=0.1, **kw),
    lambda **kw: to.MADGRAD(0.01, weight_decay=0.1, **kw),
    lambda **kw: to.SOAP(0.01, weight_decay=0.1, max_precond_dim=8, **kw),
], ids=["AdamW", "Adan", "ADOPT", "MADGRAD", "SOAP"])
@pytest.mark.variants("AdamW", "Adan", "ADOPT", "MADGRAD")  # SOAP's eigenbases: the second tier
def test_override_zero_is_keras_exclusion(make):
    """An override of 0 gives what Keras's ``exclude_from_weight_decay`` gives, also in the
    rules that apply their decay inside their step (Adan's proximal form, ADOPT, MADGRAD, SOAP
    after the step); the other variables keep the optimizer's decay."""
    with floatx("float64"):
        overridden = run(make(weight_decay_overrides={"param1$": 0.0}), (20,))[20]
        excluded_optimizer = make()
        excluded_optimizer.exclude_from_weight_decay(var_names=["param1"])
        excluded = run(excluded_optimizer, (20,))[20]
        decayed = run(make(), (20,))[20]
    for a, b in zip(overridden, excluded):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(overridden[1], decayed[1])
    np.testing.assert_array_equal(overridden[0], decayed[0])
