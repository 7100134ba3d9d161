"""Independent float64 NumPy references of every update rule, written from the papers.

Nothing here calls or mirrors tfoptim: each rule is transcribed from its source (cited in its
docstring) so that the tests compare tfoptim against the published math, not against itself.

A rule is a pair ``(step, init)`` built by a factory (``sgd(momentum=0.9)``, ``adam()``...):

* ``init(theta) -> state``: the rule's per-parameter state, a dict of float64 arrays;
* ``step(state, theta, g, lr, t) -> theta``: one update of one parameter, where ``g`` is the
  gradient at ``theta``, ``lr`` the learning rate of this step and ``t`` the 0-based number of
  updates applied so far. ``state`` is updated in place, the new ``theta`` is returned.

Weight decay wraps a rule (``decoupled_weight_decay(adam(), 0.01)``). ``trajectory`` runs a rule
along the reference problem (``reference_problem``); its learning rate is a float, a sequence
indexed by the 0-based step, or a callable of the 0-based step, so schedules can be tested.

The last section, ``compare``, is the check the per-rule tests share (tfoptim's trajectory
against the rule's); it imports TensorFlow only when called.
"""

import numpy as np

from reference_problem import STEPS, gradient, initial_problem


def _zeros(theta):
    return np.zeros_like(theta, dtype=np.float64)


# -- learning rates ------------------------------------------------------------------------


def as_rate(lr):
    """A callable of the 0-based step from a float, a per-step sequence or a callable."""
    if callable(lr):
        return lr
    if np.ndim(lr) == 0:
        return lambda t: float(lr)
    return lambda t: float(lr[t])


def piecewise_constant(boundaries, values):
    """``values[i]`` while ``boundaries[i-1] < t <= boundaries[i]`` (the convention of
    ``keras.optimizers.schedules.PiecewiseConstantDecay``'s documentation; ``t`` is the number
    of updates already applied)."""
    return lambda t: float(values[int(np.sum(t > np.asarray(boundaries)))])


def exponential(alpha, decay):
    """``alpha * decay**t``: the decayed step size of "dynamic" gradient descent."""
    return lambda t: alpha * decay**t


# -- the rules -----------------------------------------------------------------------------


def gradient_descent():
    """``theta <- theta - lr * g``.

    Cauchy (1847); Robbins & Monro, "A Stochastic Approximation Method" (1951).
    """

    def step(state, theta, g, lr, t):
        return theta - lr * g

    return step, lambda theta: {}


def sgd(momentum=0.0, nesterov=False, dampening=0.0, form="step"):
    """Momentum SGD in its two published parametrisations.

    ``form="step"``, the velocity of Sutskever, Martens, Dahl & Hinton, "On the importance of
    initialization and momentum in deep learning" (ICML 2013), eq. 1-2::

        v <- mu * v - lr * g;  theta <- theta + v

    with Nesterov momentum in the reformulation of Bengio, Boulanger-Lewandowski & Pascanu,
    "Advances in optimizing recurrent networks" (2013), eq. 7 (gradient taken at ``theta``)::

        v <- mu * v - lr * g;  theta <- theta + mu * v - lr * g

    ``form="gradient"``, Polyak's heavy ball, "Some methods of speeding up the convergence of
    iteration methods" (1964), as parametrised by ``torch.optim.SGD``'s documentation: the buffer
    holds gradients and the current rate multiplies it::

        b <- g (first step),  b <- mu * b + (1 - dampening) * g (later);  theta <- theta - lr * b
        Nesterov: theta <- theta - lr * (g + mu * b)

    The two coincide for a constant ``lr`` (``v = -lr * b``) and differ under a schedule.
    """
    if form not in ("step", "gradient"):
        raise ValueError(form)

    def step(state, theta, g, lr, t):
        if momentum == 0:
            return theta - lr * g
        if form == "step":
            v = state["buf"] = momentum * state["buf"] - lr * g
            return theta + (momentum * v - lr * g if nesterov else v)
        b = state["buf"] = g.copy() if t == 0 else momentum * state["buf"] + (1 - dampening) * g
        return theta - lr * (g + momentum * b if nesterov else b)

    return step, lambda theta: {"buf": _zeros(theta)}


def _root(x, epsilon, inside):
    """``sqrt(x + eps)`` (epsilon inside the root) or ``sqrt(x) + eps``."""
    return np.sqrt(x + epsilon) if inside else np.sqrt(x) + epsilon


def adagrad(epsilon=1e-7, epsilon_inside_sqrt=True, initial_accumulator_value=0.1):
    """Diagonal Adagrad: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization" (JMLR 2011), section 1.1 with ``H = delta*I + diag(G)``::

        G <- G + g**2  (G starts at initial_accumulator_value)
        theta <- theta - lr * g / (sqrt(G) + eps)   or   theta - lr * g / sqrt(G + eps)
    """

    def step(state, theta, g, lr, t):
        state["G"] = state["G"] + g * g
        return theta - lr * g / _root(state["G"], epsilon, epsilon_inside_sqrt)

    return step, lambda theta: {"G": np.full_like(theta, initial_accumulator_value)}


def rmsprop(
    rho=0.9,
    momentum=0.0,
    epsilon=1e-7,
    centered=False,
    epsilon_inside_sqrt=True,
    form="step",
    initial_accumulator_value=0.0,
):
    """RMSprop: Tieleman & Hinton, Coursera "Neural Networks for Machine Learning", lecture 6e
    (2012): divide the gradient by a running average of its recent magnitude::

        n <- rho * n + (1 - rho) * g**2          (n starts at initial_accumulator_value)

    Centered: Graves, "Generating Sequences With Recurrent Neural Networks" (2013), eq. 38-41,
    which also subtracts the squared running mean of the gradient::

        gbar <- rho * gbar + (1 - rho) * g;   s = n - gbar**2     (else s = n)
        d = sqrt(s + eps)  or  sqrt(s) + eps

    Graves's momentum is on the step (``form="step"``)::

        delta <- mu * delta + lr * g / d;   theta <- theta - delta

    ``form="gradient"`` (``torch.optim.RMSprop``'s documentation) keeps the scaled gradient::

        b <- mu * b + g / d;   theta <- theta - lr * b

    Without momentum both are ``theta <- theta - lr * g / d``.
    """
    if form not in ("step", "gradient"):
        raise ValueError(form)

    def step(state, theta, g, lr, t):
        state["n"] = rho * state["n"] + (1 - rho) * g * g
        s = state["n"]
        if centered:
            state["gbar"] = rho * state["gbar"] + (1 - rho) * g
            s = s - state["gbar"] ** 2
        scaled = g / _root(s, epsilon, epsilon_inside_sqrt)
        if momentum == 0:
            return theta - lr * scaled
        if form == "step":
            state["buf"] = momentum * state["buf"] + lr * scaled
            return theta - state["buf"]
        state["buf"] = momentum * state["buf"] + scaled
        return theta - lr * state["buf"]

    def init(theta):
        n = np.full_like(theta, initial_accumulator_value)
        return {"n": n, "gbar": _zeros(theta), "buf": _zeros(theta)}

    return step, init


def adam(beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, bias_corrected_epsilon=False):
    """Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015).

    With ``bias_corrected_epsilon=True``, Algorithm 1 (``t`` counted from 1)::

        m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1**t);   vhat = v / (1 - b2**t)
        theta <- theta - lr * mhat / (sqrt(vhat) + eps)

    Otherwise the efficient form of section 2 (last paragraph before 2.1), with "epsilon hat"::

        lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t);   theta <- theta - lr_t * m / (sqrt(v) + eps)

    AMSGrad: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018),
    Algorithm 2: ``vmax <- max(vmax, v)`` over the raw (uncorrected) ``v`` and ``vmax`` replaces
    ``v`` in the denominator; the bias corrections above are kept, as in the common
    implementations (the paper's algorithm has none).
    """

    def step(state, theta, g, lr, t):
        t = t + 1
        state["m"] = beta_1 * state["m"] + (1 - beta_1) * g
        state["v"] = beta_2 * state["v"] + (1 - beta_2) * g * g
        v = state["v"]
        if amsgrad:
            v = state["vmax"] = np.maximum(state["vmax"], v)
        c1, c2 = 1 - beta_1**t, 1 - beta_2**t
        if bias_corrected_epsilon:
            return theta - lr * (state["m"] / c1) / (np.sqrt(v / c2) + epsilon)
        return theta - lr * np.sqrt(c2) / c1 * state["m"] / (np.sqrt(v) + epsilon)

    return step, lambda theta: {"m": _zeros(theta), "v": _zeros(theta), "vmax": _zeros(theta)}


def lion(beta_1=0.9, beta_2=0.99):
    """Lion: Chen et al., "Symbolic Discovery of Optimization Algorithms" (NeurIPS 2023,
    arXiv:2302.06675), Algorithm 2 (its weight decay ``lambda`` is ``decoupled_weight_decay``
    below, which gives the same ``theta - lr * (sign(c) + lambda * theta)``)::

        c <- b1 * m + (1 - b1) * g;   theta <- theta - lr * sign(c);   m <- b2 * m + (1 - b2) * g

    ``state["c"]`` keeps the last step's ``c`` and ``state["c_terms"]`` the size of what it
    sums, ``|b1 * m| + |(1 - b1) * g|``: a sign is decided by rounding only where ``|c|`` is
    within a few ulps of that (the tests check their trajectories stay clear of such ties).
    """

    def step(state, theta, g, lr, t):
        m = state["m"]
        state["c"] = beta_1 * m + (1 - beta_1) * g
        state["c_terms"] = np.abs(beta_1 * m) + np.abs((1 - beta_1) * g)
        state["m"] = beta_2 * m + (1 - beta_2) * g
        return theta - lr * np.sign(state["c"])

    return step, lambda theta: {"m": _zeros(theta)}


# -- weight decay --------------------------------------------------------------------------


def decoupled_weight_decay(rule, weight_decay):
    """Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019), Algorithm 2,
    line 12, in the parametrisation of Keras's ``weight_decay`` (the decay is scaled by the
    scheduled rate ``lr_t``): the weights shrink before the rule, whose gradient was taken at
    the undecayed weights::

        theta <- theta - lr_t * weight_decay * theta;   theta <- rule(theta, g)
    """
    rule_step, init = rule

    def step(state, theta, g, lr, t):
        return rule_step(state, theta - lr * weight_decay * theta, g, lr, t)

    return step, init


def coupled_l2(rule, weight_decay):
    """L2 regularisation in the loss: ``g <- g + weight_decay * theta`` before the rule (the
    ``weight_decay`` of the PyTorch optimizers; Loshchilov & Hutter's Algorithm 2, line 6).

    ``theta`` is where the gradient was taken: with both decays, wrap this one outermost,
    ``coupled_l2(decoupled_weight_decay(rule, wd), l2)``."""
    rule_step, init = rule

    def step(state, theta, g, lr, t):
        return rule_step(state, theta, g + weight_decay * theta, lr, t)

    return step, init


# -- the driver ----------------------------------------------------------------------------


def trajectory(rule_step, state_init, lr_fn, steps=None, checkpoints=(STEPS,)):
    """Runs a rule along the reference problem for ``steps`` updates (``max(checkpoints)`` by
    default).

    Returns ``{step: [param arrays]}`` at every checkpoint (the shape of ``trajectory.run``'s
    result). ``lr_fn``: a float, a sequence or a callable of the 0-based step.
    """
    rate = as_rate(lr_fn)
    params, targets, curvatures = initial_problem()
    states = [state_init(p) for p in params]
    results = {}
    for t in range(max(checkpoints) if steps is None else steps):
        lr = rate(t)
        params = [
            rule_step(s, p, gradient(p, y, c), lr, t)
            for s, p, y, c in zip(states, params, targets, curvatures)
        ]
        if t + 1 in checkpoints:
            results[t + 1] = [p.copy() for p in params]
    return results


# -- the comparison the per-rule tests share ------------------------------------------------

#: Steps at which the tfoptim and NumPy trajectories are compared.
CHECKPOINTS = (1, 10, 50, STEPS)

#: Relative tolerance of every float64 comparison. Both sides evaluate the same formulas in
#: float64, differing only in the order of a few operations: the observed differences are a few
#: 1e-16 after 200 steps (the reference problem contracts, so rounding does not grow). 1e-12
#: leaves room for reassociation (FMA, XLA) while the smallest rule change the tests must catch
#: (where an epsilon of 1e-7 sits) moves the trajectory by more than 1e-9.
RTOL = 1e-12


def rate_pair(lr):
    """``(keras_learning_rate, numpy_rate)`` for a float or a piecewise-constant schedule given
    as ``(boundaries, values)``. The Keras schedule gets float64 values (Python floats would
    make it compute in float32), so it evaluates exactly."""
    if isinstance(lr, (int, float)):
        return float(lr), float(lr)
    import keras

    boundaries, values = lr
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [float(b) for b in boundaries], [np.float64(v) for v in values]
    )
    return schedule, piecewise_constant(boundaries, values)


def compare(optimizer_class, rule_factory, lr, rtol, numpy_names=None, numpy_lr=None, **kwargs):
    """Runs ``optimizer_class(keras_lr, **kwargs)`` (tfoptim, float64) and the NumPy rule
    ``rule_factory(**kwargs)`` on the reference problem and asserts they agree within ``rtol``
    at every checkpoint.

    tfoptim runs with ``exact_hyperparameters=True`` (the papers' rule: no float32 detour of
    betas, momentum, decay or start values) unless ``kwargs`` says otherwise; cases that test
    the default Keras-compatible precision use float32-representable hyperparameters.
    ``coupled_weight_decay`` (the L2 term, from the weights the gradient was taken at) and
    ``weight_decay`` (decoupled, Keras's) are applied by the wrappers above; ``numpy_names``
    renames the other arguments for the NumPy factory; ``numpy_lr`` replaces the NumPy side's
    rate. Imports TensorFlow only when called, so the rules above stay usable without it.
    """
    from trajectory import assert_close, floatx, run

    numpy_kwargs = {(numpy_names or {}).get(k, k): v for k, v in kwargs.items()}
    numpy_kwargs.pop("exact_hyperparameters", None)
    coupled = numpy_kwargs.pop("coupled_weight_decay", 0.0)
    decoupled = numpy_kwargs.pop("weight_decay", None)
    rule = rule_factory(**numpy_kwargs)
    if decoupled:
        rule = decoupled_weight_decay(rule, decoupled)
    if coupled:
        rule = coupled_l2(rule, coupled)
    keras_lr, rate = rate_pair(lr)
    expected = trajectory(*rule, rate if numpy_lr is None else numpy_lr, checkpoints=CHECKPOINTS)
    with floatx("float64"):
        optimizer = optimizer_class(keras_lr, **{"exact_hyperparameters": True, **kwargs})
        actual = run(optimizer, CHECKPOINTS)
    for step in CHECKPOINTS:
        try:
            assert_close(actual[step], expected[step], rtol)
        except AssertionError as error:
            raise AssertionError(f"step {step}: {error}") from None
