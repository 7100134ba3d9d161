"""LazyAdam: Adam with dense gradients; with sparse ones, only the touched rows move.

References: TFA's ``LazyAdam`` (0.23.0 on TF 2.15.1), recorded by
tests/fixtures/record_tfa_successors_b.py on the reference problem (dense) and on a table fed
``tf.IndexedSlices`` with rows varying per step and a duplicate index every step (sparse);
Keras's and tfoptim's ``Adam`` live.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import STEPS, gradient
from trajectory import floatx, run

RECORDED = Recorded("tfa_successors_b")
SPARSE = RECORDED.manifest["sparse_problem"]


def f32(x):
    return float(np.float32(x))


def like_tfa(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """TFA's LazyAdam with its arguments as TF 2.15's legacy optimizers use them: the rate and
    the betas pass through float32 hyperparameter variables (epsilon does not)."""
    return to.LazyAdam(f32(learning_rate), beta_1=f32(beta_1), beta_2=f32(beta_2), epsilon=epsilon,
                       exact_hyperparameters=True)


@pytest.mark.parametrize("config_id", ["lazy_adam", "lazy_adam_lr"])
def test_dense_gradients_match_tfa(config_id):
    kwargs = RECORDED.manifest["configs"][config_id]["kwargs"]
    assert RECORDED.relative_difference(config_id, lambda: like_tfa(**kwargs)) <= 1e-14


def sparse_problem():
    rng = np.random.default_rng(SPARSE["seed"])
    shape = SPARSE["shape"]
    return rng.normal(size=shape), rng.normal(size=shape), rng.uniform(0.5, 2.0, size=shape)


def test_sparse_gradients_match_tfa():
    table, targets, curvatures = sparse_problem()
    rows = RECORDED.arrays["lazy_adam_sparse/rows"]
    kwargs = RECORDED.manifest["configs"]["lazy_adam_sparse"]["kwargs"]
    with floatx("float64"):
        variable = keras.Variable(table)
        optimizer = like_tfa(**kwargs)
        optimizer.build([variable])

        @tf.function
        def step(index):
            values = gradient(tf.gather(variable.value, index), tf.gather(targets, index),
                              tf.gather(curvatures, index))
            optimizer.apply([tf.IndexedSlices(values, index)], [variable])

        for t in range(1, STEPS + 1):
            step(tf.constant(rows[t - 1]))
            if t in RECORDED.steps:
                expected = RECORDED.arrays[f"lazy_adam_sparse/step{t}/table"]
                np.testing.assert_allclose(variable.numpy(), expected, rtol=0, atol=1e-14 * np.abs(expected).max())
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("flags", [{}, dict(amsgrad=True, bias_corrected_epsilon=True, weight_decay=0.01)])
def test_dense_gradients_are_adam(flags):
    with floatx("float64"):
        lazy = run(to.LazyAdam(0.01, **flags), (200,))[200]
        # The same kernels on the same flat buffers: bit for bit.
        adam = run(to.Adam(0.01, **flags), (200,))[200]
    for a, b in zip(lazy, adam):
        np.testing.assert_array_equal(a, b)


def test_dense_gradients_match_keras_adam():
    with floatx("float64"):
        lazy = run(to.LazyAdam(0.01), (200,))[200]
        keras_adam = run(keras.optimizers.Adam(0.01), (200,))[200]
    for a, b in zip(lazy, keras_adam):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def sparse_step(optimizer, variable, rows, values):
    optimizer.apply([tf.IndexedSlices(tf.constant(values), tf.constant(rows))], [variable])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_only_touched_rows_change(amsgrad):
    """Rows 0-9 receive gradients; rows 10-19 keep weights and slots (Adam would move them
    on their momentum and decay their moments)."""
    rng = np.random.default_rng(3)
    table = rng.normal(size=(20, 4))
    variable = keras.Variable(table)
    optimizer = to.LazyAdam(0.1, amsgrad=amsgrad)
    sparse_step(optimizer, variable, [0, 5, 9], rng.normal(size=(3, 4)))
    slot_variables = [v for v in optimizer.variables if tuple(v.shape) == (20, 4)]
    assert len(slot_variables) == 2 + amsgrad
    slots = [v.numpy().copy() for v in slot_variables]
    weights = variable.numpy().copy()
    for _ in range(3):
        sparse_step(optimizer, variable, rng.integers(0, 10, size=4), rng.normal(size=(4, 4)))
    np.testing.assert_array_equal(variable.numpy()[10:], table[10:])
    assert np.all(variable.numpy()[[0, 5, 9]] != table[[0, 5, 9]])
    for before, slot in zip(slots, slot_variables):
        np.testing.assert_array_equal(slot.numpy()[10:], 0.0)
        assert not np.array_equal(slot.numpy()[:10], before[:10])
    assert not np.array_equal(variable.numpy()[:10], weights[:10])


def test_sparse_steps_compile_with_xla():
    """The row deduplication (``unique``) has dynamic shape; XLA handles it, and the compiled
    steps match eager ones."""
    rng = np.random.default_rng(4)
    rows = [rng.integers(0, 12, size=5) for _ in range(3)]
    values = [rng.normal(size=(5, 3)) for _ in range(3)]
    eager, compiled = keras.Variable(np.ones((12, 3))), keras.Variable(np.ones((12, 3)))
    eager_opt, compiled_opt = to.LazyAdam(0.1), to.LazyAdam(0.1)
    compiled_opt.build([compiled])
    step = tf.function(lambda r, v: compiled_opt.apply([tf.IndexedSlices(v, r)], [compiled]), jit_compile=True)
    for r, v in zip(rows, values):
        sparse_step(eager_opt, eager, r, v)
        step(tf.constant(r), tf.constant(v))
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-14)


def test_duplicate_indices_are_summed():
    values = np.array([[1.0, -2.0], [0.5, 3.0]])
    once, twice = keras.Variable(np.ones((4, 2))), keras.Variable(np.ones((4, 2)))
    sparse_step(to.LazyAdam(0.1), twice, [2, 2], values)
    sparse_step(to.LazyAdam(0.1), once, [2], values.sum(axis=0, keepdims=True))
    np.testing.assert_array_equal(twice.numpy(), once.numpy())


@pytest.mark.parametrize("fast_path", [True, "grouped"])
def test_embedding_in_model_fit_gets_indexed_slices_and_moves_only_seen_rows(fast_path):
    """``model.fit`` hands the Embedding's gradient over as ``tf.IndexedSlices``: tokens use
    only ids 0-19 of 40, and rows 20-39 of the table and of both moments stay as they were."""
    kinds = []

    class Spy(to.LazyAdam):
        def update_step(self, gradient, variable, learning_rate):
            kinds.append(type(gradient).__name__)
            return super().update_step(gradient, variable, learning_rate)

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(64, 5))
    target = rng.normal(size=(64, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,), dtype="int32"), keras.layers.Embedding(40, 8),
         keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)]
    )
    table = model.layers[0].embeddings.numpy().copy()
    model.compile(optimizer=Spy(0.01, fast_path=fast_path), loss="mse")
    model.fit(tokens, target, batch_size=32, epochs=1, verbose=0)
    assert "IndexedSlices" in kinds
    after = model.layers[0].embeddings.numpy()
    np.testing.assert_array_equal(after[20:], table[20:])
    assert np.all(np.any(after[:20] != table[:20], axis=1))
    optimizer, embeddings = model.optimizer, model.layers[0].embeddings
    # The model's variables are small: grouped, they share flat slots, and the table's rows
    # still move lazily.
    assert bool(optimizer._groups) == (fast_path == "grouped")
    for slots in (optimizer._momentums, optimizer._velocities):
        np.testing.assert_array_equal(optimizer.slot_value(slots, embeddings).numpy()[20:], 0.0)


def test_sparse_steps_are_identical_under_mirrored_strategy(two_cpu_strategy):
    """The replicas' IndexedSlices are concatenated by the all-reduce (duplicates across
    replicas included) and applied once per device."""
    rows = [np.array([1, 3, 3]), np.array([3, 7])]
    values = [np.full((3, 2), 0.5), np.full((2, 2), -1.0)]
    single = keras.Variable(np.ones((10, 2), "float32"))
    sparse_step(to.LazyAdam(0.1), single, np.concatenate(rows), np.concatenate(values).astype("float32"))
    with two_cpu_strategy.scope():
        mirrored = keras.Variable(np.ones((10, 2), "float32"))
        optimizer = to.LazyAdam(0.1)
        optimizer.build([mirrored])

    def replica_step():
        i = tf.distribute.get_replica_context().replica_id_in_sync_group
        index = tf.where(i == 0, tf.constant([1, 3, 3, 0]), tf.constant([3, 7, 0, 0]))
        grads = tf.where(i == 0, tf.constant(np.concatenate([values[0], np.zeros((1, 2))]), tf.float32),
                         tf.constant(np.concatenate([values[1], np.zeros((2, 2))]), tf.float32))
        optimizer.apply([tf.IndexedSlices(grads, index)], [mirrored])

    tf.function(lambda: two_cpu_strategy.run(replica_step))()
    # Row 0 receives zero gradients (padding): Adam moves a zero-gradient row by 0.
    np.testing.assert_allclose(mirrored.numpy(), single.numpy(), rtol=1e-6)
