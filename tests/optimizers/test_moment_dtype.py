"""``moment_dtype="bfloat16"``: the moments of Adam, AdamW, LazyAdam, Lion, AdaBelief, RAdam,
Yogi, ADOPT, AdEMAMix and Adan stored in bfloat16, the arithmetic in the variable's dtype.

Reference: the NumPy rules of ``tests/numpy_adam_family.py``, float64, each moment rounded to
bfloat16 after each update (round to nearest even, through float32 as TensorFlow's cast rounds
float64) and used rounded.
Both sides compute the same float64 formulas; a moment's rounding could part only where its
float32 value lies within float64 rounding of a bfloat16 tie (measured: never along these
trajectories, largest difference below).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import numpy_adam_family as np_rules
import tfoptim.optimizers as to
from numpy_adam_family import bfloat16
from reference_problem import SHAPES, STEPS
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

# The same formulas in a different operation order (pow, the fused update): a few ulps per step
# on a contracting problem. Measured largest relative difference over the cases: 3.6e-16 (0 but
# for AdaBelief).
RTOL = 1e-12
CHECKPOINTS = (1, 10, 50, STEPS)


# id -> (tfoptim class, kwargs, NumPy rule from tests/numpy_adam_family.py)
CASES = {
    "adam": (to.Adam, dict(learning_rate=0.01), np_rules.adam(0.01, rounding=bfloat16)),
    "adam_amsgrad": (
        to.Adam,
        dict(learning_rate=0.01, beta_2=0.99, amsgrad=True),
        np_rules.adam(0.01, beta_2=0.99, amsgrad=True, rounding=bfloat16),
    ),
    "adamw": (
        to.AdamW, dict(learning_rate=0.01, weight_decay=0.05), np_rules.adam(0.01, weight_decay=0.05, rounding=bfloat16)
    ),
    "lazy_adam": (to.LazyAdam, dict(learning_rate=0.01), np_rules.adam(0.01, rounding=bfloat16)),
    "lion": (to.Lion, dict(learning_rate=0.003), np_rules.lion(0.003, rounding=bfloat16)),
    "ada_belief": (to.AdaBelief, dict(learning_rate=0.01, rectify=False), np_rules.ada_belief(0.01, rounding=bfloat16)),
    "radam": (
        to.RAdam, dict(learning_rate=0.01, beta_2=0.99), np_rules.radam(0.01, beta_2=0.99, rounding=bfloat16)
    ),
    "yogi": (to.Yogi, dict(learning_rate=0.01), np_rules.yogi(0.01, rounding=bfloat16)),
    "adopt": (to.ADOPT, dict(learning_rate=0.003, beta_2=0.999), np_rules.adopt(0.003, beta_2=0.999, rounding=bfloat16)),
    "ademamix": (
        to.AdEMAMix, dict(learning_rate=0.005, beta_3=0.999), np_rules.ademamix(0.005, beta_3=0.999, rounding=bfloat16)
    ),
    "adan": (to.Adan, dict(learning_rate=0.01), np_rules.adan(0.01, rounding=bfloat16)),
}
# Rules added to the option after the first: their cases run in the second tier.
LATER = (to.RAdam, to.Yogi, to.ADOPT, to.AdEMAMix, to.Adan)


@pytest.mark.variants("adam", "adam_amsgrad", "adamw", "lazy_adam", "lion", "ada_belief", "adan")
@pytest.mark.parametrize("case", sorted(CASES))
def test_follows_numpy_with_rounded_moments(case):
    klass, kwargs, rule = CASES[case]
    with floatx("float64"):
        optimizer = klass(moment_dtype="bfloat16", exact_hyperparameters=True, **kwargs)
        ours = run(optimizer, CHECKPOINTS)
        wide = run(klass(exact_hyperparameters=True, **kwargs), (STEPS,))
    expected = np_rules.trajectory(rule, CHECKPOINTS, SHAPES)
    for step in CHECKPOINTS:
        assert_close(ours[step], expected[step], RTOL)
    # The rounding shows: float64 moments end elsewhere.
    assert max(np.max(np.abs(a - e)) for a, e in zip(wide[STEPS], expected[STEPS])) > 1e-6
    slots = [v for v in optimizer.variables if len(v.shape) > 0]
    assert slots and {v.dtype for v in slots} == {"bfloat16"}


@pytest.mark.variants("float32-Adam", "float32-Lion", "float32-AdaBelief", "float64-Adam", "float64-Lion",
                      "float64-AdaBelief")
@pytest.mark.parametrize("klass", [to.Adam, to.Lion, to.AdaBelief, *LATER], ids=lambda k: k.__name__)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_keeps_the_variables_dtype(klass, dtype):
    """The default ``"float32"`` is Keras's layout: each slot in its variable's dtype (so a
    float64 model keeps float64 moments), and the trajectory is the one the rule always had."""
    with floatx(dtype):
        default = klass(learning_rate=0.01)
        explicit = klass(learning_rate=0.01, moment_dtype="float32")
        a, b = run(default, (20,), dtype=dtype), run(explicit, (20,), dtype=dtype)
    for x, y in zip(a[20], b[20]):
        np.testing.assert_array_equal(x, y)
    assert {v.dtype for v in default.variables if len(v.shape) > 0} == {dtype}


def state_bytes(optimizer):
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in optimizer.variables if len(v.shape) > 0)


@pytest.mark.parametrize("klass", [to.Adam, to.AdamW, to.Lion, to.AdaBelief, to.LazyAdam, *LATER])
@pytest.mark.parametrize("fast_path", [True, "grouped"])
def test_state_bytes_halve(klass, fast_path):
    variables = [keras.Variable(np.zeros(s, "float32")) for s in ((3,), (4, 5), (7,), (300, 300))]
    built = {}
    for moment_dtype in ("float32", "bfloat16"):
        optimizer = klass(moment_dtype=moment_dtype, fast_path=fast_path)
        optimizer.build(variables)
        built[moment_dtype] = state_bytes(optimizer)
    parameters = sum(int(np.prod(v.shape)) for v in variables)
    slots = {to.Lion: 1, to.AdEMAMix: 3, to.Adan: 4}.get(klass, 2)
    assert built["float32"] == 4 * slots * parameters
    assert built["bfloat16"] == built["float32"] // 2


@pytest.mark.variants("adam", "lion", "ada_belief")
@pytest.mark.parametrize("case", ["adam_amsgrad", "lion", "ada_belief", "radam", "yogi", "adopt", "ademamix", "adan"],
                         ids=lambda case: {"adam_amsgrad": "adam"}.get(case, case))
def test_fast_path_follows_slow_path(case):
    """The fused XLA call and the flat groups round the moments as the per-variable loop
    does (through float32 from float64)."""
    klass, kwargs, _ = CASES[case]
    assert_fast_path_follows_slow_path(lambda fast: klass(moment_dtype="bfloat16", fast_path=fast, **kwargs), 20, 1e-12)


def test_checkpoint_holds_bfloat16_slots(tmp_path):
    variables = [keras.Variable(np.ones(s, "float32")) for s in ((3,), (4, 5))]
    optimizer = to.Adam(learning_rate=0.1, moment_dtype="bfloat16")
    optimizer.apply([v * 0.3 for v in variables], variables)
    path = tf.train.Checkpoint(optimizer=optimizer).save(str(tmp_path / "ckpt"))
    dtypes = tf.train.load_checkpoint(path).get_variable_to_dtype_map()
    # Keras's checkpoint keys are the optimizer's variable indices: iterations and the rate
    # first, then the four slots.
    slot_dtypes = [dtypes[f"optimizer/_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in range(2, 6)]
    assert slot_dtypes == [tf.bfloat16] * 4
    restored = to.Adam(learning_rate=0.1, moment_dtype="bfloat16")
    restored.build(variables)
    tf.train.Checkpoint(optimizer=restored).restore(path).assert_existing_objects_matched()
    for a, b in zip(optimizer.variables, restored.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy(), np.float32), np.asarray(b.numpy(), np.float32))


def test_keras_file_resumes_exactly(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x @ np.arange(12, dtype="float32").reshape(4, 3) / 10

    def model():
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
        m.compile(optimizer=to.AdamW(learning_rate=0.01, moment_dtype="bfloat16"), loss="mse")
        return m

    keras.utils.set_random_seed(1)
    first = model()
    first.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "m.keras")
    resumed = keras.saving.load_model(tmp_path / "m.keras")
    assert resumed.optimizer.moment_dtype == "bfloat16"
    assert {v.dtype for v in resumed.optimizer.variables if len(v.shape) > 0} == {"bfloat16"}
    for model_ in (first, resumed):
        model_.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(first.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("klass", [to.Adam, to.AdamW, to.Lion, to.AdaBelief, to.LazyAdam, *LATER])
def test_bad_moment_dtype(klass):
    with pytest.raises(ValueError, match="moment_dtype"):
        klass(moment_dtype="float16")
