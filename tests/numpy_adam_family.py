"""The Adam family's rules in NumPy, float64, written from the papers: the references of the
``moment_dtype`` and ``cautious`` tests.

Each factory returns ``step(state, theta, g, t) -> theta`` for one variable (``state``: a dict,
empty at the start, holding its moments; ``t = 1, 2, ...``). Two options, the two under test:

* ``rounding``: applied to every moment when it is written; :func:`bfloat16` gives what a
  bfloat16 slot holds, and the rule goes on with the rounded value.
* ``caution``: Liang et al. 2024's mask (:func:`cautious`) on the term the rule's step
  masks (the momentum ``m``).
"""

import numpy as np

from reference_problem import gradient, initial_problem


def identity(x):
    return x


def bfloat16(x):
    """``x`` rounded to bfloat16 (to nearest even, through float32), as float64."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def cautious(u, g):
    """"Cautious Optimizers" (arXiv:2411.16085), Algorithm 1 with the current rescaling:
    ``u`` where ``u * g > 0``, 0 elsewhere, divided by the share kept (at least 1e-3)."""
    mask = (u * g > 0).astype(np.float64)
    return u * mask / max(mask.mean(), 1e-3)


def ema(old, value, decay, rounding):
    return rounding(old + (value - old) * (1 - decay))


def masked(m, g, caution):
    return cautious(m, g) if caution else m


def adam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=0.0, rounding=identity):
    """Kingma & Ba's Adam ("epsilon hat" form) with Keras's decoupled decay."""

    def step(state, theta, g, t):
        theta = theta - lr * weight_decay * theta
        state["m"] = ema(state.get("m", 0.0), g, beta_1, rounding)
        state["v"] = v = ema(state.get("v", 0.0), g * g, beta_2, rounding)
        if amsgrad:
            state["vmax"] = v = np.maximum(state.get("vmax", 0.0), v)
        c1, c2 = 1 - beta_1**t, 1 - beta_2**t
        return theta - lr * np.sqrt(c2) / c1 * state["m"] / (np.sqrt(v) + epsilon)

    return step


def lion(lr, beta_1=0.9, beta_2=0.99, rounding=identity):
    """Chen et al.'s Algorithm 2."""

    def step(state, theta, g, t):
        m = state.get("m", 0.0)
        c = beta_1 * m + (1 - beta_1) * g
        state["m"] = rounding(beta_2 * m + (1 - beta_2) * g)
        return theta - lr * np.sign(c)

    return step


def rectified(lr, m, v, t, beta_1, beta_2, epsilon, sma_threshold, degenerated_to_sgd):
    """Liu et al.'s rectified step (the official code's threshold and epsilon placement)."""
    rho_inf = 2 / (1 - beta_2) - 1
    rho = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
    c1, c2 = 1 - beta_1**t, 1 - beta_2**t
    if rho >= sma_threshold:
        r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return lr * r * np.sqrt(c2) / c1 * m / (np.sqrt(v) + epsilon)
    return lr / c1 * m if degenerated_to_sgd else 0.0 * m


def ada_belief(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-16, rectify=False, rounding=identity, caution=False):
    """Zhuang et al.'s Algorithm 2, and the authors' rectified form (threshold 5, the momentum
    step below it): ``s`` rounded after its average and again after epsilon is added, the
    two writes of the rule."""

    def step(state, theta, g, t):
        state["m"] = m = ema(state.get("m", 0.0), g, beta_1, rounding)
        state["s"] = s = rounding(ema(state.get("s", 0.0), (g - m) ** 2, beta_2, rounding) + epsilon)
        m = masked(m, g, caution)
        if rectify:
            return theta - rectified(lr, m, s, t, beta_1, beta_2, epsilon, 5.0, True)
        c1, c2 = 1 - beta_1**t, 1 - beta_2**t
        return theta - lr / c1 * m / (np.sqrt(s / c2) + epsilon)

    return step


def radam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, degenerated_to_sgd=False, rounding=identity, caution=False):
    """Liu et al.'s RAdam, the official code's form."""

    def step(state, theta, g, t):
        state["m"] = m = ema(state.get("m", 0.0), g, beta_1, rounding)
        state["v"] = v = ema(state.get("v", 0.0), g * g, beta_2, rounding)
        m = masked(m, g, caution)
        return theta - rectified(lr, m, v, t, beta_1, beta_2, epsilon, 5.0, degenerated_to_sgd)

    return step


def yogi(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-3, initial=1e-6, rounding=identity, caution=False):
    """Zaheer et al.'s Algorithm 2 with Adam's bias corrections (TFA's form); ``v`` starts at
    ``initial``, rounded as its slot holds it."""

    def step(state, theta, g, t):
        m = state["m"] = ema(state.get("m", 0.0), g, beta_1, rounding)
        v = state.get("v", rounding(initial))
        v = state["v"] = rounding(v - (1 - beta_2) * np.sign(v - g * g) * g * g)
        c1, c2 = 1 - beta_1**t, 1 - beta_2**t
        return theta - lr * np.sqrt(c2) / c1 / (np.sqrt(v) + epsilon) * masked(m, g, caution)

    return step


def adopt(lr, beta_1=0.9, beta_2=0.9999, epsilon=1e-6, clip_exponent=0.25, rounding=identity):
    """Taniguchi et al.'s ADOPT, the official clipped version: the first step sets ``v``."""

    def step(state, theta, g, t):
        if t == 1:
            state["v"] = rounding(g * g)
            return theta
        v = state["v"]
        n = g / np.maximum(np.sqrt(v), epsilon)
        if clip_exponent is not None:
            n = np.clip(n, -((t - 1) ** clip_exponent), (t - 1) ** clip_exponent)
        state["m"] = m = ema(state.get("m", 0.0), n, beta_1, rounding)
        state["v"] = ema(v, g * g, beta_2, rounding)
        return theta - lr * m

    return step


def ademamix(lr, beta_1=0.9, beta_2=0.999, beta_3=0.9999, alpha=5.0, epsilon=1e-8, rounding=identity):
    """Pagliardini et al.'s Algorithm 1 without the warmups."""

    def step(state, theta, g, t):
        m = state["m"] = ema(state.get("m", 0.0), g, beta_1, rounding)
        slow = state["slow"] = ema(state.get("slow", 0.0), g, beta_3, rounding)
        v = state["v"] = ema(state.get("v", 0.0), g * g, beta_2, rounding)
        c1, c2 = 1 - beta_1**t, 1 - beta_2**t
        return theta - lr * (m / c1 + alpha * slow) / (np.sqrt(v / c2) + epsilon)

    return step


def adan(lr, beta_1=0.98, beta_2=0.92, beta_3=0.99, epsilon=1e-8, rounding=identity):
    """Xie et al.'s Adan with the official code's bias corrections; the previous gradient is
    state too (rounded when stored)."""

    def step(state, theta, g, t):
        d = g - state["previous"] if t > 1 else 0.0 * g
        state["previous"] = rounding(g)
        m = state["m"] = ema(state.get("m", 0.0), g, beta_1, rounding)
        v = state["v"] = ema(state.get("v", 0.0), d, beta_2, rounding)
        n = state["n"] = ema(state.get("n", 0.0), (g + beta_2 * d) ** 2, beta_3, rounding)
        c1, c2, c3 = 1 - beta_1**t, 1 - beta_2**t, 1 - beta_3**t
        return theta - lr * (m / c1 + beta_2 * v / c2) / (np.sqrt(n / c3) + epsilon)

    return step


def trajectory(rule, checkpoints, shapes):
    """``{step: [params]}`` of ``rule`` along ``tests/reference_problem.py`` on ``shapes``."""
    params, targets, curvatures = initial_problem(shapes=shapes)
    states = [{} for _ in params]
    out = {}
    for t in range(1, max(checkpoints) + 1):
        params = [rule(s, p, gradient(p, y, c), t) for s, p, y, c in zip(states, params, targets, curvatures)]
        if t in checkpoints:
            out[t] = [p.copy() for p in params]
    return out

