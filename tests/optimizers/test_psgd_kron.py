"""PSGDKron against ``kron_torch.Kron`` 0.3.3, recorded once by
``tests/fixtures/record_psgd_kron.py`` (torch 2.13.0, CPU, float64; see
``psgd_kron_trajectories.json``), with the reference's probes replayed.

200 steps of the reference problem on a bias, a 12x16 kernel, a 3x3x4x8 convolution kernel and
a 6x140 kernel (Keras's layout). The reference drew its probes ``V`` from
``numpy.random.RandomState([probe_seed, step, param index])``; :class:`Replayed` regenerates
them and hands them to the rule through ``PSGDKron.probe``, the one method the class documents
for this. torch is not needed here.
"""

import functools
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tfoptim.optimizers as to
from tfoptim.optimizers.psgd_kron import UpdateProbabilitySchedule, balanced, hashed_normal, merged_shape
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "psgd_kron_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "psgd_kron_trajectories.npz")
STEPS = MANIFEST["checkpoint_steps"]
SHAPES = tuple(tuple(s) for s in MANIFEST["shapes"])
TOTAL_STEPS = MANIFEST["problem_steps"]

# tfoptim's arguments for each recorded config (the manifest holds kron_torch's). The
# reference uses Python floats, so exact_hyperparameters=True; its factors were float64, as
# PSGDKron's are by default for float64 variables.
CONFIGS = {
    "defaults": dict(learning_rate=0.01),
    "schedule": dict(
        learning_rate=0.005, b1=0.95, weight_decay=0.01, precond_lr=0.2, precond_init_scale=0.5,
        preconditioner_update_probability=UpdateProbabilitySchedule(1.0, 0.1, 0.02, 20),
    ),
    "diagonal": dict(
        learning_rate=0.01, max_size_triangular=128, memory_save_mode="smart_one_diag", merge_dims=False,
        momentum_into_precond_update=False, preconditioner_update_probability=0.3,
    ),
    "all_diag": dict(learning_rate=0.02, b1=0.0, weight_decay=0.1, memory_save_mode="all_diag"),
}
# The same operations in another order (torch's einsum contraction paths against tensordot,
# a right-sided against a left-sided triangular solve): measured 1.5e-15 at most. all_diag
# steps without momentum, and near the optimum its clipped steps orbit it and amplify rounding
# from step 100 on: measured 5.7e-11 at step 200, where TensorFlow's own trajectory compiled
# by XLA (another rounding order) is 4.9e-10 from the uncompiled one.
RTOL = 1e-12
LOOSER_AT_END = {"all_diag": 1e-7}


def recorded_probe(step, index, shape):
    """The recorder's ``probe``."""
    return np.random.RandomState([MANIFEST["probe_seed"], step, index]).standard_normal(shape)


class Replayed(to.PSGDKron):
    """PSGDKron whose probe at ``iterations = n`` is the recorder's of step ``n + 1``; it marks
    the steps that drew one (the preconditioner updates)."""

    def build(self, variables):
        super().build(variables)
        self._recorded = [
            ops.convert_to_tensor(
                np.stack([recorded_probe(step, i, shape) for step in range(1, TOTAL_STEPS + 1)])
            )
            for i, shape in enumerate(self._shapes)
        ]
        self._probed = keras.Variable(np.zeros(TOTAL_STEPS), trainable=False, name="probed")

    def probe(self, index, shape, dtype):
        if index == 0:
            where = ops.reshape(ops.cast(self.iterations, "int32"), (1, 1))
            self._probed.assign(ops.scatter_update(self._probed, where, ops.ones((1,), "float64")))
        return ops.cast(ops.take(self._recorded[index], self.iterations, axis=0), dtype)


@functools.cache
def trajectory(config_id):
    with floatx("float64"):
        optimizer = Replayed(exact_hyperparameters=True, **CONFIGS[config_id])
        result = run(optimizer, STEPS, shapes=SHAPES)
    return result, [int(n) + 1 for n in np.flatnonzero(optimizer._probed.numpy())]


def expected(config_id, step):
    return [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(len(SHAPES))]


def test_manifest_is_this_replay():
    assert MANIFEST["probe"].startswith("numpy.random.RandomState([probe_seed, step, param index])")
    assert set(MANIFEST["configs"]) == set(CONFIGS)


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_matches_kron_torch(config_id):
    """Every checkpoint to ``RTOL`` (the last to ``LOOSER_AT_END``), and the preconditioner
    updated at the reference's steps."""
    ours, updates = trajectory(config_id)
    assert updates == MANIFEST["configs"][config_id]["update_steps"]
    for step in STEPS:
        rtol = LOOSER_AT_END.get(config_id, RTOL) if step == STEPS[-1] else RTOL
        assert_close(ours[step], expected(config_id, step), rtol)


def test_schedule_is_kron_torchs():
    """``p(n) = clip(max_prob * exp(-decay * (n - flat_start)), min_prob, max_prob)`` in
    float32 (to a few ulps: NumPy's and TensorFlow's float32 ``exp`` differ by one at some
    arguments); 1 during the flat start, 0.03 from about step 4000 at the defaults."""
    schedule = UpdateProbabilitySchedule()
    n = np.arange(0, 6000, 7, dtype=np.float32)
    expected = np.clip(np.float32(1.0) * np.exp(np.float32(-0.001) * (n - np.float32(500))), 0.03, 1.0)
    np.testing.assert_allclose(ops.convert_to_numpy(schedule(n)), expected, rtol=4e-7)
    assert ops.convert_to_numpy(schedule(499)) == 1.0 and ops.convert_to_numpy(schedule(4100)) == np.float32(0.03)


@pytest.mark.parametrize(
    "shape, merge, merged",
    [((3, 3, 4, 8), True, (36, 8)), ((16, 8, 3, 3), True, (384, 3)), ((3, 3, 4, 8), False, (3, 3, 4, 8)),
     ((5,), True, (5,)), ((), True, (1,)), ((2, 50, 3), True, (100, 3)), ((9, 1, 2), True, (9, 2))],
)
def test_merged_shape_is_kron_torchs(shape, merge, merged):
    """kron_torch's rule, restated: ``(prod(shape[:-1]), shape[-1])`` unless its ``cols -
    rows`` (signed) exceeds that of ``(shape[0], prod(shape[1:]))``."""
    assert merged_shape(shape, merge) == merged
    if len(shape) > 2 and merge:
        first = (int(np.prod(shape[:-1])), shape[-1])
        second = (shape[0], int(np.prod(shape[1:])))
        assert merged == (first if np.diff(first) <= np.diff(second) else second)


def test_balancing_keeps_the_kronecker_product():
    rng = np.random.default_rng(0)
    factors = [np.triu(rng.normal(size=(3, 3))) * 50, rng.normal(size=4) / 20, np.triu(rng.normal(size=(2, 2)))]
    new = [ops.convert_to_numpy(q) for q in balanced([ops.convert_to_tensor(q) for q in factors], True)]
    kron = functools.reduce(np.kron, [np.diag(q) if q.ndim == 1 else q for q in factors])
    new_kron = functools.reduce(np.kron, [np.diag(q) if q.ndim == 1 else q for q in new])
    np.testing.assert_allclose(new_kron, kron, rtol=1e-12, atol=1e-14)
    norms = [np.max(np.abs(q)) for q in new]
    np.testing.assert_allclose(norms, norms[0], rtol=1e-12)
    unchanged = balanced([ops.convert_to_tensor(q) for q in factors], False)
    for q, same in zip(factors, unchanged):
        np.testing.assert_array_equal(ops.convert_to_numpy(same), q)


def test_probe_is_keyed_on_seed_variable_and_step():
    optimizer = to.PSGDKron(seed=3)
    optimizer.build([keras.Variable(np.zeros((4, 5), "float32"))])
    first = ops.convert_to_numpy(optimizer.probe(0, (4, 5), "float32"))
    np.testing.assert_array_equal(ops.convert_to_numpy(optimizer.probe(0, (4, 5), "float32")), first)
    assert not np.allclose(ops.convert_to_numpy(optimizer.probe(1, (4, 5), "float32")), first)
    optimizer.iterations.assign(1)
    assert not np.allclose(ops.convert_to_numpy(optimizer.probe(0, (4, 5), "float32")), first)
    other = to.PSGDKron(seed=4)
    other.build([keras.Variable(np.zeros((4, 5), "float32"))])
    assert not np.allclose(ops.convert_to_numpy(other.probe(0, (4, 5), "float32")), first)


def numpy_hashed_normal(shape, key, step):
    """``hashed_normal`` restated in NumPy (uint64 arithmetic masked to 32 bits)."""
    mask = 0xFFFFFFFF

    def mix(x):
        x ^= x >> 16
        x = (x * 0x85EBCA6B) & mask
        x ^= x >> 13
        x = (x * 0xC2B2AE35) & mask
        return x ^ (x >> 16)

    size = int(np.prod(shape))
    stream = mix(np.uint64((step * 0x9E3779B9 + key) & mask))
    bits = mix((np.arange(6 * size, dtype=np.uint64) * 0x9E3779B9 + stream) & mask).reshape(6, size)
    uniforms = np.concatenate([bits & 0xFFFF, bits >> 16]).astype(np.float64)
    return (np.sum((uniforms + 0.5) / 2**16, axis=0) - 6).reshape(shape)


@pytest.mark.parametrize("key, step", [(0, 0), (12345, 7), (2**32 - 1, 10**6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hashed_normal_follows_numpy(key, step, dtype):
    """The same numbers as a NumPy restatement, bit for bit (integer arithmetic)."""
    ours = ops.convert_to_numpy(hashed_normal((3, 5, 7), dtype, key, ops.convert_to_tensor(step, "int64")))
    np.testing.assert_array_equal(ours, numpy_hashed_normal((3, 5, 7), key, step).astype(dtype))


def test_hashed_normal_has_unit_variance():
    """Mean, variance, fourth moment (Irwin-Hall's 2.9) and the correlation of neighbours of
    200,000 draws, each within four standard errors."""
    x = ops.convert_to_numpy(hashed_normal((200000,), "float64", 3, ops.convert_to_tensor(5, "int64")))
    n = x.size
    assert abs(x.mean()) < 4 / np.sqrt(n)
    assert abs(x.var() - 1) < 4 * np.sqrt(1.9 / n)
    assert abs(np.mean(x**4) - 2.9) < 4 * np.sqrt(96 / n)
    assert abs(np.mean(x[1:] * x[:-1])) < 4 / np.sqrt(n)
    assert np.max(np.abs(x)) <= 6


def test_schedule_round_trips_through_config():
    optimizer = to.PSGDKron(preconditioner_update_probability=UpdateProbabilitySchedule(0.5, 0.1, 0.01, 10))
    config = optimizer.get_config()
    restored = to.PSGDKron.from_config(json.loads(json.dumps(config)))
    assert restored.preconditioner_update_probability.get_config() == dict(
        max_prob=0.5, min_prob=0.1, decay=0.01, flat_start=10.0
    )
    assert restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(b1=1.0), "b1"),
        (dict(preconditioner_update_probability=0.0), "preconditioner_update_probability"),
        (dict(preconditioner_update_probability=1.5), "preconditioner_update_probability"),
        (dict(preconditioner_update_probability=lambda n: 0.5), "preconditioner_update_probability"),
        (dict(max_size_triangular=0), "max_size_triangular"),
        (dict(min_ndim_triangular=-1), "min_ndim_triangular"),
        (dict(memory_save_mode="two_diag"), "memory_save_mode"),
        (dict(momentum_into_precond_update=1), "momentum_into_precond_update"),
        (dict(precond_lr=0.0), "precond_lr"),
        (dict(precond_init_scale=-1.0), "precond_init_scale"),
        (dict(mu_dtype="int32"), "mu_dtype"),
        (dict(precond_dtype="float8"), "precond_dtype"),
        (dict(seed=-1), "seed"),
        (dict(weight_decay=None), "weight_decay"),
    ],
)
def test_bad_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        to.PSGDKron(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(max_prob=0.0), "max_prob"), (dict(min_prob=0.5, max_prob=0.2), "min_prob"),
     (dict(decay=-1.0), "decay"), (dict(flat_start=-1), "flat_start")],
)
def test_bad_schedule_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        UpdateProbabilitySchedule(**kwargs)


def test_dtype_arguments_are_standardized():
    optimizer = to.PSGDKron(mu_dtype=tf.bfloat16, precond_dtype=np.float64)
    assert (optimizer.mu_dtype, optimizer.precond_dtype) == ("bfloat16", "float64")
