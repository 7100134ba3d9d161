"""Adam against the NumPy reference (Kingma & Ba 2015; AMSGrad per Reddi, Kale & Kumar 2018).

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200: epsilon after
the bias correction (Algorithm 1) or before it (the paper's "epsilon hat" form), with and
without AMSGrad, under a constant rate and a schedule; then other betas and both kinds of
weight decay. Betas and epsilons are not float32-representable, so a float32 detour of any
hyperparameter would show.
"""

import itertools

import keras
import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from reference_problem import gradient, initial_problem
from trajectory import floatx, run

SCHEDULE = ((40, 120), (0.01, 0.004, 0.001))
RATES = {"constant": 0.01, "schedule": SCHEDULE}
# epsilon=1e-3 so that where it sits (before or after the correction) moves the trajectory by
# ~1e-4, not only by ~1e-7 as the default would.
CASES = {
    f"amsgrad={amsgrad}-bias_corrected_epsilon={corrected}-{rate}": (
        RATES[rate],
        dict(amsgrad=amsgrad, bias_corrected_epsilon=corrected, epsilon=1e-3),
    )
    for amsgrad, corrected, rate in itertools.product((False, True), (False, True), RATES)
}
CASES.update(
    {
        "defaults": (0.01, {}),
        # A fast second moment lets sqrt(vhat) decay at the optimum until lr * curvature over the
        # denominator exceeds 2; the step then oscillates with growing amplitude and rounding
        # differences of 1e-17 grow to 1e-12 in 20 steps. epsilon=1e-2 keeps the denominator
        # above lr (curvatures <= ~2.3) so the comparison stays exact.
        "betas": (0.01, dict(beta_1=0.8, beta_2=0.99, epsilon=1e-2, bias_corrected_epsilon=True)),
        "coupled_weight_decay": (0.01, dict(coupled_weight_decay=0.05, amsgrad=True)),
        "weight_decay_schedule": (SCHEDULE, dict(weight_decay=0.1)),
        "both_weight_decays": (SCHEDULE, dict(weight_decay=0.1, coupled_weight_decay=0.05)),
        # Keras's float32 rounding of the betas in the bias corrections (the default) is a
        # no-op for these.
        "keras_precision": (
            SCHEDULE,
            dict(beta_1=0.875, beta_2=1 - 2**-10, amsgrad=True, exact_hyperparameters=False),
        ),
    }
)


@pytest.mark.parametrize("lr, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(lr, flags):
    nr.compare(to.Adam, nr.adam, lr, nr.RTOL, **flags)


@pytest.mark.parametrize("bias_corrected_epsilon", [False, True])
def test_first_step_moves_every_coordinate_by_lr(bias_corrected_epsilon):
    """After the bias correction ``mhat = g`` and ``vhat = g**2``: step 1 moves each coordinate
    by ``lr`` against its gradient, whatever ``|g|`` (epsilon 1e-12 shifts this by < 1e-9 for
    the smallest gradient here; without the correction the step would be 10x or 0.03x that)."""
    lr = 0.01
    with floatx("float64"):
        optimizer = to.Adam(
            lr,
            epsilon=1e-12,
            bias_corrected_epsilon=bias_corrected_epsilon,
            exact_hyperparameters=True,
        )
        (moved,) = run(optimizer, (1,)).values()
    for p0, p1, y, c in zip(*initial_problem()[:1], moved, *initial_problem()[1:]):
        np.testing.assert_allclose((p0 - p1) * np.sign(gradient(p0, y, c)), lr, 1e-8)


def test_amsgrad_denominator_never_decreases():
    """``vmax`` is the running maximum of the raw second moment: it holds while ``v`` decays
    after the gradients shrink (from 1 to 0.01 at step 6)."""
    beta_2 = 0.9
    grads = np.array([1.0] * 5 + [0.01] * 15)
    with floatx("float64"):
        variable = keras.Variable(np.zeros(1))
        optimizer = to.Adam(0.01, beta_2=beta_2, amsgrad=True, exact_hyperparameters=True)
        optimizer.build([variable])
        (v_max,) = [v for v in optimizer.variables if v.path.endswith("velocity_hat")]
        seen = []
        for g in grads:
            optimizer.apply([np.array([g])], [variable])
            seen.append(float(v_max.numpy()[0]))
    v = np.zeros(1)
    raw = [v := beta_2 * v + (1 - beta_2) * g * g for g in grads]
    assert np.all(np.diff(np.ravel(raw)[4:]) < 0)  # v itself decays after step 5...
    np.testing.assert_allclose(seen, np.maximum.accumulate(np.ravel(raw)), 1e-14)
    assert np.all(np.diff(seen) >= 0)  # ...the denominator does not.
