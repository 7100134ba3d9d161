"""AdEMAMix follows ``pytorch_optimizer.AdEMAMix`` (4.1.0), the paper's rule and ``beta_3``
schedule (as in the authors' optax code, apple/ml-ademamix).

References recorded once by ``tests/fixtures/record_modern_a.py`` (float64, 200 steps of
``tests/reference_problem.py``): the defaults, the ``alpha``/``beta_3`` warmups (crossing their
end within the 200 steps), other betas, alpha and epsilon, and decoupled weight decay.
"""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from recorded_trajectories import Recorded
from trajectory import assert_fast_path_follows_slow_path

RECORDED = Recorded("modern_a")
# Same formulas in another order (torch's lerp_ and addcdiv_): float64 rounding over 200 steps
# stays below 1e-15 relative.
RTOL = 1e-12


def from_reference(kwargs):
    """``pytorch_optimizer.AdEMAMix`` arguments as tfoptim's (its one ``t_alpha_beta3`` is
    both warmups; ``weight_decouple=True`` is Keras's decoupled ``weight_decay``)."""
    kwargs = dict(kwargs)
    assert kwargs.pop("weight_decouple", True)
    ours = {}
    if "betas" in kwargs:
        ours.update(zip(("beta_1", "beta_2", "beta_3"), kwargs.pop("betas")))
    if "t_alpha_beta3" in kwargs:
        ours["alpha_warmup"] = ours["beta_3_warmup"] = kwargs.pop("t_alpha_beta3")
    names = {"lr": "learning_rate", "eps": "epsilon", "alpha": "alpha", "weight_decay": "weight_decay"}
    ours.update({names[k]: v for k, v in kwargs.items()})
    return ours


@pytest.mark.parametrize("config_id", RECORDED.config_ids("AdEMAMix"))
def test_matches_reference(config_id):
    kwargs = from_reference(RECORDED.manifest["configs"][config_id]["kwargs"])
    make = lambda: to.AdEMAMix(exact_hyperparameters=True, **kwargs)  # noqa: E731
    assert RECORDED.relative_difference(config_id, make) <= RTOL


def test_beta_3_warmup_runs_from_beta_1_to_beta_3_in_half_life():
    """Halfway through the warmup the slow EMA's half-life is the mean of the two half-lives:
    with ``g = 1`` from zero, ``m2`` after one step is ``1 - beta_3(1)``."""
    beta_1, beta_3, warmup = 0.9, 0.999, 2
    variable = keras.Variable(np.zeros(1))
    optimizer = to.AdEMAMix(0.0, beta_1=beta_1, beta_3=beta_3, beta_3_warmup=warmup,
                            exact_hyperparameters=True)
    optimizer.apply([np.ones(1)], [variable])
    (slow,) = [v for v in optimizer.variables if v.path.endswith("slow_momentum")]
    half_life = np.mean([np.log(0.5) / np.log(b) for b in (beta_1, beta_3)])
    np.testing.assert_allclose(slow.numpy(), 1 - 0.5 ** (1 / half_life), rtol=1e-6)


# Fused (XLA) against per-variable: the second tier (test_base.py keeps two in the default run).
@pytest.mark.slow
def test_fast_path_follows_the_slow_path():
    kwargs = dict(learning_rate=0.01, alpha_warmup=50, beta_3_warmup=100, weight_decay=0.05)
    assert_fast_path_follows_slow_path(lambda fast: to.AdEMAMix(fast_path=fast, **kwargs), 200, 1e-12)


INVALID = [
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(beta_3=1.0), "beta_3"),
    (dict(alpha=-1.0), "alpha"),
    (dict(alpha_warmup=0), "alpha_warmup"),
    (dict(beta_3_warmup=2.5), "beta_3_warmup"),
    (dict(beta_1=0.0, beta_3_warmup=100), "beta_3_warmup"),
    (dict(epsilon=0.0), "epsilon"),
]


@pytest.mark.parametrize("kwargs, argument", INVALID, ids=[a for _, a in INVALID])
def test_invalid_arguments_raise_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        to.AdEMAMix(**kwargs)
