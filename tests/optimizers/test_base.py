"""The shared base: argument checks, non-finite skipping, coupled L2, and the fast path."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
import tfoptim.optimizers._fast_path as fast_path_module
import tfoptim.optimizers.base as base
from reference_problem import gradient, initial_problem
from trajectory import MIXED_SHAPES, assert_close, assert_fast_path_follows_slow_path, floatx, run

INVALID = [
    (lambda: to.SGD(learning_rate=-0.1), "learning_rate"),
    (lambda: to.Adam(learning_rate=float("nan")), "learning_rate"),
    (lambda: to.Adam(learning_rate=float("inf")), "learning_rate"),
    (lambda: to.Adam(learning_rate="fast"), "learning_rate"),
    (lambda: to.Adam(beta_1=1.0), "beta_1"),
    (lambda: to.Adam(beta_2=-0.1), "beta_2"),
    (lambda: to.AdamW(beta_1=1.5), "beta_1"),
    (lambda: to.RMSprop(rho=1.0), "rho"),
    (lambda: to.RMSprop(momentum=-0.5), "momentum"),
    (lambda: to.SGD(momentum=1.0), "momentum"),
    (lambda: to.Adam(epsilon=0.0), "epsilon"),
    (lambda: to.RMSprop(epsilon=-1e-7), "epsilon"),
    (lambda: to.Adagrad(epsilon=0.0, initial_accumulator_value=0.0), "epsilon"),
    (lambda: to.Adagrad(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: to.DynamicGradientDescent(decay_rate=0.0), "decay_rate"),
    (lambda: to.DynamicGradientDescent(decay_rate=1.01), "decay_rate"),
    (lambda: to.DynamicGradientDescent(learning_rate=keras.optimizers.schedules.CosineDecay(0.1, 10)), "learning_rate"),
    (lambda: to.SGD(dampening=0.5), "dampening"),
    (lambda: to.SGD(momentum_buffer="velocity"), "momentum_buffer"),
    (lambda: to.SGD(momentum=0.9, nesterov=True, dampening=0.5, momentum_buffer="gradient"), "Nesterov"),
    (lambda: to.Adam(weight_decay=-0.1), "weight_decay"),
    (lambda: to.AdamW(weight_decay=None), "weight_decay"),
    (lambda: to.Adam(coupled_weight_decay=-1.0), "coupled_weight_decay"),
    (lambda: to.Adam(clipnorm=0.0), "clipnorm"),
    (lambda: to.Adam(beta1=0.9), "beta1"),
]


@pytest.mark.parametrize("make, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize(
    "learning_rate",
    [0.05, 1, keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.9), lambda: 0.05],
    ids=["float", "int", "schedule", "callable"],
)
def test_learning_rate_kinds(learning_rate):
    variable = keras.Variable([1.0, 2.0])
    to.SGD(learning_rate).apply([tf.constant([1.0, 1.0])], [variable])
    assert np.all(variable.numpy() < [1.0, 2.0])


def nan_step(optimizer, variables):
    bad = [tf.constant([np.nan, 1.0]), tf.constant([[1.0, np.inf]])]
    optimizer.apply(bad, variables)


def test_skip_nonfinite_leaves_all_state_untouched():
    variables = [keras.Variable([1.0, 2.0]), keras.Variable([[3.0, 4.0]])]
    optimizer = to.Adam(0.1, skip_nonfinite=True)
    optimizer.apply([tf.constant([0.5, 0.5]), tf.constant([[0.5, 0.5]])], variables)
    before = [v.numpy().copy() for v in optimizer.variables + variables]
    nan_step(optimizer, variables)
    after = [v.numpy() for v in optimizer.variables + variables]
    changed = [a for a, b in zip(after, before) if not np.array_equal(a, b)]
    assert len(changed) == 1 and changed[0] == 1  # only skipped_steps, from 0 to 1
    assert int(optimizer.skipped_steps) == 1
    assert int(optimizer.iterations) == 1
    optimizer.apply([tf.constant([0.5, 0.5]), tf.constant([[0.5, 0.5]])], variables)
    assert int(optimizer.iterations) == 2


def test_without_protection_nan_reaches_the_state():
    """The documented default: like Keras, nothing is filtered."""
    variables = [keras.Variable([1.0, 2.0]), keras.Variable([[3.0, 4.0]])]
    optimizer = to.Adam(0.1)
    nan_step(optimizer, variables)
    assert np.isnan(variables[0].numpy()[0])
    with pytest.raises(AttributeError, match="skip_nonfinite"):
        optimizer.skipped_steps


def test_skip_nonfinite_in_model_fit_and_under_mirrored_strategy(two_cpu_strategy):
    x = np.ones((32, 4), "float32")
    y = np.ones((32, 1), "float32")
    x[20] = np.nan  # lands on the second replica of the second batch
    for scope in (tf.distribute.get_strategy(), two_cpu_strategy):
        with scope.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer=to.SGD(0.01, skip_nonfinite=True), loss="mse")
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert int(model.optimizer.skipped_steps.numpy()) == 1
        assert int(model.optimizer.iterations.numpy()) == 1


def test_coupled_weight_decay_is_l2_added_to_the_gradient():
    with floatx("float64"):
        coupled = run(to.Adam(0.01, coupled_weight_decay=0.1))[200]
    params, targets, curvatures = initial_problem()
    with floatx("float64"):
        optimizer = to.Adam(0.01)
        variables = [keras.Variable(p) for p in params]
        for _ in range(200):
            grads = [gradient(v.numpy(), t, c) + 0.1 * v.numpy() for v, t, c in zip(variables, targets, curvatures)]
            optimizer.apply([tf.constant(g) for g in grads], variables)
    assert_close(coupled, [v.numpy() for v in variables], 1e-12)




@pytest.mark.parametrize(
    "make, rtol, by_increment",
    [
        # The "gradient" form: the "step" form is stepped by a training op (below).
        (lambda fast: to.SGD(0.05, momentum=0.9, nesterov=True, momentum_buffer="gradient", fast_path=fast), 1e-12, True),
        # Centered RMSprop's ``v - mg**2`` cancels where the gradient barely changes, which
        # magnifies XLA's reassociation (last bits) to 6e-9 on one of the 2048-element variables.
        (lambda fast: to.RMSprop(0.001, centered=True, momentum=0.5, fast_path=fast), 1e-8, True),
        (lambda fast: to.Adam(0.01, amsgrad=True, weight_decay=0.01, fast_path=fast), 1e-12, False),
        (lambda fast: to.Adagrad(0.1, coupled_weight_decay=0.01, fast_path=fast), 1e-12, False),
        (lambda fast: to.Adagrad(0.1, fast_path=fast), 1e-12, True),
    ],
    ids=["sgd", "rmsprop", "adam-decay", "adagrad-l2", "adagrad"],
)
def test_fast_path_follows_the_slow_path(make, rtol, by_increment):
    """Same rule, fused by XLA and grouped (stepped from the members' values, or from zero
    when weight decay does not read them) or not: float64 trajectories agree to rounding."""
    fast_optimizer = assert_fast_path_follows_slow_path(make, 200, rtol)
    assert len(fast_optimizer._groups) == 1
    assert fast_optimizer._steps_by_increment(fast_optimizer._groups[0]) == by_increment


# Every rule marked ``increment_only`` but the stateless ones (no slots, so nothing is grouped),
# at its defaults without the weight decay that makes a group read the weights, in a
# configuration without a training op (which groups nothing).
INCREMENT_ONLY = sorted(
    name for name in to.__all__
    if getattr(getattr(to, name), "increment_only", False)
    and name not in ("GradientDescent", "DynamicGradientDescent")
)
INCREMENT_KWARGS = {"SGD": dict(momentum=0.9, momentum_buffer="gradient"), "AdamW": dict(weight_decay=0.0)}


@pytest.mark.parametrize("name", INCREMENT_ONLY)
def test_rules_marked_increment_only_do_not_read_the_weights(name):
    """Their groups are stepped from zero: a rule that read the weights would read zeros there
    and part from the per-variable path at step 1. 20 steps agree to XLA's reassociation
    (measured: 5e-16 at most)."""
    rule, kwargs = getattr(to, name), INCREMENT_KWARGS.get(name, {})
    optimizer = assert_fast_path_follows_slow_path(lambda fast: rule(fast_path=fast, **kwargs), 20, 1e-14)
    assert optimizer._grouped and optimizer._steps_by_increment(optimizer._groups[0])


# -- small variables as flat buffers ------------------------------------------------------------


def test_small_variables_share_flat_slots_per_dtype_and_decay():
    variables = [keras.Variable(np.ones(s, "float32"), name=n) for s, n in
                 [((3,), "a"), ((4, 5), "b"), ((7,), "c_bias"), ((2,), "d_bias"), ((200, 100), "e")]]
    variables.append(keras.Variable(np.ones(5, "float64"), name="f"))
    optimizer = to.Adam(weight_decay=0.1, fast_path="grouped")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build(variables)
    groups = sorted((g.decays, [v.name for v in g.members]) for g in optimizer._groups)
    # f is alone in float64, e is large: both keep per-variable slots.
    assert groups == [(False, ["c_bias", "d_bias"]), (True, ["a", "b"])]
    assert optimizer._momentums[0] is None and optimizer._momentums[4] is not None
    assert [tuple(optimizer._momentums[g.index].shape) for g in optimizer._groups] == [(23,), (9,)]


def missing_and_sparse_step(optimizer, variables, rows):
    """One step where the first variable has no gradient and the second a sparse one with a
    repeated row."""
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), tf.constant(rows), tf.constant([4, 2]))
    optimizer.apply([None, sparse, tf.constant([0.5, -0.5, 1.0])], variables)


@pytest.mark.parametrize("rule", [to.Adam, to.LazyAdam])
@pytest.mark.parametrize("weight_decay", [None, 0.01], ids=["by-increment", "from-values"])
def test_grouped_variables_without_a_gradient_or_with_a_sparse_one(rule, weight_decay):
    """Keras leaves a variable without a gradient, and its slots, as they are; a sparse
    gradient acts as its dense sum for Adam, and moves only its rows for LazyAdam. All of it
    holds for variables that share flat slots."""
    results = {}
    for fast in ("grouped", False):
        variables = [keras.Variable(np.ones((5,)), dtype="float64"), keras.Variable(np.ones((4, 2)), dtype="float64"),
                     keras.Variable(np.ones((3,)), dtype="float64")]
        optimizer = rule(0.1, weight_decay=weight_decay, fast_path=fast)
        optimizer.apply([tf.ones(5, "float64"), tf.ones((4, 2), "float64"), tf.ones(3, "float64")], variables)
        before = [optimizer.slot_value(optimizer._momentums, variables[0]).numpy()]
        for _ in range(3):
            missing_and_sparse_step(optimizer, variables, [0, 2, 0])
        assert bool(optimizer._groups) == bool(fast)
        np.testing.assert_array_equal(optimizer.slot_value(optimizer._momentums, variables[0]), before[0])
        results[fast] = [v.numpy() for v in variables] + [
            optimizer.slot_value(slots, v).numpy() for slots in (optimizer._momentums, optimizer._velocities) for v in variables
        ]
    # A small group is stepped by the same kernels as its members, on one flat buffer.
    for fast, slow in zip(results["grouped"], results[False]):
        np.testing.assert_array_equal(fast, slow)


def test_grouped_variables_inside_an_xla_compiled_step():
    with floatx("float64"):
        optimizer = to.Adam(0.01, amsgrad=True, weight_decay=0.01, fast_path="grouped")
        xla = run(optimizer, (50,), shapes=MIXED_SHAPES, jit_compile=True)[50]
        slow = run(to.Adam(0.01, amsgrad=True, weight_decay=0.01, fast_path=False), (50,), shapes=MIXED_SHAPES)[50]
    assert optimizer._groups and optimizer._fused_updates == {}
    assert_close(xla, slow, 1e-12)


def test_saved_layout_is_keras_per_variable_layout_on_both_paths():
    """``save_own_variables`` writes the slow path's layout from flat slots; each path loads
    what the other saved."""
    stores = {}
    optimizers = {}
    for fast in ("grouped", False):
        with floatx("float64"):
            optimizers[fast] = to.Adam(0.01, amsgrad=True, fast_path=fast)
            run(optimizers[fast], (20,), shapes=MIXED_SHAPES)
        stores[fast] = {}
        optimizers[fast].save_own_variables(stores[fast])
    assert optimizers["grouped"]._groups and not optimizers[False]._groups
    assert len(optimizers["grouped"].variables) < len(optimizers[False].variables)
    assert stores["grouped"].keys() == stores[False].keys()
    for key in stores["grouped"]:
        np.testing.assert_allclose(stores["grouped"][key], stores[False][key], rtol=1e-10, atol=1e-14)
    for fast, other in (("grouped", False), (False, "grouped")):
        optimizers[fast].load_own_variables({k: np.ones_like(v) for k, v in stores[other].items()})
        reloaded = {}
        optimizers[fast].save_own_variables(reloaded)
        assert all(np.all(v == 1) for v in reloaded.values())


def test_environment_variable_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setenv("TFOPTIM_FAST_PATH", "0")
    assert not to.fast_path_enabled()
    optimizer = to.Adam(0.01)
    run(optimizer, (2,), dtype="float32", shapes=MIXED_SHAPES)
    assert optimizer._fused_updates == {}


def fused_sizes(optimizer, shapes, jit_compile=False):
    """Which variable sizes one step sends through the fast path."""
    variables = [keras.Variable(np.ones(s, "float32")) for s in shapes]

    @tf.function(jit_compile=jit_compile)
    def step():
        optimizer.apply([tf.ones(s) for s in shapes], variables)

    step()
    fused = {i for key in optimizer._fused_updates for i in key}
    return sorted(int(np.prod(v.shape)) for v in variables if id(v.value) in fused)


def test_fused_call_thresholds():
    shapes = [(to.FAST_PATH_MIN_SIZE - 1,), (to.FAST_PATH_MIN_SIZE,), (to.FUSED_MIN_TOTAL_SIZE,)]
    assert fused_sizes(to.Adam(), shapes) == [to.FAST_PATH_MIN_SIZE, to.FUSED_MIN_TOTAL_SIZE]
    # A rule with a training op steps every variable by it.
    assert fused_sizes(to.SGD(momentum=0.9), shapes) == []
    # Too little in all to pay for the fused call's launch: Keras's kernels, per variable.
    assert fused_sizes(to.Adam(), [(to.FAST_PATH_MIN_SIZE,)] * 3) == []
    assert fused_sizes(to.Adam(), [(to.FAST_PATH_MIN_SIZE,)] * 16) == [to.FAST_PATH_MIN_SIZE] * 16


def test_fused_call_is_split_across_cores(monkeypatch):
    """With two cores and elements enough for two launches, two calls over disjoint variables,
    balanced by size, and the same numbers; a rule that reduces over all variables keeps one."""
    monkeypatch.setattr(fast_path_module, "_cores", lambda: 2)
    shapes = ((3,), (4, 5), (600, 600), (300000,), (100000,))
    with floatx("float64"):
        fast_optimizer = to.Adam(0.01)
        fast = run(fast_optimizer, (20,), shapes=shapes)[20]
        slow = run(to.Adam(0.01, fast_path=False), (20,), shapes=shapes)[20]
        prodigy = to.Prodigy()
        run(prodigy, (1,), shapes=shapes)
    assert sorted(len(variables) for variables in fast_optimizer._fused_updates) == [1, 2]
    assert_close(fast, slow, 1e-12)
    assert len(prodigy._fused_updates) == 1


def test_fast_path_steps_aside_inside_an_xla_compiled_step():
    assert fused_sizes(to.Adam(), [(to.FAST_PATH_MIN_SIZE,)], jit_compile=True) == []


def test_fast_path_steps_aside_under_a_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        variable = keras.Variable(np.ones((200, 100), "float32"))
        optimizer = to.Adam(0.01)

    @tf.function
    def step():
        two_cpu_strategy.run(lambda: optimizer.apply([tf.ones((200, 100))], [variable]))

    step()
    assert optimizer._fused_updates == {}
    assert not np.array_equal(variable.numpy(), np.ones((200, 100)))


# -- TensorFlow's training kernels ------------------------------------------------------------

TRAINING_OPS = {
    "sgd": (lambda fast: to.SGD(0.05, momentum=0.9, fast_path=fast), "ResourceApplyKerasMomentum"),
    "sgd-nesterov-exact": (
        lambda fast: to.SGD(0.05, momentum=0.9, nesterov=True, exact_hyperparameters=True, fast_path=fast),
        "ResourceApplyKerasMomentum",
    ),
    # Both weight decays run before the kernel, as before update_step.
    "sgd-no-momentum-decays": (
        lambda fast: to.SGD(0.05, momentum_buffer="gradient", weight_decay=0.01, coupled_weight_decay=0.001, fast_path=fast),
        "ResourceApplyGradientDescent",
    ),
    "dynamic-gradient-descent": (lambda fast: to.DynamicGradientDescent(0.05, fast_path=fast), "ResourceApplyGradientDescent"),
    "proximal-adagrad": (lambda fast: to.ProximalAdagrad(0.1, fast_path=fast), "ResourceApplyProximalAdagrad"),
    "proximal-adagrad-l1-l2": (
        lambda fast: to.ProximalAdagrad(0.1, l1_regularization_strength=0.01, l2_regularization_strength=0.01, fast_path=fast),
        "ResourceApplyProximalAdagrad",
    ),
    "adagrad-pytorch-form": (
        lambda fast: to.Adagrad(0.1, epsilon_inside_sqrt=False, exact_hyperparameters=True, fast_path=fast),
        "ResourceApplyAdagradV2",
    ),
}


def step_op_types(optimizer, shapes):
    """The op types of one traced ``apply``, nested functions (Keras's conds) included."""
    variables = [keras.Variable(np.ones(s, "float32")) for s in shapes]
    step = tf.function(lambda: optimizer.apply([tf.ones(s) for s in shapes], variables))
    graph = step.get_concrete_function().graph.as_graph_def()
    return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", TRAINING_OPS)
def test_training_ops_give_the_rules_numbers_bit_for_bit(case, dtype):
    """TensorFlow's kernel computes the rule's operations in its order: 200 steps over every
    branch's shapes give the per-variable path's numbers exactly, and nothing is grouped."""
    make, kernel = TRAINING_OPS[case]
    with floatx(dtype):
        fast_optimizer = make(True)
        fast = run(fast_optimizer, (200,), dtype=dtype, shapes=MIXED_SHAPES)[200]
        slow = run(make(False), (200,), dtype=dtype, shapes=MIXED_SHAPES)[200]
    assert not fast_optimizer._groups and not fast_optimizer._fused_updates
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    assert kernel in step_op_types(make(True), [(3,), (300, 300)])
    assert kernel not in step_op_types(make(False), [(3,), (300, 300)])


@pytest.mark.parametrize(
    "make",
    [lambda: to.SGD(momentum=0.9, momentum_buffer="gradient"), lambda: to.Adagrad(), lambda: to.Adam()],
    ids=["sgd-gradient-form", "adagrad-keras-form", "adam"],
)
def test_configurations_no_kernel_matches_have_no_training_op(make):
    assert make().training_op() is None


def test_training_op_steps_aside_for_sparse_gradients_and_inside_xla():
    """A sparse gradient takes update_step (the same numbers as its dense sum); a variable
    without a gradient keeps its value and slot; an XLA-compiled step runs update_step."""
    results = {}
    for fast in (True, False):
        variables = [keras.Variable(np.ones((5,)), dtype="float64"), keras.Variable(np.ones((4, 2)), dtype="float64"),
                     keras.Variable(np.ones((3,)), dtype="float64")]
        optimizer = to.SGD(0.1, momentum=0.9, fast_path=fast)
        optimizer.apply([tf.ones(5, "float64"), tf.ones((4, 2), "float64"), tf.ones(3, "float64")], variables)
        for _ in range(3):
            missing_and_sparse_step(optimizer, variables, [0, 2, 0])
        results[fast] = [v.numpy() for v in variables] + [m.numpy() for m in optimizer.momentums]
    for fast, slow in zip(results[True], results[False]):
        np.testing.assert_array_equal(fast, slow)
    # Stepped once, by the first call: the learning rate is a float32 variable.
    np.testing.assert_array_equal(results[True][0], np.full(5, 1 - float(np.float32(0.1))))

    optimizer = to.SGD(momentum=0.9)
    variable = keras.Variable(np.ones(3, "float32"))
    xla = tf.function(lambda: optimizer.apply([tf.ones(3)], [variable]), jit_compile=True)
    graph = xla.get_concrete_function().graph.as_graph_def()
    assert "ResourceApplyKerasMomentum" not in {n.op for f in graph.library.function for n in f.node_def}


def test_training_ops_run_under_a_strategy(two_cpu_strategy):
    """Each replica applies the kernel to its own copy of the variable and slot: the replicas
    stay identical, with the numbers of Keras's per-variable loop."""
    results = {}
    for fast in (True, False):
        with two_cpu_strategy.scope():
            variables = [keras.Variable(np.linspace(-1, 1, 600, dtype="float32").reshape(s)) for s in [(600,), (20, 30)]]
            optimizer = to.SGD(0.05, momentum=0.9, nesterov=True, fast_path=fast)
            optimizer.build(variables)

        @tf.function
        def step():
            def replica_step():
                replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, "float32")
                optimizer.apply([tf.sin(v.value) * (1.0 + replica) for v in variables], variables)

            two_cpu_strategy.run(replica_step)

        for _ in range(20):
            step()
        assert (optimizer._training_op is not None) == fast
        state = variables + list(optimizer.momentums)
        for v in state:
            copies = [c.numpy() for c in v.value.values]
            np.testing.assert_array_equal(copies[0], copies[1])
        results[fast] = [v.numpy() for v in state]
    for fast, slow in zip(results[True], results[False]):
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("saved_by, loaded_by", [("0", "1"), ("1", "0")], ids=["slow-to-fast", "fast-to-slow"])
def test_a_model_saved_by_one_path_resumes_on_the_other(tmp_path, monkeypatch, saved_by, loaded_by):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(200), keras.layers.Dense(100), keras.layers.Dense(1)])
        m.compile(optimizer=to.Adam(0.01, fast_path="grouped"), loss="mse")
        return m

    straight = model()
    straight.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    monkeypatch.setenv("TFOPTIM_FAST_PATH", saved_by)
    first = model()
    first.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "model.keras")
    monkeypatch.setenv("TFOPTIM_FAST_PATH", loaded_by)
    resumed = keras.models.load_model(tmp_path / "model.keras")
    # Both paths: one large kernel fused, five small variables in one flat buffer.
    assert bool(resumed.optimizer._groups) == (loaded_by == "1") != bool(first.optimizer._groups)
    resumed.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, shuffle=False, verbose=0)
    # float32 XLA fusion reassociates a few operations: agreement to float32 rounding.
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# -- rules that reduce over all variables (collect_statistics) ---------------------------------

TWO_PASS = [
    lambda **kw: to.Prodigy(weight_decay=0.01, use_bias_correction=True, **kw),
    lambda **kw: to.DAdaptAdam(coupled_weight_decay=0.01, use_bias_correction=True, **kw),
]


@pytest.mark.parametrize("make", TWO_PASS, ids=["prodigy", "dadapt_adam"])
def test_two_pass_rule_fuses_its_whole_step(make):
    """One large variable sends every variable, the small one included, through one fused
    call; float64 trajectories agree with the slow path to rounding."""
    with floatx("float64"):
        fast_optimizer = make(fast_path=True)
        fast = run(fast_optimizer, (1, 100), shapes=MIXED_SHAPES)
        slow = run(make(fast_path=False), (1, 100), shapes=MIXED_SHAPES)
    ((key, _),) = fast_optimizer._fused_updates.items()
    assert len(key) == len(MIXED_SHAPES)
    # d is estimated from sums over 306k elements, added in another order (one that depends on
    # the CPU: XLA vectorizes for the host), and DAdaptAdam's steps amplify such last-bit
    # differences: measured 1.1e-10 (4.6e-11 with XLA held to AVX), and a rate moved by 1 to 34
    # ulps moves the slow path by 8e-11 to 3.6e-9 at step 100.
    for step in (1, 100):
        assert_close(fast[step], slow[step], 5e-9)


@pytest.mark.parametrize("make", TWO_PASS, ids=["prodigy", "dadapt_adam"])
def test_two_pass_rule_skips_a_zero_rate_step(make):
    """At learning rate 0 the official codes return before changing anything: so does tfoptim
    (weights, slots, d, the bias correction's count), only ``iterations`` advances."""
    rate = keras.Variable(1.0)
    variables = [keras.Variable(p.astype("float32")) for p in initial_problem()[0]]
    optimizer = make(learning_rate=lambda: rate.value)
    grads = [tf.constant(gradient(*a), tf.float32) for a in zip(*initial_problem())]
    for _ in range(3):
        optimizer.apply(grads, variables)
    before = [v.numpy().copy() for v in optimizer.variables + variables]
    rate.assign(0.0)
    optimizer.apply(grads, variables)
    after = [v.numpy() for v in optimizer.variables + variables]
    changed = [i for i, (a, b) in enumerate(zip(after, before)) if not np.array_equal(a, b)]
    assert [optimizer.variables[i] for i in changed] == [optimizer.iterations]


@pytest.mark.parametrize("make", TWO_PASS, ids=["prodigy", "dadapt_adam"])
def test_two_pass_rule_under_gradient_accumulation_and_ema(make):
    """Two micro-steps of the same gradient make one update: the trajectory over 2n
    micro-steps is the one over n steps (the bias correction counts updates, not calls)."""
    with floatx("float64"):
        accumulated = run(make(gradient_accumulation_steps=2, use_ema=True), (40,))[40]
        plain = run(make(), (20,))[20]
    assert_close(accumulated, plain, 1e-12)


def test_a_rule_without_update_step_or_phases_says_so():
    class NoRule(base.Optimizer):
        pass

    variable = keras.Variable(np.ones(3, "float32"))
    with pytest.raises(NotImplementedError, match="NoRule defines neither update_step nor update_phases"):
        NoRule(0.1, fast_path=False).apply([tf.ones(3)], [variable])
