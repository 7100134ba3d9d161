"""AdamW against the NumPy reference: Adam (Kingma & Ba 2015) after decoupled weight decay
``theta <- theta - lr_t * wd * theta`` (Loshchilov & Hutter 2019, in Keras's parametrisation).

200 float64 steps of the reference problem, compared at steps 1, 10, 50 and 200, for two decay
strengths under a constant rate and a schedule (the decay follows the scheduled rate), with
AMSGrad and with epsilon after the bias correction (``torch.optim.AdamW``).
"""

import itertools

import keras
import numpy as np
import pytest

import numpy_rules as nr
import tfoptim.optimizers as to
from trajectory import floatx

SCHEDULE = ((40, 120), (0.01, 0.004, 0.001))
RATES = {"constant": 0.01, "schedule": SCHEDULE}
CASES = {
    f"weight_decay={wd}-{rate}": (RATES[rate], dict(weight_decay=wd))
    for wd, rate in itertools.product((0.004, 0.3), RATES)
}
CASES.update(
    {
        "amsgrad": (SCHEDULE, dict(weight_decay=0.3, amsgrad=True, epsilon=1e-3)),
        "bias_corrected_epsilon": (
            SCHEDULE,
            dict(weight_decay=0.3, bias_corrected_epsilon=True, epsilon=1e-3),
        ),
        # Keras's float32 rounding of the decay and betas (the default) is a no-op for these.
        "keras_precision": (
            SCHEDULE,
            dict(weight_decay=2**-6, beta_1=0.875, beta_2=1 - 2**-10, exact_hyperparameters=False),
        ),
    }
)


@pytest.mark.parametrize("lr, flags", CASES.values(), ids=CASES.keys())
def test_matches_reference(lr, flags):
    nr.compare(to.AdamW, nr.adam, lr, nr.RTOL, **flags)


def test_decay_is_decoupled_from_the_adaptive_scaling():
    """With zero gradients Adam's own step is 0 (``m = 0``), so the weights only shrink by
    ``1 - lr_t * wd`` per step, following the schedule. Coupled L2 would instead feed
    ``wd * theta`` through Adam's normalisation and move every weight by ~``lr`` per step."""
    (boundaries, values), wd, steps = ((3, 6), (0.25, 0.125, 0.0625)), 0.5, 10
    theta = np.array([1.5, -0.75, 3.0])
    with floatx("float64"):
        variable = keras.Variable(theta)
        optimizer = to.AdamW(
            nr.rate_pair((boundaries, values))[0], weight_decay=wd, exact_hyperparameters=True
        )
        for _ in range(steps):
            optimizer.apply([np.zeros_like(theta)], [variable])
        actual = variable.numpy()
    rate = nr.piecewise_constant(boundaries, values)
    shrink = np.prod([1 - rate(t) * wd for t in range(steps)])
    np.testing.assert_allclose(actual, theta * shrink, 1e-14)
