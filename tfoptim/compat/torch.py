"""``torch.optim`` optimizers, ported to Keras 3 with the same trajectories.

Each function takes the PyTorch class's arguments, with PyTorch's names and defaults, minus
``params`` (Keras optimizers receive their variables at ``apply``/``compile`` time), and returns
the tfoptim optimizer configured to follow PyTorch's rule exactly. PyTorch-only execution flags
(``foreach``, ``fused``, ``capturable``, ``differentiable``) are not accepted; ``maximize=True``
is refused (negate the loss instead).

============  ===================================================================================
PyTorch       differs from the Keras built-in by
============  ===================================================================================
SGD           ``weight_decay`` is L2 added to the gradient (``coupled_weight_decay``); the buffer
              accumulates gradients and the learning rate is applied afterwards
              (``momentum_buffer="gradient"``); ``dampening`` (buffer seeded undampened).
Adagrad       epsilon outside the square root; accumulator starts at 0 (Keras 0.1); ``lr_decay``
              is ``lr / (1 + (t - 1) * lr_decay)``, an ``InverseTimeDecay`` schedule; coupled L2.
RMSprop       ``alpha`` is Keras's ``rho`` (0.99 vs 0.9); epsilon outside the square root;
              momentum buffer of gradients, lr applied afterwards; coupled L2.
Adam          epsilon added after bias correction (``bias_corrected_epsilon=True``); epsilon
              1e-8; ``weight_decay`` is coupled L2 unless ``decoupled_weight_decay=True``.
AdamW         as Adam, with decoupled decay defaulting to 0.01 (Keras AdamW: 0.004).
RAdam         (no Keras built-in) ``RAdam(degenerated_to_sgd=True)``: the momentum step while
              ``rho_t <= 5``; epsilon 1e-8 on the raw ``sqrt(v)``; coupled L2 unless
              ``decoupled_weight_decay=True``.
============  ===================================================================================
"""

import keras

from tfoptim import optimizers
from tfoptim._validation import check_learning_rate, check_non_negative, check_positive, check_unit_interval

# PyTorch keeps every hyperparameter at the parameters' precision.
EXACT = {"exact_hyperparameters": True}


def _no_maximize(maximize):
    if maximize:
        raise ValueError("`maximize=True` is not supported: minimise the negated loss instead.")


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"`betas` must be a pair (beta1, beta2). Received: betas={betas!r}")
    return check_unit_interval("betas[0]", betas[0]), check_unit_interval("betas[1]", betas[1])


def _lr(lr):
    # Named as in PyTorch, so an error points at the argument the user wrote.
    try:
        return check_learning_rate(lr)
    except ValueError as error:
        raise ValueError(str(error).replace("learning_rate", "lr")) from None


def SGD(lr=0.001, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *, maximize=False):
    """``torch.optim.SGD``: ``b <- momentum * b + (1 - dampening) * (g + wd * theta)``,
    ``theta <- theta - lr * b`` (Nesterov: ``theta <- theta - lr * (g + momentum * b)``)."""
    _no_maximize(maximize)
    check_unit_interval("momentum", momentum)
    check_non_negative("weight_decay", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        # torch.optim.SGD's own check (Keras, and tfoptim's SGD, take momentum 0 as plain SGD).
        raise ValueError(
            "Nesterov momentum requires a momentum and zero dampening. "
            f"Received: momentum={momentum}, dampening={dampening}"
        )
    return optimizers.SGD(
        learning_rate=_lr(lr),
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
        momentum_buffer="gradient",
        coupled_weight_decay=weight_decay,
        **EXACT,
    )


def Adagrad(lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, *, maximize=False):
    """``torch.optim.Adagrad``: ``a <- a + g**2``,
    ``theta <- theta - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(a) + eps)``."""
    _no_maximize(maximize)
    check_non_negative("lr_decay", lr_decay)
    check_non_negative("weight_decay", weight_decay)
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_non_negative("eps", eps)
    learning_rate = _lr(lr)
    if lr_decay:
        learning_rate = keras.optimizers.schedules.InverseTimeDecay(
            float(lr), decay_steps=1, decay_rate=float(lr_decay)
        )
    return optimizers.Adagrad(
        learning_rate=learning_rate,
        initial_accumulator_value=initial_accumulator_value,
        epsilon=eps,
        epsilon_inside_sqrt=False,
        coupled_weight_decay=weight_decay,
        **EXACT,
    )


def RMSprop(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *, maximize=False):
    """``torch.optim.RMSprop``: ``v <- alpha * v + (1 - alpha) * g**2``, ``d = sqrt(v) + eps``
    (centered: ``sqrt(v - mean(g)**2) + eps``), ``b <- momentum * b + g / d``,
    ``theta <- theta - lr * b``."""
    _no_maximize(maximize)
    check_unit_interval("alpha", alpha)
    check_positive("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    check_unit_interval("momentum", momentum)
    return optimizers.RMSprop(
        learning_rate=_lr(lr),
        rho=alpha,
        momentum=momentum,
        epsilon=eps,
        centered=centered,
        epsilon_inside_sqrt=False,
        momentum_buffer="gradient",
        coupled_weight_decay=weight_decay,
        **EXACT,
    )


def Adam(
    lr=0.001,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    *,
    maximize=False,
    decoupled_weight_decay=False,
):
    """``torch.optim.Adam``: Adam with epsilon added to the bias-corrected ``sqrt(v)``;
    ``weight_decay`` is coupled L2, or AdamW's decoupled decay with ``decoupled_weight_decay``."""
    _no_maximize(maximize)
    beta_1, beta_2 = _betas(betas)
    check_positive("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    common = dict(
        learning_rate=_lr(lr),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=eps,
        amsgrad=amsgrad,
        bias_corrected_epsilon=True,
        **EXACT,
    )
    if decoupled_weight_decay:
        return optimizers.AdamW(weight_decay=weight_decay, **common)
    return optimizers.Adam(coupled_weight_decay=weight_decay, **common)


def AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False, *, maximize=False):
    """``torch.optim.AdamW``: decoupled decay ``theta <- theta * (1 - lr * weight_decay)``, then Adam
    (PyTorch's own ``Adam(decoupled_weight_decay=True)``)."""
    return Adam(lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)


def RAdam(lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, *, maximize=False):
    """``torch.optim.RAdam``: the rectified step once ``rho_t > 5``, the momentum step
    ``theta <- theta - lr * m / (1 - beta1**t)`` before; ``weight_decay`` is coupled L2, or
    ``theta <- theta * (1 - lr * weight_decay)`` with ``decoupled_weight_decay``. (tfoptim's
    threshold is ``rho_t >= 5``; no step has ``rho_t = 5`` exactly.)"""
    _no_maximize(maximize)
    beta_1, beta_2 = _betas(betas)
    check_positive("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    decay = dict(weight_decay=weight_decay) if decoupled_weight_decay else dict(coupled_weight_decay=weight_decay)
    return optimizers.RAdam(
        learning_rate=_lr(lr),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=eps,
        degenerated_to_sgd=True,
        **decay,
        **EXACT,
    )
