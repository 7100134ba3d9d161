"""Parameter groups: per-variable learning rates and weight decay, chosen by patterns on paths.

Every tfoptim optimizer takes two dicts (see :class:`tfoptim.optimizers.base.Optimizer`)::

    learning_rate_multipliers={pattern: factor}      # rate of a matching variable: factor * lr
    weight_decay_overrides={pattern: coefficient}    # its decoupled weight decay

A pattern is a regular expression searched (``re.search``) in the variable's ``path``
(``"encoder/dense/kernel"``); the first pattern in the dict's order that matches decides, and
an unmatched variable keeps the factor 1 and the optimizer's ``weight_decay``. The factor
multiplies the rate the step applies (after the schedule), so the decoupled decay, which
scales with the rate, scales with it, as a PyTorch parameter group's ``lr`` does. Keras's
``exclude_from_weight_decay`` still excludes whatever it names (call it before the optimizer
is built). The choices are made once per variable, when the optimizer is built. Both dicts are constructor arguments, so they are
in ``get_config`` and a ``.keras`` file.

This is optax's ``multi_transform`` / PyTorch's parameter groups for the two settings users
group by; for a different rule per group, use ``keras.optimizers.MultiOptimizer``.

For a rule that reduces over all variables (``Prodigy``, ``DAdaptAdam``) the factor scales the
rate of the step, not the statistics the rule gathers (its distance estimate sees the
unscaled rate).

:func:`layer_wise_learning_rate_multipliers` builds ``learning_rate_multipliers`` for
layer-wise learning-rate decay.
"""

import math
import re


def check_patterns(name, patterns):
    """``patterns`` as a ``{str: float}`` dict (None stays None), or a ValueError naming
    ``name``: keys valid regular expressions, values finite floats >= 0."""
    if patterns is None:
        return None
    if not isinstance(patterns, dict):
        raise ValueError(
            f"`{name}` must be a dict {{pattern: float >= 0}} or None. Received: {name}={patterns!r}"
        )
    checked = {}
    for pattern, value in patterns.items():
        if not isinstance(pattern, str):
            raise ValueError(f"`{name}` keys must be regular-expression strings. Received: {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"`{name}` has an invalid pattern {pattern!r}: {error}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"`{name}` values must be finite floats >= 0. Received: {name}[{pattern!r}]={value!r}"
            )
        checked[pattern] = float(value)
    return checked


def first_match(patterns, path, default):
    """The value of the first pattern of ``patterns`` (in order) found in ``path``, else
    ``default``."""
    for pattern, value in (patterns or {}).items():
        if re.search(pattern, path):
            return value
    return default


def layer_wise_learning_rate_multipliers(model, decay, layer_index=None, depth=None):
    """``learning_rate_multipliers`` for layer-wise learning-rate decay: the layer at index
    ``i`` steps with ``lr * decay ** (depth - i)``.

    The fine-tuning recipe of ELECTRA (Clark et al. 2020) and BEiT (Bao et al. 2022): the
    layers nearest the output keep the full rate, those nearer the input learn more slowly.
    BEiT's ``LayerDecayValueAssigner`` gives the embeddings index 0, block ``k`` index
    ``k + 1`` and the head ``num_layers + 1 = depth``.

    Args:
        model: a built Keras model.
        decay: the factor per layer, in (0, 1].
        layer_index: where each variable sits, a function ``path -> int >= 0`` called on
            every trainable variable's ``path`` (BEiT's assigner, say). None (default): the
            order of ``model.layers`` (the functional graph's order, or ``Sequential``'s): the
            ``k``-th of its layers that has trainable variables gets index ``k``, counting from
            0, so the last such layer (the head) gets ``depth`` and the full rate. Nested layers
            belong to the top-level layer that holds them.
        depth: the index that keeps the full rate; None (default): the largest index.

    Returns:
        ``{pattern: factor}`` with one exact pattern per trainable variable (``^path$``),
        ready for ``learning_rate_multipliers`` (merge it with patterns of your own; the first
        match wins). Plain strings and floats, so it serializes with the optimizer.
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
        raise ValueError(f"`decay` must be a float in (0, 1]. Received: decay={decay!r}")
    if layer_index is not None and not callable(layer_index):
        raise ValueError(f"`layer_index` must be a function path -> int or None. Received: {layer_index!r}")
    if not getattr(model, "built", False) or not model.trainable_variables:
        raise ValueError("`model` must be a built Keras model with trainable variables.")
    indices = {}
    if layer_index is None:
        position = 0
        for layer in model.layers:
            if layer.trainable_variables:
                for variable in layer.trainable_variables:
                    indices[variable.path] = position
                position += 1
    else:
        for variable in model.trainable_variables:
            index = layer_index(variable.path)
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(
                    f"`layer_index` must return an int >= 0. Received: {index!r} for {variable.path!r}"
                )
            indices[variable.path] = index
    deepest = max(indices.values())
    if depth is None:
        depth = deepest
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < deepest:
        raise ValueError(
            f"`depth` must be an int >= the largest layer index ({deepest}). Received: depth={depth!r}"
        )
    return {f"^{re.escape(path)}$": float(decay) ** (depth - index) for path, index in indices.items()}
