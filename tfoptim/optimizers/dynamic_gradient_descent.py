import keras

from tfoptim._validation import check_range
from tfoptim.optimizers.gradient_descent import GradientDescent


@keras.saving.register_keras_serializable(package="tfoptim")
class DynamicGradientDescent(GradientDescent):
    """Gradient descent whose step size shrinks by ``decay_rate`` after every step.

    The "dynamic gradient descent" of the text tfoptim grew from::

        alpha_t = learning_rate * decay_rate**t        (t = 0, 1, 2, ... updates applied)
        theta  <- theta - alpha_t * g

    It is :class:`GradientDescent` driven by
    ``keras.optimizers.schedules.ExponentialDecay(learning_rate, decay_steps=1, decay_rate)``,
    not a second mechanism, so it resumes exactly after ``.keras`` save/load (the schedule reads
    the optimizer's own ``iterations``). To decay a schedule of your own, give that schedule to
    :class:`GradientDescent` instead.

    Reference: Robbins & Monro, "A Stochastic Approximation Method" (1951), on decaying step
    sizes; exponential decay as in Keras's ``ExponentialDecay`` (TF1 ``exponential_decay``).

    Args:
        learning_rate: the initial step size, a float >= 0. Defaults to 0.1.
        decay_rate: factor applied after each step, in (0, 1]. Defaults to 0.99.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(self, learning_rate=0.1, decay_rate=0.99, name=None, **kwargs):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
            raise ValueError(
                "`learning_rate` of DynamicGradientDescent must be a float (the decay is its "
                "schedule); to decay a schedule, pass it to GradientDescent instead. "
                f"Received: learning_rate={learning_rate!r}"
            )
        check_range("learning_rate", learning_rate, 0.0)
        check_range("decay_rate", decay_rate, 0.0, 1.0, low_open=True)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            float(learning_rate), decay_steps=1, decay_rate=float(decay_rate)
        )
        super().__init__(learning_rate=schedule, name=name, **kwargs)
        self._decay = schedule
        self.initial_learning_rate = float(learning_rate)
        self.decay_rate = float(decay_rate)

    def get_config(self):
        config = super().get_config()
        config["learning_rate"] = self._current_initial_rate()
        return config

    def _current_initial_rate(self):
        """The float that rebuilds today's schedule.

        Callbacks that lower a scheduled rate (``ScheduleAwareReduceLROnPlateau``,
        ``NonFiniteRecovery``) wrap it as ``factor * schedule``; a constant times this decay is
        the same decay from a scaled start, so the saved config stays a float and the lowered
        rate survives ``.keras`` save/load.
        """
        schedule, factor = self._learning_rate, 1.0
        while schedule is not self._decay:
            inner, scale = getattr(schedule, "schedule", None), getattr(schedule, "factor", None)
            if inner is None or scale is None:
                raise ValueError(
                    "DynamicGradientDescent can only save its own decay, possibly scaled by a "
                    f"constant factor; its learning rate was replaced by {schedule!r}."
                )
            schedule, factor = inner, factor * float(scale)
        return self.initial_learning_rate * factor
