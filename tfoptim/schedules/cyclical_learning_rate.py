import keras
from keras import ops

from tfoptim import _validation
from tfoptim.schedules import _base


@keras.saving.register_keras_serializable(package="tfoptim")
class CyclicalLearningRate(_base.Schedule):
    """Cyclical learning rate, step for step as PyTorch's ``torch.optim.lr_scheduler.CyclicLR``.

    Each cycle rises linearly from ``base_learning_rate`` towards ``max_learning_rate`` for
    ``step_size_up`` steps and falls back for ``step_size_down`` steps. With ``T = step_size_up
    + step_size_down``, ``cycle = 1 + floor(step / T)`` and ``t = step mod T``::

        lr = base + (max - base) * h * scale
        h  = t / step_size_up                     if t <= step_size_up
             (T - t) / step_size_down             otherwise
        scale = 1                                 "triangular"
                1 / 2 ** (cycle - 1)              "triangular2" (amplitude halves each cycle)
                gamma ** step                     "exp_range"

    ``CyclicalLearningRate(...)(i)`` equals the learning rate PyTorch sets after ``i`` calls to
    ``scheduler.step()``. With ``step_size_down=None`` (symmetric cycles) it also equals
    TensorFlow Addons' ``TriangularCyclicalLearningRate``, ``Triangular2CyclicalLearningRate``
    and ``ExponentialCyclicalLearningRate`` with ``step_size = step_size_up``.

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017).

    Args:
        base_learning_rate: the low end of each cycle, >= 0.
        max_learning_rate: the high end of the first cycle, >= ``base_learning_rate``.
        step_size_up: steps of the rising half, an integer >= 1.
        step_size_down: steps of the falling half, an integer >= 1; ``None`` for
            ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: the per-step amplitude factor of ``"exp_range"``, in (0, 1].
    """

    def __init__(
        self,
        base_learning_rate,
        max_learning_rate,
        step_size_up,
        step_size_down=None,
        mode="triangular",
        gamma=1.0,
    ):
        self.base_learning_rate = _validation.check_range("base_learning_rate", base_learning_rate, 0.0)
        self.max_learning_rate = _validation.check_range("max_learning_rate", max_learning_rate)
        if self.max_learning_rate < self.base_learning_rate:
            raise ValueError(
                "`max_learning_rate` must be >= `base_learning_rate`. "
                f"Received: max_learning_rate={max_learning_rate!r}, "
                f"base_learning_rate={base_learning_rate!r}"
            )
        self.step_size_up = _validation.check_steps("step_size_up", step_size_up, 1)
        self.step_size_down = (
            None
            if step_size_down is None
            else _validation.check_steps("step_size_down", step_size_down, 1)
        )
        self.mode = _validation.check_choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = _validation.check_range("gamma", gamma, 0.0, 1.0, low_open=True)

    def __call__(self, step):
        step = _base.as_step(step)
        up = self.step_size_up
        down = up if self.step_size_down is None else self.step_size_down
        period = up + down
        # In the step's own dtype, so the position in the cycle is exact however long the run.
        position = step % period
        rising = _base.to_float(position) / up
        falling = _base.to_float(period - position) / down
        height = ops.where(position <= up, rising, falling)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = _base.power(0.5, _base.to_float(step // period))
        else:
            scale = _base.power(self.gamma, _base.to_float(step))
        amplitude = self.max_learning_rate - self.base_learning_rate
        return self.base_learning_rate + amplitude * height * scale

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "max_learning_rate": self.max_learning_rate,
            "step_size_up": self.step_size_up,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }
