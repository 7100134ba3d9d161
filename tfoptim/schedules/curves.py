"""Looking at a schedule: its values as an array, its curve as a picture."""

import numbers

import numpy as np


def _steps_array(steps):
    """``steps``: an int ``n`` (steps ``0 .. n-1``) or a 1-D sequence of integer steps >= 0."""
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        if steps < 1:
            raise ValueError(f"`steps` must be >= 1. Received: steps={steps!r}")
        return np.arange(steps, dtype=np.int64)
    array = np.asarray(steps)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            "`steps` must be an int or a non-empty 1-D sequence of integers. "
            f"Received: steps={steps!r}"
        )
    if array.min() < 0:
        raise ValueError(
            f"Schedules are defined for steps >= 0. Received: min(steps)={array.min()}"
        )
    return array.astype(np.int64)


def values(schedule, steps):
    """The learning rate at each step, as a NumPy array.

    Args:
        schedule: a ``keras.optimizers.schedules.LearningRateSchedule`` (or any callable from a
            step to a rate).
        steps: an int ``n`` for steps ``0 .. n-1``, or a 1-D sequence of integer steps >= 0.

    Returns:
        An array with one rate per step, in the schedule's output dtype.

    All steps go through the schedule at once as an int64 vector, inside one ``tf.function``.
    A schedule that cannot take a vector (one that branches in Python on the step, or returns a
    scalar whatever the step) is evaluated one step at a time instead.
    """
    import tensorflow as tf

    steps = _steps_array(steps)
    try:
        # Without autograph, Python control flow on the step fails while tracing (TypeError)
        # instead of becoming a tf.cond that fails on a vector at run time.
        result = np.asarray(tf.function(schedule, autograph=False)(tf.constant(steps)))
    except (TypeError, ValueError):
        result = None
    if result is None or result.shape != steps.shape:
        result = np.array([np.asarray(schedule(int(step))) for step in steps])
    return result


def plot(schedule, steps, path=None, *, title=None, figsize=(4.0, 2.5), dpi=80):
    """A figure of the schedule's curve; also written to ``path`` as a PNG when given.

    Args:
        schedule: as for :func:`values`.
        steps: as for :func:`values`.
        path: where to write the PNG, or ``None``.
        title: the figure's title; defaults to the schedule's class name.
        figsize: inches, ``(width, height)``.
        dpi: dots per inch of the PNG.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot, so nothing accumulates in a
        loop).
    """
    from matplotlib.figure import Figure

    step_array = _steps_array(steps)
    rates = values(schedule, step_array)
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(step_array, rates, linewidth=1.5)
    axes.set_title(title if title is not None else type(schedule).__name__, fontsize=10)
    axes.set_xlabel("step", fontsize=8)
    axes.set_ylabel("learning rate", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axes.yaxis.get_offset_text().set_fontsize(7)
    axes.grid(alpha=0.3)
    if step_array.size > 1:
        axes.set_xlim(step_array.min(), step_array.max())
    if path is not None:
        figure.savefig(path, format="png")
    return figure
