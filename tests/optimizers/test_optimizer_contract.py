"""What holds for every optimizer: serialization, resume after ``.keras`` save/load,
``MirroredStrategy``, mixed precision, bfloat16, sparse gradients, XLA, no retracing."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from trajectory import assert_close, floatx

KERAS_COMMON = {
    "name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue",
    "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
    "gradient_accumulation_steps",
}
BASE_ARGUMENTS = {"coupled_weight_decay", "skip_nonfinite", "exact_hyperparameters", "fast_path",
                  "learning_rate_multipliers", "weight_decay_overrides"}
CLASSES = [to.GradientDescent, to.SGD, to.DynamicGradientDescent, to.Adagrad, to.RMSprop, to.Adam, to.AdamW,
           to.COCOB, to.LARS, to.LazyAdam, to.ProximalAdagrad, to.RAdam, to.AdaBelief, to.Yogi, to.NovoGrad,
           to.SOAP, to.Shampoo, to.Lion, to.Muon, to.NorMuon, to.PSGDKron]

# SOAP steps along the eigenvectors of each kernel's float32 gradient statistic. In ``mlp`` the
# first kernel's 8x8 statistic has its two smallest eigenvalues 2.4e-4 apart against a largest
# of 2.7: their eigenvectors are determined only to ~u * |L| / gap = 7e-4, and Adam gives each
# direction a step of ~lr whatever its eigenvalue. So any float32 difference (the order of a
# sum, another eigensolver, another CPU's kernels) moves the weights by up to ~1e-4: measured
# with the statistic perturbed at random by 1, 2 and 8 ulps, up to 3.4e-5, 6.3e-5 and 1.1e-4;
# TF's, LAPACK's, XLA's and float64's eigenvectors, 8e-6 to 1.2e-5. float64 (1e-10) shows the
# distributed update itself is exact.
# Shampoo's inverse roots of rank-deficient float32 factors (``mlp``'s bias: a 32x32 sum of
# eight outer products) weigh directions below float32's resolution by up to epsilon**-1/2:
# another summation order (two replicas) or XLA's eigh moves the weights by 2.8e-5 and 7.0e-5
# (measured); float64 agrees to 1e-10.
FLOAT32_RTOL = {to.SOAP: 2e-4, to.Shampoo: 2e-4}


def regression_data(n=64, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x @ rng.normal(size=(features, 1)) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def small_model(seed=0, dtype=None, hidden=160):
    """Holds a 8x160 kernel (small: per-variable path) and a 160x128 one (fast path)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
            keras.layers.Dense(128, activation="tanh", dtype=dtype),
            keras.layers.Dense(1, dtype=dtype),
        ]
    )


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)]
    )


def fit(model, epochs, x, y, initial_epoch=0):
    model.fit(x, y, batch_size=16, epochs=initial_epoch + epochs, initial_epoch=initial_epoch,
              shuffle=False, verbose=0)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_holds_exactly_the_constructor_arguments(cls):
    config = cls().get_config()
    own = {
        name
        for klass in cls.__mro__[: cls.__mro__.index(to.Optimizer)]
        for name in inspect.signature(klass.__init__).parameters
        if name not in ("self", "kwargs")
    }
    assert set(config) == KERAS_COMMON | BASE_ARGUMENTS | own


def test_config_round_trip(make_optimizer):
    optimizer = make_optimizer()
    config = optimizer.get_config()
    assert type(optimizer).from_config(config).get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer)
    assert restored.get_config() == config


def test_round_trip_with_schedule():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.05, 0.01])
    optimizer = to.Adam(schedule, beta_1=0.8)
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == "tfoptim>Adam"
    restored = keras.optimizers.deserialize(serialized)
    assert isinstance(restored.learning_rate_schedule if hasattr(restored, "learning_rate_schedule")
                      else restored._learning_rate, keras.optimizers.schedules.PiecewiseConstantDecay)
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.matrix("make_optimizer")
def test_save_and_load_resumes_the_same_trajectory(make_optimizer, tmp_path):
    x, y = regression_data()
    straight = small_model()
    straight.compile(optimizer=make_optimizer(), loss="mse")
    fit(straight, 4, x, y)

    interrupted = small_model()
    interrupted.compile(optimizer=make_optimizer(), loss="mse")
    fit(interrupted, 2, x, y)
    path = tmp_path / "model.keras"
    interrupted.save(path)
    resumed = keras.models.load_model(path)
    assert type(resumed.optimizer) is type(interrupted.optimizer)
    fit(resumed, 2, x, y, initial_epoch=2)

    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.matrix("make_optimizer")
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_mirrored_strategy_matches_one_device(make_optimizer, two_cpu_strategy, dtype, rtol):
    """Two replicas sum half-batch gradients in another order than one device sums the batch.

    In float32 that is ~1e-7 relative per gradient entry, except where an entry nearly cancels;
    adaptive rules turn even such an entry into a step of size ~lr, so wide saturated layers
    (``small_model``'s 160x128 tanh) can show 1e-4 on a few entries. float64 shows the
    distributed update itself is exact.
    """
    x, y = regression_data()
    with floatx(dtype):
        single = mlp()
        single.compile(optimizer=make_optimizer(), loss="mse")
        fit(single, 2, x, y)
        with two_cpu_strategy.scope():
            mirrored = mlp()
            mirrored.compile(optimizer=make_optimizer(), loss="mse")
        fit(mirrored, 2, x, y)
    if dtype == "float32":
        rtol = FLOAT32_RTOL.get(type(single.optimizer), rtol)
    assert_close(mirrored.get_weights(), single.get_weights(), rtol)


def trains(model, optimizer, x, y, epochs=3):
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0).history["loss"]
    assert all(np.isfinite(history)), history
    assert history[-1] < history[0], history
    return model


@pytest.mark.matrix("make_optimizer")
def test_mixed_float16_with_loss_scaling(make_optimizer):
    x, y = regression_data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = trains(small_model(), make_optimizer(), x, y)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.matrix("make_optimizer")
def test_bfloat16_variables(make_optimizer):
    x, y = regression_data()
    trains(small_model(dtype="bfloat16"), make_optimizer(), x, y)


@pytest.mark.matrix("make_optimizer")
def test_jit_compiled_training_step(make_optimizer):
    """``jit_compile=True`` trains as the default graph step does, to float32 rounding (the
    ``mlp`` of the MirroredStrategy test, for the same reason; SOAP's eigendecompositions are
    XLA's there, see ``FLOAT32_RTOL``)."""
    x, y = regression_data()
    compiled = mlp()
    compiled.compile(optimizer=make_optimizer(), loss="mse", jit_compile=True)
    fit(compiled, 2, x, y)
    graph = mlp()
    graph.compile(optimizer=make_optimizer(), loss="mse", jit_compile=False)
    fit(graph, 2, x, y)
    assert_close(compiled.get_weights(), graph.get_weights(), FLOAT32_RTOL.get(type(graph.optimizer), 1e-5))


def test_sparse_gradients_equal_the_dense_update(make_optimizer):
    """An Embedding's IndexedSlices gradient updates exactly as its dense equivalent, rows
    that appear twice included (their values add up, as in the dense gradient)."""
    rng = np.random.default_rng(1)
    table = rng.normal(size=(50, 4))
    sparse_var, dense_var = keras.Variable(table), keras.Variable(table)
    sparse_opt, dense_opt = make_optimizer(), make_optimizer()
    if isinstance(sparse_opt, to.LazyAdam):
        pytest.skip("LazyAdam moves only the rows a sparse gradient touches (test_lazy_adam.py)")
    for step in range(5):
        rows = rng.integers(0, 50, size=6)
        rows[1] = rows[4]
        rows = tf.constant(rows)
        values = tf.constant(rng.normal(size=(6, 4)))
        grad = tf.IndexedSlices(values, rows, dense_shape=tf.constant([50, 4], tf.int64))
        sparse_opt.apply([grad], [sparse_var])
        dense_opt.apply([tf.convert_to_tensor(grad)], [dense_var])
    np.testing.assert_allclose(sparse_var.numpy(), dense_var.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.matrix("make_optimizer")
def test_embedding_model_trains_with_sparse_gradients(make_optimizer):
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 40, size=(64, 5))
    target = rng.normal(size=(64, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,), dtype="int32"), keras.layers.Embedding(40, 8),
         keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)]
    )
    trains(model, make_optimizer(), tokens, target)


@pytest.mark.matrix("make_optimizer")
def test_no_retracing_across_steps(make_optimizer):
    # One small variable, one large enough for the fused call.
    variables = [keras.Variable(np.ones((4, 3), "float32")), keras.Variable(np.ones((1024, 1024), "float32"))]
    optimizer = make_optimizer()
    optimizer.build(variables)

    @tf.function
    def step(scale):
        optimizer.apply([scale * tf.ones_like(v) for v in variables], variables)

    for i in range(5):
        step(tf.constant(float(i + 1)))
    assert step.experimental_get_tracing_count() == 1
    # Wrappers (Lookahead, SWA) leave the fast path to their inner optimizer; SOAP stays off it,
    # and a rule with a training op makes no fused call.
    rule = getattr(optimizer, "inner_optimizer", optimizer)
    fused_updates = rule._fused_updates
    assert len(fused_updates) == int(rule.fast_path_compatible and rule._training_op is None)
    for calls in fused_updates.values():
        assert all(call.experimental_get_tracing_count() == 1 for call in calls)
