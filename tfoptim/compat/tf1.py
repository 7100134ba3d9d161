"""TF1's ``tf.compat.v1.train`` optimizers, ported to Keras 3 with the same trajectories.

Each function takes the TF1 class's arguments, with TF1's names and defaults, and returns the
tfoptim optimizer configured to follow TF1's update rule exactly. ``use_locking`` has no
meaning for Keras 3 variables and is accepted only so ported code runs unchanged.

TF1 turns every Python-float hyperparameter into a float32 tensor before casting it to the
variable's dtype, so in a float64 model it trains with ``momentum=0.8999999762`` rather than
0.9. The ports round the same way, which is what makes float64 trajectories agree to 1e-10.

=========================  ================================================================
TF1                        differs from the Keras built-in by
=========================  ================================================================
GradientDescentOptimizer   nothing.
MomentumOptimizer          the buffer accumulates gradients, the learning rate is applied
                           afterwards (``momentum_buffer="gradient"``): same steps as Keras
                           under a constant rate, different under a schedule.
AdagradOptimizer           no epsilon at all (``epsilon=0``); accumulator starts at 0.1.
RMSPropOptimizer           mean square starts at 1.0, not 0 (``initial_accumulator_value=1``);
                           argument ``decay`` is Keras's ``rho``; epsilon defaults to 1e-10.
AdamOptimizer              epsilon defaults to 1e-8 (Keras: 1e-7); same rule otherwise.
=========================  ================================================================
"""

import numpy as np

from tfoptim import optimizers
from tfoptim._validation import check_positive, check_unit_interval


# _tf1 already rounds what TF1 rounds; everything else (Adagrad's initial accumulator) TF1 keeps
# exact.
EXACT = {"exact_hyperparameters": True}


def _tf1(value):
    """A Python float as TF1 sees it: rounded to float32 (schedules and tensors pass through)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(np.float32(value))
    return value


def GradientDescentOptimizer(learning_rate, use_locking=False, name=None):
    """``tf.compat.v1.train.GradientDescentOptimizer``: ``theta <- theta - lr * g``."""
    return optimizers.GradientDescent(learning_rate=_tf1(learning_rate), name=name, **EXACT)


def MomentumOptimizer(learning_rate, momentum, use_locking=False, name=None, use_nesterov=False):
    """``tf.compat.v1.train.MomentumOptimizer``: ``a <- momentum * a + g; theta <- theta - lr * a``.

    With ``use_nesterov``: ``theta <- theta - lr * (g + momentum * a)``.
    """
    check_unit_interval("momentum", momentum)
    return optimizers.SGD(
        learning_rate=_tf1(learning_rate),
        momentum=_tf1(momentum),
        nesterov=use_nesterov,
        momentum_buffer="gradient",
        name=name,
        **EXACT,
    )


def AdagradOptimizer(learning_rate, initial_accumulator_value=0.1, use_locking=False, name=None):
    """``tf.compat.v1.train.AdagradOptimizer``: ``a <- a + g**2; theta <- theta - lr * g / sqrt(a)``."""
    return optimizers.Adagrad(
        learning_rate=_tf1(learning_rate),
        initial_accumulator_value=initial_accumulator_value,
        epsilon=0.0,
        name=name,
        **EXACT,
    )


def RMSPropOptimizer(
    learning_rate,
    decay=0.9,
    momentum=0.0,
    epsilon=1e-10,
    use_locking=False,
    centered=False,
    name=None,
):
    """``tf.compat.v1.train.RMSPropOptimizer``.

    ``ms <- decay * ms + (1 - decay) * g**2`` (``ms`` starts at 1),
    ``mom <- momentum * mom + lr * g / sqrt(ms + epsilon)``, ``theta <- theta - mom``;
    centered subtracts the squared mean gradient from ``ms`` inside the root.
    """
    check_unit_interval("decay", decay)
    check_unit_interval("momentum", momentum)
    check_positive("epsilon", epsilon)
    return optimizers.RMSprop(
        learning_rate=_tf1(learning_rate),
        rho=_tf1(decay),
        momentum=_tf1(momentum),
        epsilon=_tf1(epsilon),
        centered=centered,
        initial_accumulator_value=1.0,
        name=name,
        **EXACT,
    )


def AdamOptimizer(
    learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False, name=None
):
    """``tf.compat.v1.train.AdamOptimizer``: Keras's Adam rule with TF1's epsilon default."""
    check_unit_interval("beta1", beta1)
    check_unit_interval("beta2", beta2)
    check_positive("epsilon", epsilon)
    return optimizers.Adam(
        learning_rate=_tf1(learning_rate),
        beta_1=_tf1(beta1),
        beta_2=_tf1(beta2),
        epsilon=_tf1(epsilon),
        name=name,
        **EXACT,
    )
