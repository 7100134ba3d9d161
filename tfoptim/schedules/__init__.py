"""Learning-rate schedules Keras lacks, each equal to its PyTorch / optax / TF Addons twin.

Every schedule is a ``keras.optimizers.schedules.LearningRateSchedule``: pass it as an
optimizer's ``learning_rate``. They are pure tensor functions of the step (int32 or int64,
inside ``tf.function`` and XLA), registered for saving under the ``tfoptim>`` prefix.
``values`` and ``plot`` show any schedule; ``tfoptim schedule NAME ...`` does the same from a
shell. See docs/schedules.md.
"""

from tfoptim.schedules.curves import plot, values
from tfoptim.schedules.cyclical_learning_rate import CyclicalLearningRate
from tfoptim.schedules.inverse_sqrt_decay import InverseSqrtDecay
from tfoptim.schedules.linear_warmup import LinearWarmup
from tfoptim.schedules.multi_step_decay import MultiStepDecay
from tfoptim.schedules.one_cycle import OneCycle
from tfoptim.schedules.sequential_schedule import SequentialSchedule
from tfoptim.schedules.step_decay import StepDecay
from tfoptim.schedules.warmup_stable_decay import WarmupStableDecay

__all__ = [
    "CyclicalLearningRate",
    "InverseSqrtDecay",
    "LinearWarmup",
    "MultiStepDecay",
    "OneCycle",
    "SequentialSchedule",
    "StepDecay",
    "WarmupStableDecay",
    "plot",
    "values",
]
