import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class OneCycle(_base.Schedule):
    """The 1cycle policy, step for step as PyTorch's ``torch.optim.lr_scheduler.OneCycleLR``.

    With ``initial = max_learning_rate / div_factor`` and ``final = initial / final_div_factor``,
    the phases (``T = total_steps``, ``p = pct_start``) are, as in PyTorch::

        two phases:    initial -> max      for steps 0 .. p*T - 1
                       max     -> final    for steps p*T - 1 .. T - 1
        three_phase:   initial -> max      for steps 0 .. p*T - 1
                       max     -> initial  for steps p*T - 1 .. 2*p*T - 2
                       initial -> final    for steps 2*p*T - 2 .. T - 1

    Inside a phase from step ``a`` to ``b`` the fraction is ``x = (step - a) / (b - a)`` and the
    rate goes from ``u`` to ``v`` as ``v + (u - v) * (1 + cos(pi * x)) / 2`` (``"cos"``) or
    ``u + (v - u) * x`` (``"linear"``). ``OneCycle(...)(i)`` equals the learning rate PyTorch
    sets after ``i`` calls to ``scheduler.step()``, for every ``0 <= i < total_steps``.

    After the cycle (``step >= total_steps``) the rate stays at ``final``. PyTorch raises past
    ``total_steps`` and at ``step == total_steps`` extrapolates the last phase one step beyond
    its end, which is below ``final`` and negative with ``"linear"``; a rate that a training run
    of ``total_steps`` steps never uses, and one no run should.

    References: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using
    Large Learning Rates" (2018); PyTorch ``OneCycleLR``.

    Args:
        max_learning_rate: the peak rate, > 0.
        total_steps: length of the cycle in optimizer steps, an integer >= 2.
        pct_start: fraction of the cycle spent warming up, in (0, 1); in (0, 0.5] with
            ``three_phase``. ``pct_start * total_steps`` must exceed 1 (PyTorch divides by
            ``pct_start * total_steps - 1``).
        div_factor: ``initial = max_learning_rate / div_factor``, > 0.
        final_div_factor: ``final = initial / final_div_factor``, > 0.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        three_phase: go back down to ``initial`` before annealing to ``final`` (fastai's
            original schedule) instead of annealing from the peak.
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        anneal_strategy="cos",
        three_phase=False,
    ):
        self.max_learning_rate = _validation.check_range(
            "max_learning_rate", max_learning_rate, 0.0, low_open=True
        )
        self.total_steps = _validation.check_steps("total_steps", total_steps, 2)
        self.three_phase = _validation.check_bool("three_phase", three_phase)
        high = 0.5 if self.three_phase else 1.0
        self.pct_start = _validation.check_range(
            "pct_start", pct_start, 0.0, high, low_open=True, high_open=not self.three_phase
        )
        if self.pct_start * self.total_steps <= 1:
            raise ValueError(
                "`pct_start * total_steps` must be > 1: the warm-up ends at step "
                "pct_start * total_steps - 1, as in PyTorch's OneCycleLR. "
                f"Received: pct_start={pct_start!r}, total_steps={total_steps!r}"
            )
        self.div_factor = _validation.check_range("div_factor", div_factor, 0.0, low_open=True)
        self.final_div_factor = _validation.check_range(
            "final_div_factor", final_div_factor, 0.0, low_open=True
        )
        self.anneal_strategy = _validation.check_choice(
            "anneal_strategy", anneal_strategy, ("cos", "linear")
        )

    def _phases(self):
        """``(start_step, end_step, start_rate, end_rate)`` of each phase, in float64, with the
        same arithmetic as PyTorch, so the phase ends round the same way."""
        peak = self.max_learning_rate
        initial = peak / self.div_factor
        final = initial / self.final_div_factor
        warm_end = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if not self.three_phase:
            return [(0.0, warm_end, initial, peak), (warm_end, last, peak, final)]
        down_end = float(2 * self.pct_start * self.total_steps) - 2
        return [
            (0.0, warm_end, initial, peak),
            (warm_end, down_end, peak, initial),
            (down_end, last, initial, final),
        ]

    def __call__(self, step):
        step = _base.to_float(_base.as_step(step))
        phases = self._phases()
        values = []
        for start, end, start_rate, end_rate in phases:
            elapsed, remaining = _base.elapsed_and_remaining(step, start, end - start)
            values.append(
                _base.interpolate(
                    start_rate, end_rate, elapsed, remaining, end - start, self.anneal_strategy
                )
            )
        # PyTorch takes the first phase with ``step <= end``; the last one also holds beyond.
        rate = values[-1]
        for (_, end, _, _), value in zip(reversed(phases[:-1]), reversed(values[:-1]), strict=True):
            rate = ops.where(step <= end, value, rate)
        return rate

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal_strategy": self.anneal_strategy,
            "three_phase": self.three_phase,
        }
