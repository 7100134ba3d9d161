"""Lion against the paper's Algorithm 2 (a NumPy transcription, ``numpy_rules.lion``), against
``pytorch_optimizer.Lion`` 4.1.0 (recorded once by ``tests/fixtures/record_modern_a.py``), and
bit for bit against ``keras.optimizers.Lion`` (its other cases: ``test_keras_parity.py``).

200 float64 steps of ``tests/reference_problem.py``. Lion's step is ``sign(c)``, discontinuous
at ``c = 0``: two implementations whose ``c`` differ in the last bits agree only while no ``c``
comes within rounding of zero. Every trajectory compared here is checked to stay clear of such
ties (``test_compared_trajectories_stay_clear_of_sign_ties``), so the comparisons below cannot
turn flaky on a change of summation order; should a new case or problem bring one close, that
test names it, next to the trajectory test that would then fail by ``2 * lr``.
"""

import keras
import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from reference_problem import STEPS, gradient, initial_problem
from trajectory import assert_fast_path_follows_slow_path, floatx, run

RECORDED = Recorded("modern_a")
# Each step moves every coordinate by exactly +-lr (one rounding, the same on both sides), so
# without weight decay the trajectories are bit for bit equal (measured: 0 for every case
# here). Weight decay adds a product whose operand order differs between implementations: one
# ulp per step at most, 200 * 2.2e-16 = 4.4e-14 relative over 200 steps (measured: 0 against
# NumPy, 4.1e-16 against torch's decoupled decay, 1.9e-16 between the fast path's XLA call and
# the per-variable loop). A single flipped sign moves a coordinate by 2 * lr, 8e-5 relative or
# more here; a float32 detour of the weight decay (0.1) moves the trajectory by 2.8e-9.
RTOL = 1e-13
# Smallest admissible |c| / (|beta_1 m| + |(1 - beta_1) g|) along a compared trajectory:
# implementations differ by ~1e-16 of that sum, so signs cannot part above this. Measured
# minimum over the cases below: 9.1e-6 (betas 0.95/0.98); over MIXED_SHAPES' 306,414 entries
# (the fast-path test, not part of the tie check) 8e-9, still 1e7 times the rounding.
TIE_MARGIN = 1e-10

SCHEDULE = ((40, 120), (0.01, 0.004, 0.001))
# The paper's rule, transcribed in numpy_rules; exact hyperparameters (the paper's) unless said.
PAPER_CASES = {
    "constant": (0.01, {}),
    "keras_default_rate": (0.001, {}),
    "schedule": (SCHEDULE, {}),
    "betas": (0.01, dict(beta_1=0.95, beta_2=0.98)),
    # beta_1 = 0: signSGD; beta_1 = 1: the momentum alone (step 1 has c = 0 and does not move).
    "sign_sgd": (0.01, dict(beta_1=0.0)),
    "momentum_only": (0.01, dict(beta_1=1.0)),
    "weight_decay_schedule": (SCHEDULE, dict(weight_decay=0.1)),
    "coupled_weight_decay": (0.01, dict(coupled_weight_decay=0.1)),
    "both_weight_decays": (SCHEDULE, dict(weight_decay=0.1, coupled_weight_decay=0.05)),
    # Keras's float32 rounding of the hyperparameters (the default) is a no-op for these.
    "keras_precision": (
        0.01, dict(beta_1=0.875, beta_2=1 - 2**-7, weight_decay=0.0625, exact_hyperparameters=False)
    ),
}


def from_reference(kwargs):
    """``pytorch_optimizer.Lion`` arguments as tfoptim's. Its default rate is 1e-4 (tfoptim's and
    Keras's: 1e-3); ``weight_decouple=True`` (its default) is Keras's decoupled
    ``weight_decay``, ``False`` the L2 term, tfoptim's ``coupled_weight_decay``."""
    kwargs = {"lr": 1e-4, **kwargs}
    decoupled = kwargs.pop("weight_decouple", True)
    ours = {"learning_rate": kwargs.pop("lr")}
    if "betas" in kwargs:
        ours["beta_1"], ours["beta_2"] = kwargs.pop("betas")
    if "weight_decay" in kwargs:
        ours["weight_decay" if decoupled else "coupled_weight_decay"] = kwargs.pop("weight_decay")
    assert not kwargs, kwargs
    return ours


def smallest_tie_margin(lr, beta_1=0.9, beta_2=0.99, weight_decay=0.0, coupled_weight_decay=0.0,
                        exact_hyperparameters=True):
    """The smallest ``|c| / (|beta_1 m| + |(1 - beta_1) g|)`` along the NumPy trajectory of
    these arguments (entries where both terms are 0 have ``c = 0`` exactly everywhere)."""
    step, init = nr.lion(beta_1, beta_2)
    margins = []

    def watched(state, theta, g, rate, t):
        theta = step(state, theta, g, rate, t)
        decided = state["c_terms"] > 0
        ratio = np.abs(state["c"][decided]) / state["c_terms"][decided]
        margins.append(np.min(ratio, initial=np.inf))
        return theta

    rule = (watched, init)
    if weight_decay:
        rule = nr.decoupled_weight_decay(rule, weight_decay)
    if coupled_weight_decay:
        rule = nr.coupled_l2(rule, coupled_weight_decay)
    nr.trajectory(*rule, nr.rate_pair(lr)[1], checkpoints=(STEPS,))
    return min(margins)


def test_compared_trajectories_stay_clear_of_sign_ties():
    compared = {f"paper/{k}": (lr, flags) for k, (lr, flags) in PAPER_CASES.items()}
    for config_id in RECORDED.config_ids("Lion"):
        kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
        compared[f"torch/{config_id}"] = (kwargs.pop("learning_rate"), kwargs)
    for name, (lr, flags) in compared.items():
        margin = smallest_tie_margin(lr, **flags)
        assert margin > TIE_MARGIN, f"{name}: a sign is decided by {margin:.1e} of its terms"


@pytest.mark.parametrize("lr, flags", PAPER_CASES.values(), ids=PAPER_CASES.keys())
def test_matches_paper(lr, flags):
    nr.compare(to.Lion, nr.lion, lr, RTOL, **flags)


@pytest.mark.parametrize("config_id", RECORDED.config_ids("Lion"))
def test_matches_pytorch_optimizer(config_id):
    kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
    make = lambda: to.Lion(exact_hyperparameters=True, **kwargs)  # noqa: E731
    error = RECORDED.relative_difference(config_id, make)
    assert error <= RTOL, f"{config_id}: {error:.2e}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_defaults_are_keras_lion_bit_for_bit(dtype):
    """Same rule, same defaults, same arithmetic (``m * beta_1 + g * (1 - beta_1)``, the betas
    rounded through float32 as Keras does): the trajectories are identical, in float32 too."""
    ours_config, keras_config = to.Lion().get_config(), keras.optimizers.Lion().get_config()
    for name in ("learning_rate", "beta_1", "beta_2", "weight_decay"):
        assert ours_config[name] == keras_config[name], name
    checkpoints = (1, 10, 50, STEPS)
    with floatx(dtype):
        ours = run(to.Lion(), checkpoints, dtype=dtype)
        theirs = run(keras.optimizers.Lion(), checkpoints, dtype=dtype)
    for step in checkpoints:
        for a, b in zip(ours[step], theirs[step]):
            np.testing.assert_array_equal(a, b)


def test_every_coordinate_moves_by_the_learning_rate():
    """Whatever ``|g|`` (0.007 to 5.2 at the start of this problem): ``|theta_t - theta_(t-1)|``
    is ``lr`` up to the rounding of ``theta - lr`` (half an ulp of ``|theta| < 4``: 2.2e-14 of
    lr)."""
    lr = 0.01
    steps = tuple(range(1, 11))
    with floatx("float64"):
        trajectory = run(to.Lion(lr), steps)
    previous = initial_problem()[0]
    for step in steps:
        for before, after in zip(previous, trajectory[step]):
            np.testing.assert_allclose(np.abs(after - before), lr, rtol=1e-13)
        previous = trajectory[step]
    grads = [np.abs(gradient(*args)) for args in zip(*initial_problem())]
    assert min(g.min() for g in grads) < 0.01 and max(g.max() for g in grads) > 5


@pytest.mark.parametrize("beta_1, moves", [(0.9, -1.0), (0.5, 1.0)])
def test_step_interpolates_with_beta_1_and_momentum_remembers_with_beta_2(beta_1, moves):
    """After 20 gradients of 1, ``m = 1 - 0.99**20 = 0.182``; then ``g = -0.5``. With
    ``beta_1 = 0.9`` the momentum outweighs it (``c = 0.114``) and the step goes against this
    gradient; with ``beta_1 = 0.5``, ``c = -0.159`` and it follows it. ``m`` itself moves with
    ``beta_2`` alone, whatever ``beta_1``."""
    lr, beta_2 = 0.01, 0.99
    grads = [1.0] * 20 + [-0.5]
    with floatx("float64"):
        variable = keras.Variable(np.zeros(1))
        optimizer = to.Lion(lr, beta_1=beta_1, beta_2=beta_2, exact_hyperparameters=True)
        optimizer.build([variable])
        (momentum,) = [v for v in optimizer.variables if v.path.endswith("momentum")]
        for g in grads[:-1]:
            optimizer.apply([np.array([g])], [variable])
        before = float(variable.numpy()[0])
        optimizer.apply([np.array([grads[-1]])], [variable])
    np.testing.assert_allclose(float(variable.numpy()[0]) - before, moves * lr, rtol=1e-12)
    m = 0.0
    for g in grads:
        m = beta_2 * m + (1 - beta_2) * g
    np.testing.assert_allclose(momentum.numpy(), [m], rtol=1e-14)


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [dict(), dict(weight_decay=0.1), dict(beta_1=0.0, coupled_weight_decay=0.01)],
    ids=["no_decay", "weight_decay", "sign_sgd_coupled"],
)
def test_fast_path_follows_the_slow_path(flags):
    """Without weight decay the small variables' group is stepped from zero and the increment
    added to each (``increment_only``); with either decay, from the members' values. The fused
    step is two XLA calls, the weights' then the momentum's (``update_phases``), except with
    ``coupled_weight_decay``, whose gradient reads the weights the first call changes."""
    assert len(to.Lion().update_phases()) == 2
    assert_fast_path_follows_slow_path(lambda fast: to.Lion(0.01, fast_path=fast, **flags), STEPS, RTOL)


def test_serialization_round_trip():
    optimizer = to.Lion(
        keras.optimizers.schedules.CosineDecay(3e-4, 1000), beta_1=0.95, beta_2=0.98,
        weight_decay=0.1, coupled_weight_decay=0.01, exact_hyperparameters=True,
    )
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == "tfoptim>Lion"
    restored = keras.optimizers.deserialize(serialized)
    assert type(restored) is to.Lion
    assert restored.get_config() == optimizer.get_config()
    assert (restored.beta_1, restored.beta_2) == (0.95, 0.98)


@pytest.mark.parametrize("beta_1", [0.0, 1.0])
def test_beta_1_accepts_both_ends(beta_1):
    assert to.Lion(beta_1=beta_1).beta_1 == beta_1


INVALID = [
    (dict(beta_1=-0.1), r"`beta_1` must be in \[0\.0, 1\.0\]\. Received: beta_1=-0\.1"),
    (dict(beta_1=1.5), r"`beta_1` must be in \[0\.0, 1\.0\]"),
    (dict(beta_1=float("nan")), r"`beta_1` must be a finite number"),
    (dict(beta_2=1.0), r"`beta_2` must be in \[0\.0, 1\.0\)\. Received: beta_2=1\.0"),
    (dict(beta_2=-0.5), r"`beta_2` must be in \[0\.0, 1\.0\)"),
    (dict(beta_2="0.99"), r"`beta_2` must be a finite number"),
    (dict(learning_rate=-1e-4), r"`learning_rate` must be in \[0\.0, inf\]"),
    (dict(weight_decay=-0.1), r"`weight_decay`"),
]


@pytest.mark.parametrize("kwargs, message", INVALID, ids=[str(k) for k, _ in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        to.Lion(**kwargs)
