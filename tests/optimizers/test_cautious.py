"""``cautious=True`` (Liang et al. 2024, "Cautious Optimizers", arXiv:2411.16085).

Adam, AdamW, Lion, ADOPT and Adan against timm 1.0.31's ``caution=True``, AdEMAMix against
``pytorch_optimizer`` 4.1.0's ``cautious=True`` (with timm's rescaling), all recorded once by
``tests/fixtures/record_cautious.py`` (200 float64 steps of ``tests/reference_problem.py``;
Adam and Lion on four shapes, the last 16x8; the others on a 3x3x4x6 convolution kernel, a
6x5 kernel, its bias and a vector). AdaBelief, RAdam and Yogi, which no other library
offers cautious, against the paper's mask applied to the NumPy rules of
``tests/numpy_adam_family.py``.

The mask is discontinuous where ``m * g`` (Adam) or ``sign(c) * g`` (Lion) crosses zero. Once
a coordinate has converged to rounding level its gradient's sign, and the mask with it, is
decided by rounding, and a flipped component shows as a jump far above the tolerance (AdaBelief
at a rate of 0.003 with epsilon 1e-12 parted from the NumPy rule by 2e-5 at step 117, measured).
The rates below keep such a part out of the 200 steps; a few cases (the AMSGrad Adam,
``adopt_cautious_betas``, ``radam``) still bring one coordinate that starts near its optimum to
rounding level (``|g|`` about 1e-17 at step 200), where both sides agree because they compute
the gradient with the same IEEE operations.
"""

import keras
import numpy as np
import pytest

import numpy_adam_family as np_rules
import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import initial_problem
from trajectory import assert_close, assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("cautious")
SHAPES = tuple(tuple(s) for s in RECORDED.manifest["shapes"])
# Both sides compute the same float64 formulas in a different operation order (timm: lerp,
# mask applied before the division, decay as ``theta * (1 - lr wd)``): a few ulps per step on
# a contracting problem. Measured largest relative difference over the cases: 9.5e-15.
RTOL = 1e-12

# config id -> (tfoptim class, kwargs): timm's arguments in tfoptim's names. timm adds epsilon
# to the bias-corrected root (bias_corrected_epsilon=True) and keeps every hyperparameter
# exact.
CASES = {
    "adamw_cautious": (
        to.AdamW,
        dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.01),
    ),
    "adam_cautious_amsgrad": (
        to.Adam,
        dict(learning_rate=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-6, amsgrad=True),
    ),
    "lion_cautious": (to.Lion, dict(learning_rate=0.003, beta_1=0.9, beta_2=0.99, weight_decay=0.1)),
    "lion_cautious_betas": (to.Lion, dict(learning_rate=0.001, beta_1=0.95, beta_2=0.98)),
}


FAMILY = Recorded("cautious_family")
FAMILY_SHAPES = tuple(tuple(s) for s in FAMILY.manifest["shapes"])
# config id -> (tfoptim class, kwargs): the recorded arguments in tfoptim's names (timm's
# ``Adopt(decoupled=True)`` and pytorch_optimizer's ``weight_decouple=True`` are Keras's
# decoupled ``weight_decay``; Adan's is its own, proximal unless ``no_prox``).
FAMILY_CASES = {
    "adopt_cautious": (
        to.ADOPT, dict(learning_rate=0.003, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01)
    ),
    "adopt_cautious_betas": (to.ADOPT, dict(learning_rate=0.002, beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
    "adan_cautious": (
        to.Adan, dict(learning_rate=0.01, beta_1=0.98, beta_2=0.92, beta_3=0.99, epsilon=1e-8, weight_decay=0.02)
    ),
    "adan_cautious_no_prox": (
        to.Adan,
        dict(learning_rate=0.005, beta_1=0.9, beta_2=0.9, beta_3=0.999, epsilon=1e-8, weight_decay=0.02, no_prox=True),
    ),
    "ademamix_cautious": (
        to.AdEMAMix, dict(learning_rate=0.005, beta_1=0.9, beta_2=0.999, beta_3=0.9999, alpha=5.0, weight_decay=0.01)
    ),
    "ademamix_cautious_warmup": (
        to.AdEMAMix,
        dict(learning_rate=0.003, beta_1=0.8, beta_2=0.99, beta_3=0.999, alpha=2.0, alpha_warmup=120, beta_3_warmup=120),
    ),
}


def make(config_id, cautious=True, **overrides):
    klass, kwargs = CASES[config_id]
    extra = dict(bias_corrected_epsilon=True) if klass is not to.Lion else {}
    return klass(cautious=cautious, exact_hyperparameters=True, **extra, **kwargs, **overrides)


def relative_difference(actual, expected):
    return max(np.max(np.abs(a - e)) / np.max(np.abs(e)) for a, e in zip(actual, expected))


def test_fixture_problem_regenerates():
    for recorded in (RECORDED, FAMILY):
        shapes = [tuple(s) for s in recorded.manifest["shapes"]]
        params, targets, curvatures = initial_problem(seed=recorded.manifest["problem_seed"], shapes=shapes)
        for i, (p, t, c) in enumerate(zip(params, targets, curvatures)):
            np.testing.assert_array_equal(recorded.arrays[f"problem/param{i}"], p)
            np.testing.assert_array_equal(recorded.arrays[f"problem/target{i}"], t)
            np.testing.assert_array_equal(recorded.arrays[f"problem/curvature{i}"], c)


@pytest.mark.parametrize("config_id", sorted(CASES))
def test_follows_timm(config_id):
    with floatx("float64"):
        ours = run(make(config_id), RECORDED.steps, shapes=SHAPES)
        plain = run(make(config_id, cautious=False), RECORDED.steps, shapes=SHAPES)
    for step in RECORDED.steps:
        expected = RECORDED.expected(config_id, step)
        assert relative_difference(ours[step], expected) <= RTOL, step
    # The mask matters on this problem: without it the trajectory is elsewhere.
    final = RECORDED.steps[-1]
    assert relative_difference(plain[final], RECORDED.expected(config_id, final)) > 1e-3


@pytest.mark.variants("adan_cautious")
@pytest.mark.parametrize("config_id", sorted(FAMILY_CASES))
def test_follows_timm_and_pytorch_optimizer(config_id):
    klass, kwargs = FAMILY_CASES[config_id]
    with floatx("float64"):
        ours = run(klass(cautious=True, exact_hyperparameters=True, **kwargs), FAMILY.steps, shapes=FAMILY_SHAPES)
        plain = run(klass(exact_hyperparameters=True, **kwargs), FAMILY.steps[-1:], shapes=FAMILY_SHAPES)
    for step in FAMILY.steps:
        assert relative_difference(ours[step], FAMILY.expected(config_id, step)) <= RTOL, step
    final = FAMILY.steps[-1]
    assert relative_difference(plain[final], FAMILY.expected(config_id, final)) > 1e-3


# id -> (tfoptim class, kwargs, the NumPy rule with the mask on its momentum).
NUMPY_CASES = {
    "ada_belief": (
        to.AdaBelief,
        dict(learning_rate=0.002, epsilon=1e-8),
        np_rules.ada_belief(0.002, epsilon=1e-8, rectify=True, caution=True),
    ),
    "radam": (to.RAdam, dict(learning_rate=0.003, beta_2=0.99), np_rules.radam(0.003, beta_2=0.99, caution=True)),
    "radam_sgd": (
        to.RAdam,
        dict(learning_rate=0.002, degenerated_to_sgd=True),
        np_rules.radam(0.002, degenerated_to_sgd=True, caution=True),
    ),
    "yogi": (to.Yogi, dict(learning_rate=0.003), np_rules.yogi(0.003, caution=True)),
}


@pytest.mark.variants("radam")
@pytest.mark.parametrize("case", sorted(NUMPY_CASES))
def test_follows_numpy_mask(case):
    klass, kwargs, rule = NUMPY_CASES[case]
    with floatx("float64"):
        ours = run(klass(cautious=True, exact_hyperparameters=True, **kwargs), FAMILY.steps, shapes=FAMILY_SHAPES)
        plain = run(klass(exact_hyperparameters=True, **kwargs), FAMILY.steps[-1:], shapes=FAMILY_SHAPES)
    expected = np_rules.trajectory(rule, FAMILY.steps, FAMILY_SHAPES)
    for step in FAMILY.steps:
        assert_close(ours[step], expected[step], RTOL)
    final = FAMILY.steps[-1]
    assert relative_difference(plain[final], expected[final]) > 1e-3


CAUTIOUS_CLASSES = [to.Adam, to.AdamW, to.Lion, to.AdaBelief, to.RAdam, to.Yogi, to.ADOPT, to.AdEMAMix, to.Adan]


@pytest.mark.variants("Adam", "Lion")
@pytest.mark.parametrize("klass", CAUTIOUS_CLASSES, ids=lambda k: k.__name__)
def test_fast_path_follows_slow_path(klass):
    """The fused XLA call computes the mask's mean per variable, and cautious rules keep their
    small variables out of the flat groups (the mean would run over the group)."""
    rate = 0.003 if klass in (to.Lion, to.ADOPT) else 0.01
    optimizer = assert_fast_path_follows_slow_path(
        lambda fast: klass(learning_rate=rate, cautious=True, fast_path=fast), 20, 1e-12
    )
    assert not optimizer.elementwise and optimizer._groups == []


def test_mask_and_rescaling_on_one_step():
    """One step from zero moments: Adam's first ``m`` is ``(1 - beta_1) g``, which agrees with
    ``g`` everywhere but where ``g = 0``: there the mask is 0 and the others are scaled by
    ``1 / mean(mask)``. Lion's first direction is ``sign(g)``, the same mask."""
    g = np.array([1.0, -2.0, 0.0, 0.5])
    for klass in (to.Adam, to.Lion):
        steps = {}
        for cautious in (False, True):
            variable = keras.Variable(np.zeros(4), dtype="float64")
            klass(learning_rate=0.1, cautious=cautious).apply([g], [variable])
            steps[cautious] = variable.numpy()
        np.testing.assert_allclose(steps[True], steps[False] * 4 / 3, rtol=1e-15)


def test_lazy_adam_refuses_cautious():
    with pytest.raises(ValueError, match="cautious"):
        to.LazyAdam(cautious=True)


@pytest.mark.parametrize("klass", CAUTIOUS_CLASSES, ids=lambda k: k.__name__)
def test_config_round_trip(klass):
    """Both options are constructor arguments: in ``get_config``, restored by ``from_config``
    and through a ``.keras`` file's serialization."""
    optimizer = klass(cautious=True, moment_dtype="bfloat16")
    config = optimizer.get_config()
    assert config["cautious"] is True and config["moment_dtype"] == "bfloat16"
    for restored in (klass.from_config(config), keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))):
        assert type(restored) is klass
        assert restored.cautious is True and restored.moment_dtype == "bfloat16"
        assert restored.get_config() == config


@pytest.mark.parametrize("klass", CAUTIOUS_CLASSES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_cautious(klass, value):
    with pytest.raises(ValueError, match="`cautious` must be True or False"):
        klass(cautious=value)
