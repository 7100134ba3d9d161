"""Apply-step speed of tfoptim's optimizers against their Keras twins, measured side by side.

For each workload (a list of variable shapes) and mode (graph without XLA, Keras's CPU default;
and ``jit_compile=True``) both optimizers run ``optimizer.apply`` on the same gradients inside a
``tf.function``; their runs alternate, and the reported figure is the median over rounds of
the per-round time ratio tfoptim / Keras, so machine noise hits both alike. Timings are never
test assertions.

``--e2e`` adds ``model.fit`` on the workloads of :mod:`tfoptim.benchmarks.workloads` (a
transformer, ResNet-20 and a recommender with a million-row embedding), tfoptim's optimizer
against its Keras twin in both modes, epochs alternating (:func:`measure_e2e`).

``--per-step`` times ``model.fit`` steps of the matrix-aware methods (:data:`PER_STEP_OPTIMIZERS`,
Keras's ``Muon`` among them) on the ``gpt`` workload against Keras's ``AdamW``, a reference rather
than a twin: the ratio is a method's price per training step. Without XLA and with
``jit_compile=True``, every model timed in the same rounds (:func:`measure_per_step`).

On Keras's JAX backend (``KERAS_BACKEND=jax``, TensorFlow not needed: a GPU machine) there is
one mode, ``xla``: both run ``stateless_apply`` under ``jax.jit``, the way JAX's trainer steps,
on the default device, and the streaming bandwidth is measured there.
"""

import dataclasses
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np

WORKLOADS = {
    "500x1000": [(1000,)] * 500,
    "100x256x256": [(256, 256)] * 100,
    "2x10M": [(10_000_000,)] * 2,
}
QUICK_WORKLOADS = {
    "100x1000": [(1000,)] * 100,
    "20x256x256": [(256, 256)] * 20,
    "2x1M": [(1_000_000,)] * 2,
}


#: Pairs in :func:`twins` that run the same update rule (one step lands in the same place). The
#: others are timed against the nearest Keras built-in: Adam for the Adam family, SGD with
#: momentum for SGD-like rules.
SAME_RULE = (
    "GradientDescent", "SGD(momentum)", "DynamicGradientDescent", "Adagrad", "RMSprop", "Adam",
    "AdamW", "LazyAdam", "Lion",
)


def shampoo_factor_bytes(shapes, itemsize=4):
    """Bytes of :class:`tfoptim.optimizers.Shampoo`'s factors and inverse roots (at its defaults)
    for variables of ``shapes``: two ``d x d`` matrices per dimension of every block."""
    from tfoptim.optimizers import shampoo

    optimizer = shampoo.Shampoo()
    total = 0
    for shape in shapes:
        merged = shampoo.merged_shape(shape, optimizer.max_preconditioner_dim, optimizer.target_parameter_dimensionality)
        sizes = shampoo.block_sizes(merged, optimizer.max_preconditioner_dim)
        blocks = math.prod(len(chunks) for chunks in sizes)
        # A chunk of dimension i sits in every block of the other dimensions' chunks.
        total += 2 * itemsize * sum(sum(c * c for c in chunks) * blocks // len(chunks) for chunks in sizes)
    return total


def skip_reason(name, workload):
    """Why ``name`` is not timed on the apply-step ``workload``, or None. Shampoo is a matrix
    method: on a workload of vectors it would keep a ``d x d`` factor and root per block of up to
    1024 elements, thousands of times the parameters' memory; it is timed on the matrix ones."""
    shapes = WORKLOADS.get(workload) or QUICK_WORKLOADS[workload]
    if name == "Shampoo" and all(len(shape) == 1 for shape in shapes):
        factors = shampoo_factor_bytes(shapes)
        parameters = 4 * sum(int(np.prod(s)) for s in shapes)
        return (f"vectors: Shampoo's factors and roots would take {factors / 2**30:.1f} GiB, "
                f"{factors / parameters:.0f} x the parameters (it is timed on the matrix workloads)")
    return None


def twins(fast_path=True):
    """``name -> (tfoptim factory, Keras factory, state slots per parameter)``; the tfoptim
    optimizers (the inner one of a wrapper) take ``fast_path``.

    A slot is one optimizer variable of the parameter's shape; :func:`state_slots` measures it,
    and the benchmark prints the measured figure next to each timing."""
    import keras

    import tfoptim.optimizers as to

    K = keras.optimizers

    def configured(make):
        def make_configured():
            optimizer = make()
            # Read when the optimizer is built, so it may be set after construction.
            getattr(optimizer, "inner_optimizer", optimizer).fast_path = fast_path
            return optimizer

        return make_configured

    decay = lambda: K.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.99)  # noqa: E731
    factories = {
        "GradientDescent": (lambda: to.GradientDescent(0.01), lambda: K.SGD(0.01), 0),
        "SGD(momentum)": (lambda: to.SGD(0.01, momentum=0.9), lambda: K.SGD(0.01, momentum=0.9), 1),
        "DynamicGradientDescent": (lambda: to.DynamicGradientDescent(0.01), lambda: K.SGD(decay()), 0),
        "Adagrad": (lambda: to.Adagrad(), lambda: K.Adagrad(), 1),
        "RMSprop": (lambda: to.RMSprop(), lambda: K.RMSprop(), 1),
        "Adam": (lambda: to.Adam(), lambda: K.Adam(), 2),
        "AdamW": (lambda: to.AdamW(), lambda: K.AdamW(), 2),
        "ScheduleFreeSGD": (lambda: to.ScheduleFreeSGD(0.01), lambda: K.SGD(0.01, momentum=0.9), 1),
        "Lookahead(Adam)": (lambda: to.Lookahead(to.Adam()), lambda: K.Adam(), 3),
        "SWA(SGD(momentum))": (
            lambda: to.SWA(to.SGD(0.01, momentum=0.9)), lambda: K.SGD(0.01, momentum=0.9), 2
        ),
        "Prodigy": (lambda: to.Prodigy(), lambda: K.Adam(), 4),
        "DAdaptAdam": (lambda: to.DAdaptAdam(), lambda: K.Adam(), 3),
        "LARS": (lambda: to.LARS(), lambda: K.SGD(0.01, momentum=0.9), 1),
        "LazyAdam": (lambda: to.LazyAdam(), lambda: K.Adam(), 2),
        "Lion": (lambda: to.Lion(), lambda: K.Lion(), 1),
        "COCOB": (lambda: to.COCOB(), lambda: K.Adam(), 5),
        "ProximalAdagrad": (lambda: to.ProximalAdagrad(), lambda: K.Adagrad(), 1),
        "Adan": (lambda: to.Adan(), lambda: K.Adam(), 4),
        "MADGRAD": (lambda: to.MADGRAD(), lambda: K.SGD(0.01, momentum=0.9), 3),
        "AdEMAMix": (lambda: to.AdEMAMix(), lambda: K.Adam(), 3),
        "ADOPT": (lambda: to.ADOPT(), lambda: K.Adam(), 2),
        "RAdam": (lambda: to.RAdam(), lambda: K.Adam(), 2),
        "AdaBelief": (lambda: to.AdaBelief(), lambda: K.Adam(), 2),
        "Yogi": (lambda: to.Yogi(), lambda: K.Adam(), 2),
        "NovoGrad": (lambda: to.NovoGrad(), lambda: K.SGD(0.01, momentum=0.9), 1),
        # Slots of the parameter's shape; its per-dimension matrices come on top (README).
        "SOAP": (lambda: to.SOAP(), lambda: K.Adam(), 2),
        # Keras's Muon is the twin; both orthogonalise each matrix's momentum by Newton-Schulz.
        # Two slots at most: the AdamW fallback's moments on the variables Muon leaves to it.
        "Muon": (lambda: to.Muon(), lambda: K.Muon(), 2),
        "NorMuon": (lambda: to.NorMuon(), lambda: K.Muon(), 2),
        # Momentum of the parameter's shape; its Kronecker factors come on top.
        "PSGDKron": (lambda: to.PSGDKron(), lambda: K.Adam(), 1),
        # Filtered gradient and Adam grafting's second moment; factors and roots on top.
        "Shampoo": (lambda: to.Shampoo(), lambda: K.Adam(), 2),
    }
    return {name: (configured(ours), theirs, slots) for name, (ours, theirs, slots) in factories.items()}


@dataclasses.dataclass
class Result:
    optimizer: str
    workload: str
    mode: str
    keras_ms: float
    tfoptim_ms: float
    ratio: float
    state_slots: int
    tfoptim_bandwidth_gbs: float
    keras_bandwidth_gbs: float
    #: The ratio an implementation would show moving the rule's unavoidable bytes at the NumPy
    #: streaming bandwidth measured in the same run: how far a ratio is from memory-bound. A
    #: yardstick, not a hard floor: the triad is one thread, and multi-threaded kernels or
    #: variables that stay in cache beat it (filled in by run_speed).
    stream_ratio: float = float("nan")
    #: Without XLA: the time of one in-place add per variable (the least any step that changes
    #: every variable must run: TensorFlow has no kernel that writes several variables) over
    #: Keras's time, measured in the same rounds. Above 0.5, no implementation reaches 2x.
    floor_ratio: float = float("nan")


@dataclasses.dataclass
class FitResult:
    """``model.fit`` on digits, Keras's defaults (``jit_compile="auto"``: no XLA on CPU)."""

    optimizer: str
    model: str
    parameters: int
    variables: int
    batch_size: int
    keras_steps_per_s: float
    tfoptim_steps_per_s: float
    #: Time ratio tfoptim / Keras per training step (below 1: tfoptim is faster).
    ratio: float


@dataclasses.dataclass
class E2EResult:
    """``model.fit`` on a workload of :mod:`tfoptim.benchmarks.workloads`, tfoptim's optimizer
    against its Keras twin, without XLA (``mode="graph"``) or with ``jit_compile=True``
    (``"xla"``)."""

    optimizer: str
    workload: str
    size: str
    mode: str
    parameters: int
    variables: int
    #: Training steps in one timed epoch (the first batches of the workload's training data).
    steps: int
    keras_s_per_epoch: float
    tfoptim_s_per_epoch: float
    #: Median over rounds of the epoch-time ratio tfoptim / Keras (below 1: tfoptim is faster).
    ratio: float


def bytes_per_parameter(slots, itemsize=4):
    """Memory traffic a rule cannot avoid: read the gradient, read and write the parameter and
    each slot (Adam: 7 x 4 = 28 bytes in float32). Keras-style decoupled weight decay adds a
    separate read and write of the parameter, not counted."""
    return (1 + 2 * (1 + slots)) * itemsize


def backend():
    import keras

    return keras.backend.backend()


def modes_available():
    """``graph`` (no XLA) and ``xla`` on TensorFlow; only ``xla`` on JAX, which always compiles."""
    return ("graph", "xla") if backend() == "tensorflow" else ("xla",)


def streaming_bandwidth(n=20_000_000, repeats=5):
    """The triad ``a = b + 2 * c`` in GB/s, best of ``repeats``: NumPy's on the CPU, or, on JAX
    with an accelerator, the default device's (its memory, not the host's)."""
    if backend() == "jax" and not device_name().startswith("cpu"):
        return _device_bandwidth(n, repeats)
    b = np.ones(n, "float32")
    c = np.ones(n, "float32")
    a = np.empty_like(b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.multiply(c, 2.0, out=a)
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - start)
    # multiply reads c and writes a; add reads a and b and writes a: 5 passes of n floats.
    return 5 * n * 4 / best / 1e9


def _device_bandwidth(n, repeats):
    import jax
    import jax.numpy as jnp

    b = jnp.ones(n, "float32")
    c = jnp.ones(n, "float32")
    triad = jax.jit(lambda b, c: b + 2 * c)
    triad(b, c).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        triad(b, c).block_until_ready()
        best = min(best, time.perf_counter() - start)
    # One fused pass: read b and c, write a.
    return 3 * n * 4 / best / 1e9


def device_name():
    """What the JAX backend runs on (``"cpu"`` on TensorFlow: the benchmark's CPU figures)."""
    if backend() != "jax":
        return "cpu"
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


def state_slots(optimizer, shape=(3, 4)):
    """Optimizer variables of a parameter's shape, per parameter, measured on a fresh build."""
    import keras

    optimizer.build([keras.Variable(np.zeros(shape, "float32"))])
    return sum(tuple(v.shape) == shape for v in optimizer.variables)


def _stepper(optimizer, shapes, jit_compile, inner):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.random(s, dtype=np.float32)) for s in shapes]
    grads = [tf.constant(rng.random(s, dtype=np.float32) * 1e-3) for s in shapes]
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step():
        for _ in tf.range(inner):
            optimizer.apply(grads, variables)

    step()  # trace and compile
    return step


def _jax_stepper(optimizer, shapes, inner):
    """``inner`` steps of ``stateless_apply`` in one ``jax.jit`` call, weights and state donated
    (updated in place, as JAX's trainer does)."""
    import jax
    import keras

    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.random(s, dtype=np.float32)) for s in shapes]
    grads = [jax.numpy.asarray(rng.random(s, dtype=np.float32) * 1e-3) for s in shapes]
    optimizer.build(variables)

    def steps(grads, trainable, state):
        def one(_, carry):
            trainable, state = optimizer.stateless_apply(carry[1], grads, carry[0])
            return list(trainable), list(state)

        return jax.lax.fori_loop(0, inner, one, (trainable, state))

    compiled = jax.jit(steps, donate_argnums=(1, 2))
    carry = ([v.value for v in variables], [v.value for v in optimizer.variables])

    def step():
        nonlocal carry
        carry = jax.block_until_ready(compiled(grads, *carry))

    step()  # trace and compile
    return step


def _floor_stepper(shapes, inner):
    """One ``assign_add`` per variable, ``inner`` times, in a graph without XLA."""
    import tensorflow as tf

    variables = [tf.Variable(np.zeros(s, "float32")) for s in shapes]
    grads = [tf.constant(np.full(s, 1e-3, "float32")) for s in shapes]

    @tf.function
    def step():
        for _ in tf.range(inner):
            for variable, gradient in zip(variables, grads):
                variable.assign_add(gradient)

    step()
    return step


def _time(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure(name, workload, mode, rounds, fast_path=True):
    make_ours, make_keras, _ = twins(fast_path)[name]
    slots = state_slots(make_ours())
    shapes = WORKLOADS.get(workload) or QUICK_WORKLOADS[workload]
    parameters = sum(int(np.prod(s)) for s in shapes)
    # Enough applies per timed call (~1e8 parameter updates) that one timing is tens of ms.
    inner = max(1, min(50, int(1e8 // parameters)))
    if mode not in modes_available():
        raise ValueError(f"mode {mode!r} does not exist on Keras's {backend()} backend; choose from {modes_available()}")
    jit = mode == "xla"
    if backend() == "jax":
        ours, theirs = (_jax_stepper(make(), shapes, inner) for make in (make_ours, make_keras))
    else:
        ours = _stepper(make_ours(), shapes, jit, inner)
        theirs = _stepper(make_keras(), shapes, jit, inner)
    floor = None if jit else _floor_stepper(shapes, inner)
    ratios, ours_t, theirs_t, floors = [], [], [], []
    for i in range(rounds):
        # Alternate who goes first, so drift in machine load favours neither.
        if i % 2:
            a, b = _time(ours), _time(theirs)
        else:
            b, a = _time(theirs), _time(ours)
        ours_t.append(a / inner)
        theirs_t.append(b / inner)
        ratios.append(a / b)
        if floor is not None:
            floors.append(_time(floor) / b)
    t_ours, t_keras = float(np.median(ours_t)), float(np.median(theirs_t))
    traffic = bytes_per_parameter(slots) * parameters
    return Result(
        optimizer=name,
        workload=workload,
        mode=mode,
        keras_ms=t_keras * 1e3,
        tfoptim_ms=t_ours * 1e3,
        ratio=float(np.median(ratios)),
        state_slots=slots,
        tfoptim_bandwidth_gbs=traffic / t_ours / 1e9,
        keras_bandwidth_gbs=traffic / t_keras / 1e9,
        floor_ratio=float(np.median(floors)) if floors else float("nan"),
    )


def digits_model(kind):
    """The end-to-end models on scikit-learn's 8 x 8 digits: an MLP, a small CNN, and a wide MLP
    (two 2048-unit layers, 4.3 M parameters) whose step at a small batch is mostly the
    optimizer's."""
    import keras

    layers = keras.layers
    if kind == "mlp":
        body = [keras.Input((64,)), layers.Dense(256, activation="relu"), layers.Dense(128, activation="relu")]
    elif kind == "wide":
        body = [keras.Input((64,)), layers.Dense(2048, activation="relu"), layers.Dense(2048, activation="relu")]
    else:
        body = [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
        ]
    return keras.Sequential([*body, layers.Dense(10)])


def measure_fit(name, kind, rounds, fast_path=True):
    """Training steps per second of ``model.fit`` with tfoptim's optimizer and its Keras twin:
    the same model and data (:data:`FIT_MODELS`: batch size and examples), one epoch each in
    turn, after a warm-up epoch (tracing)."""
    import keras
    from sklearn.datasets import load_digits

    make_ours, make_keras, _ = twins(fast_path)[name]
    batch_size, examples = FIT_MODELS[kind]
    digits = load_digits()
    x = (digits.data[:examples] / 16.0).astype("float32")
    x = x.reshape(-1, 8, 8, 1) if kind == "cnn" else x
    y = digits.target[:examples]
    steps = -(-len(x) // batch_size)
    if backend() == "tensorflow":
        # A dataset, to time it without tf.data's autotuning: Keras turns arrays into a dataset
        # with it on.
        import tensorflow as tf

        data = dict(x=without_autotuning(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()))
    else:
        data = dict(x=x, y=y, batch_size=batch_size)

    def compiled(optimizer):
        keras.utils.set_random_seed(0)
        model = digits_model(kind)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(**data, epochs=1, shuffle=False, verbose=0)
        return model

    def epoch(model):
        start = time.perf_counter()
        model.fit(**data, epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - start

    ours, theirs = compiled(make_ours()), compiled(make_keras())
    ratios, ours_t, theirs_t = [], [], []
    for i in range(rounds):
        a, b = (epoch(ours), epoch(theirs)) if i % 2 else tuple(reversed((epoch(theirs), epoch(ours))))
        ours_t.append(a)
        theirs_t.append(b)
        ratios.append(a / b)
    return FitResult(
        optimizer=name,
        model=kind,
        parameters=int(sum(np.prod(v.shape) for v in ours.trainable_variables)),
        variables=len(ours.trainable_variables),
        batch_size=batch_size,
        keras_steps_per_s=steps / float(np.median(theirs_t)),
        tfoptim_steps_per_s=steps / float(np.median(ours_t)),
        ratio=float(np.median(ratios)),
    )


#: ``--e2e``: the optimizers timed on every workload, and those timed on some only (LazyAdam
#: against Keras's Adam where gradients are sparse).
E2E_OPTIMIZERS = ("Adam", "SGD(momentum)")
E2E_EXTRA = {"recsys": ("LazyAdam",)}
#: Training steps in a timed epoch at the full size (a whole epoch of the full gpt is about 500 steps
#: of a 5 M-parameter transformer); at the quick size an epoch is all of the quick data.
E2E_STEPS = {"gpt": 4, "resnet": 10, "recsys": 20}


def e2e_jobs(optimizers, workloads, modes):
    """``(optimizer, workload, mode)`` for ``--e2e``, within the chosen optimizers."""
    return [
        (o, w, m)
        for w in workloads
        for m in modes
        for o in (*E2E_OPTIMIZERS, *E2E_EXTRA.get(w, ()))
        if o in optimizers
    ]


def without_autotuning(dataset):
    """``dataset`` with tf.data's autotuning switched off, for timing ``model.fit``.

    The autotuner's background loop sleeps 10 ms, 20 ms, 40 ms, ... between rounds, and
    destroying the iterator when ``fit`` returns waits for the sleep under way: with it on, an
    epoch of 5.2 to 10.2 s measures exactly 10.23 s (the sum of the first ten sleeps), and two
    optimizers' epochs in that range compare as equal."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def timing_batches(data, steps):
    """The first ``steps`` training batches of ``data`` (a workload's :class:`Data`), held in
    memory and without autotuning (:func:`without_autotuning`), for timing ``model.fit``
    epochs: every epoch reads the same batches and does no input work. The batches are read
    once to their end because Keras stops after the dataset's cardinality without asking for the
    end, and a cache never read to its end is rebuilt at every epoch."""
    batches = without_autotuning(data.train().take(steps).cache())
    for _ in batches:
        pass
    return batches


def measure_e2e(name, workload, mode, rounds, size="full", fast_path=True):
    """Seconds per ``model.fit`` epoch with tfoptim's optimizer and its Keras twin on the same
    model (the same initial weights) and batches, after a warm-up epoch each (tracing and, with
    ``mode="xla"``, compilation). The batches are made once and cached, so the input pipeline
    (the same for both) is not timed; epochs alternate, who goes first alternating too."""
    from tfoptim.benchmarks.workloads import get_workload

    if backend() != "tensorflow":
        raise ValueError(f"the end-to-end workloads run on Keras's TensorFlow backend, not {backend()!r}")
    if mode not in modes_available():
        raise ValueError(f"mode {mode!r} does not exist; choose from {modes_available()}")
    make_ours, make_keras, _ = twins(fast_path)[name]
    spec = get_workload(workload)
    data = spec.data(size, seed=0)
    steps = min(E2E_STEPS[workload], data.steps_per_epoch) if size == "full" else data.steps_per_epoch
    batches = timing_batches(data, steps)

    def compiled(optimizer):
        model = spec.compile(spec.build_model(size, seed=0), optimizer, jit_compile=mode == "xla")
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        return model

    def epoch(model):
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - start

    ours, theirs = compiled(make_ours()), compiled(make_keras())
    ratios, ours_t, theirs_t = [], [], []
    for i in range(rounds):
        if i % 2:
            a, b = epoch(ours), epoch(theirs)
        else:
            b, a = epoch(theirs), epoch(ours)
        ours_t.append(a)
        theirs_t.append(b)
        ratios.append(a / b)
    return E2EResult(
        optimizer=name,
        workload=workload,
        size=size,
        mode=mode,
        parameters=int(sum(np.prod(v.shape) for v in ours.trainable_variables)),
        variables=len(ours.trainable_variables),
        steps=steps,
        keras_s_per_epoch=float(np.median(theirs_t)),
        tfoptim_s_per_epoch=float(np.median(ours_t)),
        ratio=float(np.median(ratios)),
    )


#: ``--per-step``: the matrix-aware methods, each timed per training step against
#: :data:`PER_STEP_REFERENCE` on :data:`PER_STEP_WORKLOAD` (names: tfoptim's optimizers, or
#: ``keras.`` and the name of a Keras built-in; every one at its defaults).
PER_STEP_OPTIMIZERS = ("Muon", "NorMuon", "SOAP", "Shampoo", "PSGDKron", "keras.Muon")
PER_STEP_REFERENCE = "keras.AdamW"
PER_STEP_WORKLOAD = "gpt"
#: Training steps in a timed epoch: at the sweep size the realistic suite's whole budget (100),
#: so every epoch holds the periodic work it would (SOAP's basis refreshes, every 10 steps;
#: Shampoo's inverse roots, every 100 from step 100); at the full size fewer, for time (the
#: periodic work then lands in some epochs only: the median leaves it out); at the quick size
#: all of its data.
PER_STEP_STEPS = {"full": 10, "sweep": 100, "quick": None}


@dataclasses.dataclass
class PerStepResult:
    """``model.fit`` on a workload: an optimizer's time per training step against the
    reference's, without XLA (``mode="graph"``) or with ``jit_compile=True`` (``"xla"``)."""

    optimizer: str
    reference: str
    workload: str
    size: str
    mode: str
    parameters: int
    #: Training steps in one timed epoch.
    steps: int
    reference_ms_per_step: float
    ms_per_step: float
    #: Median over rounds of the epoch-time ratio optimizer / reference (paired epochs).
    ratio: float
    #: The same in CPU time (the process's, over all threads): what a step costs, which other
    #: work on a shared machine inflates far less than wall-clock time.
    reference_cpu_ms_per_step: float
    cpu_ms_per_step: float
    cpu_ratio: float
    #: Bytes of the optimizer's variables over the model's trainable parameters.
    state_bytes_per_parameter: float
    #: The first epoch, tracing (and with XLA, compiling) included.
    warmup_s: float


def per_step_factory(name):
    """The class ``name`` stands for in ``--per-step``: a tfoptim optimizer, or ``keras.NAME``
    (a Keras built-in)."""
    import keras

    import tfoptim.optimizers as to

    module, attribute = (keras.optimizers, name[len("keras."):]) if name.startswith("keras.") else (to, name)
    found = getattr(module, attribute, None)
    if not (isinstance(found, type) and issubclass(found, keras.optimizers.Optimizer)):
        raise ValueError(f"unknown optimizer {name!r}: name a tfoptim optimizer or keras.NAME, a Keras built-in")
    return found


def measure_per_step(names, workload=PER_STEP_WORKLOAD, size="sweep", modes=None, rounds=7, steps=None,
                     reference=PER_STEP_REFERENCE, progress=False):
    """Milliseconds per ``model.fit`` training step of each optimizer of ``names`` (at its
    defaults) against ``reference``'s, in each mode, on the workload at ``size``: one model per
    optimizer and mode (the same initial weights), a warm-up epoch each, then ``rounds`` rounds
    in which each optimizer's epoch is paired with one of the reference's in the same mode (who
    goes first alternating). The batches are made once and cached; an epoch holds ``steps`` of
    them (default :data:`PER_STEP_STEPS`). Optimizers keep their state from epoch to epoch, so
    the timed steps are those after the warm-up's."""
    from tqdm import tqdm

    from tfoptim.benchmarks.workloads import get_workload

    if backend() != "tensorflow":
        raise ValueError(f"the end-to-end workloads run on Keras's TensorFlow backend, not {backend()!r}")
    modes = modes or modes_available()
    for mode in modes:
        if mode not in modes_available():
            raise ValueError(f"mode {mode!r} does not exist; choose from {modes_available()}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"`steps` must be an integer >= 1. Received: steps={steps!r}")
    makers = {name: per_step_factory(name) for name in (reference, *names)}
    spec = get_workload(workload)
    data = spec.data(size, seed=0)
    steps = min(steps or PER_STEP_STEPS[size] or data.steps_per_epoch, data.steps_per_epoch)
    batches = timing_batches(data, steps)

    def epoch(model):
        """(wall-clock seconds, CPU seconds) of one epoch."""
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        return np.array([time.perf_counter() - wall, time.process_time() - cpu])

    entries = [(name, mode) for mode in modes for name in (reference, *names)]
    models, warmups = {}, {}
    for name, mode in tqdm(entries, desc="per-step warm-up", disable=not progress):
        model = spec.compile(spec.build_model(size, seed=0), makers[name](), jit_compile=mode == "xla")
        warmups[name, mode] = epoch(model)[0]
        models[name, mode] = model
    timed = {entry: [] for entry in entries}
    ratios = {entry: [] for entry in entries}
    pairs = [((name, mode), (reference, mode)) for name, mode in entries if name != reference]
    for i in tqdm(range(rounds), desc="per-step rounds", disable=not progress):
        for ours, theirs in pairs:
            if i % 2:
                a, b = epoch(models[ours]), epoch(models[theirs])
            else:
                b, a = epoch(models[theirs]), epoch(models[ours])
            timed[ours].append(a)
            timed[theirs].append(b)
            ratios[ours].append(a / b)
    results = []
    for (name, mode), theirs in pairs:
        (ms, cpu_ms), (reference_ms, reference_cpu_ms) = (1e3 * np.median(timed[e], axis=0) / steps for e in ((name, mode), theirs))
        ratio, cpu_ratio = np.median(ratios[name, mode], axis=0)
        model = models[name, mode]
        parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.optimizer.variables)
        results.append(PerStepResult(
            optimizer=name,
            reference=reference,
            workload=workload,
            size=size,
            mode=mode,
            parameters=parameters,
            steps=steps,
            reference_ms_per_step=float(reference_ms),
            ms_per_step=float(ms),
            ratio=float(ratio),
            reference_cpu_ms_per_step=float(reference_cpu_ms),
            cpu_ms_per_step=float(cpu_ms),
            cpu_ratio=float(cpu_ratio),
            state_bytes_per_parameter=state / parameters,
            warmup_s=warmups[name, mode],
        ))
    return results


def format_per_step_table(rows):
    lines = [
        "model.fit per training step against the reference (ratios: medians over paired epochs, wall-clock and"
        " CPU time; graph: no XLA, Keras's CPU default; xla: jit_compile=True); state: optimizer bytes per parameter",
        f"{'optimizer':<12}{'reference':<13}{'workload':<9}{'size':<7}{'mode':<7}{'params':>10}{'steps':>6}"
        f"{'ref ms':>8}{'ms':>8}{'ratio':>7}{'ref cpu':>8}{'cpu ms':>8}{'cpu ratio':>10}{'state':>7}{'warm-up s':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r.optimizer:<12}{r.reference:<13}{r.workload:<9}{r.size:<7}{r.mode:<7}{r.parameters:>10}{r.steps:>6}"
            f"{r.reference_ms_per_step:>8.1f}{r.ms_per_step:>8.1f}{r.ratio:>7.2f}{r.reference_cpu_ms_per_step:>8.1f}"
            f"{r.cpu_ms_per_step:>8.1f}{r.cpu_ratio:>10.2f}{r.state_bytes_per_parameter:>7.1f}{r.warmup_s:>10.1f}"
        )
    return "\n".join(lines)


def write_per_step(rows, machine, output, command=None):
    """per_step.json in ``output``: the command, the time, the machine and the rows."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"command": command, "utc": utc, "machine": machine, "per_step": [dataclasses.asdict(r) for r in rows]}
    (output / "per_step.json").write_text(json.dumps(payload, indent=2))


#: The end-to-end figure's optimizers (each with a same-rule Keras twin) and models, each with
#: its batch size and the digits it trains on (``None``: all 1,797).
FIT_OPTIMIZERS = ("Adam", "SGD(momentum)", "RMSprop")
FIT_MODELS = {"mlp": (64, None), "cnn": (64, None), "wide": (8, 512)}


def run_speed(optimizers=None, workloads=None, modes=None, rounds=7, quick=False, progress=True, fit=True,
              fast_path=True):
    from tqdm import tqdm

    modes = modes or modes_available()
    optimizers = optimizers or list(twins())
    # An empty list is a choice (the end-to-end workloads only), not the default.
    workloads = list(QUICK_WORKLOADS if quick else WORKLOADS) if workloads is None else workloads
    skipped = [
        {"optimizer": o, "workload": w, "reason": skip_reason(o, w)}
        for w in workloads for o in optimizers if skip_reason(o, w)
    ]
    jobs = [(o, w, m) for w in workloads for m in modes for o in optimizers if not skip_reason(o, w)]
    bar = tqdm(desc="bench speed", disable=not progress, total=len(jobs))
    machine = {"backend": backend(), "device": device_name(), "streaming_bandwidth_gbs": streaming_bandwidth(),
               "fast_path": fast_path}
    results = []
    for o, w, m in jobs:
        result = measure(o, w, m, rounds, fast_path)
        at_stream_s = bytes_per_parameter(result.state_slots) * _parameters(w) / (machine["streaming_bandwidth_gbs"] * 1e9)
        result.stream_ratio = at_stream_s / (result.keras_ms / 1e3)
        results.append(result)
        bar.update()
    bar.close()
    fits = []
    if fit:
        chosen = [o for o in FIT_OPTIMIZERS if o in optimizers]
        fit_jobs = [(o, k) for k in FIT_MODELS for o in chosen]
        fits = [measure_fit(o, k, rounds, fast_path=fast_path) for o, k in tqdm(fit_jobs, desc="bench fit", disable=not progress)]
    return results, fits, machine, skipped


def run_e2e(optimizers=None, workloads=None, modes=None, rounds=7, quick=False, progress=True, fast_path=True):
    """``--e2e``: :func:`measure_e2e` for every job of :func:`e2e_jobs` (default: every workload
    of :mod:`tfoptim.benchmarks.workloads`, both modes), at the full size or, with ``quick``, the
    quick one."""
    from tqdm import tqdm

    from tfoptim.benchmarks.workloads import workloads as all_workloads

    jobs = e2e_jobs(optimizers or list(twins()), workloads or list(all_workloads()), modes or modes_available())
    size = "quick" if quick else "full"
    bar = tqdm(jobs, desc="bench e2e", disable=not progress)
    return [measure_e2e(o, w, m, rounds, size, fast_path) for o, w, m in bar]


def _parameters(workload):
    shapes = WORKLOADS.get(workload) or QUICK_WORKLOADS[workload]
    return sum(int(np.prod(s)) for s in shapes)


def kernel_stepped(names):
    """The optimizers among ``names`` whose fast path is a TensorFlow training kernel (it also
    runs under a strategy)."""

    def has_kernel(name):
        optimizer = twins()[name][0]()
        return getattr(optimizer, "inner_optimizer", optimizer).training_op() is not None

    return sorted({name for name in names if has_kernel(name)}) or ["none here"]


def format_table(results, machine, skipped=()):
    on_jax = machine.get("backend") == "jax"
    device = machine.get("device", "cpu")
    bandwidth = "NumPy streaming bandwidth (triad, one thread)" if device.startswith("cpu") else (
        f"{device} streaming bandwidth (jitted triad)"
    )
    lines = [
        f"Keras backend: {machine.get('backend', 'tensorflow')}, device: {device}",
        f"{bandwidth}: {machine['streaming_bandwidth_gbs']:.1f} GB/s",
        "ratio: tfoptim / its Keras twin, or (*) / the nearest Keras built-in (a different rule);"
        " slots: state per parameter",
        "@stream: the ratio at which the rule's unavoidable bytes would move at that bandwidth (a"
        " yardstick: caches and threads can beat it)",
        *([] if on_jax else [
            "@floor (no XLA): the ratio of one in-place add per variable, the least any step must"
            " run; above 0.5, 2x is out of reach"
        ]),
        "On JAX both run the rules' keras.ops code under jax.jit (the fast path is TensorFlow's)."
        if on_jax else
        "Under a tf.distribute strategy the fast path steps aside (Keras's per-variable loop on each"
        " replica): expect a ratio of 1 there, not these, except for rules stepped by a TensorFlow"
        f" training kernel, which keep it: {', '.join(kernel_stepped(r.optimizer for r in results))}.",
        f"{'optimizer':<24}{'workload':<14}{'mode':<7}{'keras ms':>10}{'tfoptim ms':>12}"
        f"{'ratio':>8}{'@stream':>8}{'@floor':>8}{'slots':>6}{'GB/s':>8}{'% stream':>10}",
    ]
    for r in results:
        share = 100 * r.tfoptim_bandwidth_gbs / machine["streaming_bandwidth_gbs"]
        name = r.optimizer if r.optimizer in SAME_RULE else f"{r.optimizer} (*)"
        lines.append(
            f"{name:<24}{r.workload:<14}{r.mode:<7}{r.keras_ms:>10.2f}{r.tfoptim_ms:>12.2f}"
            f"{r.ratio:>8.2f}{r.stream_ratio:>8.2f}{r.floor_ratio:>8.2f}{r.state_slots:>6}{r.tfoptim_bandwidth_gbs:>8.1f}{share:>9.0f}%"
        )
    lines += [f"not timed: {s['optimizer']} on {s['workload']}: {s['reason']}" for s in skipped]
    return "\n".join(lines)


def format_fit_table(fits):
    lines = [
        "model.fit on digits (Keras's default jit_compile: no XLA on CPU with TensorFlow, jit on JAX)",
        f"{'optimizer':<16}{'model':<6}{'params':>9}{'vars':>6}{'batch':>6}{'keras steps/s':>15}"
        f"{'tfoptim steps/s':>17}{'ratio':>8}",
    ]
    for f in fits:
        lines.append(
            f"{f.optimizer:<16}{f.model:<6}{f.parameters:>9}{f.variables:>6}{f.batch_size:>6}"
            f"{f.keras_steps_per_s:>15.0f}{f.tfoptim_steps_per_s:>17.0f}{f.ratio:>8.2f}"
        )
    return "\n".join(lines)


def format_e2e_table(ends):
    lines = [
        "model.fit on the workloads (tfoptim.benchmarks.workloads): seconds per timed epoch; graph: no XLA"
        " (Keras's CPU default), xla: jit_compile=True",
        f"{'optimizer':<16}{'workload':<9}{'size':<7}{'mode':<7}{'params':>11}{'vars':>6}{'steps':>6}"
        f"{'keras s':>9}{'tfoptim s':>11}{'ratio':>8}",
    ]
    for e in ends:
        name = e.optimizer if e.optimizer in SAME_RULE and e.optimizer != "LazyAdam" else f"{e.optimizer} (*)"
        lines.append(
            f"{name:<16}{e.workload:<9}{e.size:<7}{e.mode:<7}{e.parameters:>11}{e.variables:>6}{e.steps:>6}"
            f"{e.keras_s_per_epoch:>9.2f}{e.tfoptim_s_per_epoch:>11.2f}{e.ratio:>8.2f}"
        )
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r.workload, r.mode) for r in results})
    names = list(dict.fromkeys(r.optimizer for r in results))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 3), 4), dpi=100)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ratios = [next((r.ratio for r in results if (r.workload, r.mode) == g and r.optimizer == name), np.nan) for g in groups]
        ax.bar(np.arange(len(groups)) + i * width, ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{w}\n{m}" for w, m in groups], fontsize=8)
    ax.set_ylabel("time ratio tfoptim / Keras (lower is faster)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results, machine, output, fits=(), ends=None, skipped=(), command=None):
    """speed.json (the command, the time, the machine, the results, an ``"e2e"`` list when
    ``ends`` is given, and the jobs not timed with their reasons) and, when there are
    apply-step results, speed.png."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "results": [dataclasses.asdict(r) for r in results],
        "fit": [dataclasses.asdict(f) for f in fits],
        "skipped": list(skipped),
    }
    if ends is not None:
        payload["e2e"] = [dataclasses.asdict(e) for e in ends]
    (output / "speed.json").write_text(json.dumps(payload, indent=2))
    if results:
        plot(results, output / "speed.png")
