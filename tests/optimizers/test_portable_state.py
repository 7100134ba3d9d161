"""Saved optimizer state does not depend on how it was computed: a ``tf.train.Checkpoint`` written
with one fast-path setting, strategy or Keras's own optimizer restores into any other and
continues on the uninterrupted trajectory."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to

from trajectory import floatx

STEPS = 10
RTOL = {"float32": 1e-5, "float64": 1e-10}


def data(dtype):
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 16)).astype(dtype), rng.normal(size=(64, 1)).astype(dtype)


class Run:
    """A Dense 16 -> 32 -> 32 -> 1 regression trained by a custom loop, set up as ``layout``
    says: a tfoptim ``fast_path`` value, ``"keras"`` (Keras's own optimizer), or ``"mirrored"``
    (tfoptim's default under ``MirroredStrategy`` over two logical CPUs)."""

    def __init__(self, layout, dtype, make, strategy):
        self.dtype = dtype
        self.strategy = strategy if layout == "mirrored" else tf.distribute.get_strategy()
        with floatx(dtype), self.strategy.scope():
            keras.utils.set_random_seed(0)
            self.model = keras.Sequential(
                [keras.Input((16,)), keras.layers.Dense(32, activation="tanh"),
                 keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)]
            )
            self.optimizer = make(layout)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        data_x, data_y = data(dtype)
        variables = self.model.trainable_variables

        def replica_step(x, y):
            # Summed over the replica's rows and divided by the whole batch: the all-reduced
            # (summed) gradient is the full batch's mean, as on one device.
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((self.model(x) - y) ** 2) / len(data_x)
            self.optimizer.apply(tape.gradient(loss, variables), variables)

        replicas = self.strategy.num_replicas_in_sync
        rows = len(data_x) // replicas
        halves = [
            self.strategy.experimental_distribute_values_from_function(
                lambda context, a=a: a[rows * context.replica_id_in_sync_group:][:rows]
            )
            for a in (data_x, data_y)
        ]

        @tf.function
        def step():
            if replicas == 1:
                replica_step(data_x, data_y)
            else:
                self.strategy.run(replica_step, args=halves)

        self.step = step

    def train(self, steps):
        for _ in range(steps):
            self.step()
        return [v.numpy() for v in self.model.trainable_variables]


def make_adam(layout):
    if layout == "keras":
        return keras.optimizers.Adam(0.01)
    return to.Adam(0.01, fast_path=True if layout == "mirrored" else layout)


LAYOUTS = ["keras", True, False, "grouped", "mirrored"]
PAIRS = [
    ("grouped", False), (False, "grouped"), ("grouped", True), (True, "grouped"),
    ("grouped", "mirrored"), ("mirrored", "grouped"), (True, "mirrored"), ("mirrored", False),
    ("keras", "grouped"), ("keras", True), ("keras", "mirrored"),
]
@pytest.fixture(scope="module")
def uninterrupted(two_cpu_strategy):
    """20 steps of a layout, straight through (Keras's Adam and tfoptim's on one device take
    the same steps; the mirrored run sums two half-batch gradients), made when first asked."""
    runs = {}

    def trajectory(layout, dtype):
        if (layout, dtype) not in runs:
            runs[layout, dtype] = Run(layout, dtype, make_adam, two_cpu_strategy).train(2 * STEPS)
        return runs[layout, dtype]

    return trajectory


# The default tier's share of the matrix: flat buffers into a strategy and back, and Keras's
# optimizer into flat buffers, each restored before build (the harder case) in one dtype.
@pytest.mark.variants(
    "grouped-to-mirrored-restored-before-build-float32",
    "mirrored-to-grouped-restored-before-build-float64",
    "keras-to-grouped-restored-before-build-float64",
)
@pytest.mark.parametrize("dtype", list(RTOL))
@pytest.mark.parametrize("built", [False, True], ids=["restored-before-build", "restored-after-build"])
@pytest.mark.parametrize("saved_by, restored_into", [pytest.param(a, b, id=f"{a}-to-{b}") for a, b in PAIRS])
def test_checkpoint_restores_across_layouts(tmp_path, two_cpu_strategy, uninterrupted, saved_by, restored_into, built, dtype):
    first = Run(saved_by, dtype, make_adam, two_cpu_strategy)
    first.train(STEPS)
    path = first.checkpoint.write(str(tmp_path / "ckpt"))
    second = Run(restored_into, dtype, make_adam, two_cpu_strategy)
    if built:
        with second.strategy.scope():
            second.optimizer.build(second.model.trainable_variables)
    second.checkpoint.read(path).assert_existing_objects_matched()
    resumed = second.train(STEPS)
    assert int(second.optimizer.iterations.numpy()) == 2 * STEPS
    for a, b in zip(resumed, uninterrupted(restored_into, dtype)):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-1)


def test_checkpoint_keys_are_keras_per_variable_layout(tmp_path):
    """A grouped optimizer writes the same keys and shapes as Keras's own Adam."""
    keys = {}
    for layout in ("keras", "grouped"):
        run = Run(layout, "float32", make_adam, None)
        run.train(1)
        path = run.checkpoint.write(str(tmp_path / str(layout)))
        keys[layout] = {k: tuple(s) for k, s in tf.train.list_variables(path) if k.startswith("optimizer/_variables")}
    # Two slots for each of the six variables (`iterations` and the rate are keyed by name).
    assert keys["grouped"] == keys["keras"] and len(keys["keras"]) == 2 * 6


@pytest.mark.variants("grouped")
@pytest.mark.parametrize("fast_path", [True, "grouped"])
def test_keras_model_file_migrates_to_the_twin(tmp_path, fast_path):
    """A ``.keras`` file saved with ``keras.optimizers.Adam`` loads, weights and optimizer state,
    into the model compiled with tfoptim's ``Adam`` (``model.load_weights``, once the optimizer
    is built), which continues exactly as Keras would."""
    x, y = data("float32")

    def model(optimizer):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)])
        m.compile(optimizer=optimizer, loss="mse")
        return m

    straight = model(keras.optimizers.Adam(0.01))
    straight.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    first = model(keras.optimizers.Adam(0.01))
    first.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "model.keras")
    resumed = model(to.Adam(0.01, fast_path=fast_path))
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(tmp_path / "model.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 8
    resumed.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


#: Keras's built-ins and their tfoptim twins, with arguments that create every slot they have.
TWINS = {
    "SGD": dict(learning_rate=0.05, momentum=0.9, nesterov=True),
    "Adagrad": dict(learning_rate=0.05),
    "RMSprop": dict(learning_rate=0.01, momentum=0.5, centered=True),
    "Adam": dict(learning_rate=0.01, amsgrad=True),
    "AdamW": dict(learning_rate=0.01, weight_decay=0.01),
    "Lion": dict(learning_rate=0.001),
}


@pytest.mark.parametrize("fast_path", [True, "grouped"])
@pytest.mark.parametrize("name", list(TWINS))
@pytest.mark.matrix("name")
def test_keras_checkpoint_migrates_to_the_twin(tmp_path, name, fast_path):
    """A checkpoint of Keras's optimizer restores into its tfoptim twin, which continues on
    Keras's uninterrupted trajectory."""

    def make(layout):
        if layout == "keras":
            return getattr(keras.optimizers, name)(**TWINS[name])
        return getattr(to, name)(fast_path=fast_path, **TWINS[name])

    straight = Run("keras", "float32", make, None).train(2 * STEPS)
    first = Run("keras", "float32", make, None)
    first.train(STEPS)
    path = first.checkpoint.write(str(tmp_path / "ckpt"))
    twin = Run("twin", "float32", make, None)
    twin.checkpoint.read(path).assert_existing_objects_matched()
    for a, b in zip(twin.train(STEPS), straight):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


#: Every wrapper and transform around a tfoptim optimizer, each with state of its own
#: (SAM's origins, ScheduleFree's z and average, the slow weights, the average).
WRAPPERS = {
    "SAM": lambda: to.SAM(to.Adam(0.01), rho=0.05),
    "ASAM": lambda: to.SAM(to.SGD(0.02, momentum=0.9), rho=0.5, adaptive=True),
    "ScheduleFree": lambda: to.ScheduleFree(to.AdamW(0.01, beta_1=0.0), warmup_steps=3),
    "GradientCentralization": lambda: to.GradientCentralization(to.SGD(0.02, momentum=0.9)),
    "AdaptiveGradientClipping": lambda: to.AdaptiveGradientClipping(to.Adam(0.01), clip_factor=0.05),
    "Lookahead": lambda: to.Lookahead(to.Adam(0.01), sync_period=3),
    "SWA": lambda: to.SWA(to.SGD(0.02, momentum=0.9), start_averaging=2, average_period=3),
}
WRAPPER_PAIRS = [("one", "one"), ("one", "mirrored"), ("mirrored", "one")]


@pytest.fixture(scope="module")
def uninterrupted_wrapper(two_cpu_strategy):
    runs = {}

    def trajectory(wrapper, layout):
        if (wrapper, layout) not in runs:
            run = Run(layout, "float64", lambda _: WRAPPERS[wrapper](), two_cpu_strategy)
            runs[wrapper, layout] = run.train(2 * STEPS)
        return runs[wrapper, layout]

    return trajectory


@pytest.mark.variants(
    "SAM-one-to-mirrored-restored-before-build", "ScheduleFree-mirrored-to-one-restored-after-build",
)
@pytest.mark.parametrize("built", [False, True], ids=["restored-before-build", "restored-after-build"])
@pytest.mark.parametrize("saved_by, restored_into", [pytest.param(a, b, id=f"{a}-to-{b}") for a, b in WRAPPER_PAIRS])
@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapper_checkpoint_restores_and_continues(tmp_path, two_cpu_strategy, uninterrupted_wrapper, wrapper,
                                                  saved_by, restored_into, built):
    """The wrapper's state and its inner optimizer's, written after an odd number of calls
    (mid-pair for SAM), restore before or after the build, on one device or two replicas."""
    first = Run(saved_by, "float64", lambda _: WRAPPERS[wrapper](), two_cpu_strategy)
    first.train(STEPS + 1)
    path = first.checkpoint.write(str(tmp_path / "ckpt"))
    second = Run(restored_into, "float64", lambda _: WRAPPERS[wrapper](), two_cpu_strategy)
    if built:
        with second.strategy.scope():
            second.optimizer.build(second.model.trainable_variables)
    second.checkpoint.read(path).assert_existing_objects_matched()
    resumed = second.train(STEPS - 1)
    calls = 2 * STEPS
    assert int(second.optimizer.iterations.numpy()) == (calls // 2 if "SAM" in wrapper else calls)
    for a, b in zip(resumed, uninterrupted_wrapper(wrapper, restored_into)):
        np.testing.assert_allclose(a, b, rtol=RTOL["float64"], atol=RTOL["float64"] * 1e-1)
