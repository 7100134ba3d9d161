"""Training callbacks: learning-rate finder, convergence stopping, optimizer health, plateau
reduction that works with schedules, non-finite recovery, time stopping, a progress bar, and
the switch to evaluation weights (schedule-free, SWA, Lookahead, EMA).

Each is a ``keras.callbacks.Callback`` for ``model.fit``; they work with every Keras and tfoptim
optimizer, float or scheduled learning rates, ``LossScaleOptimizer``/``MultiOptimizer`` and
``tf.distribute`` strategies. See ``docs/callbacks.md``.
"""

from tfoptim.callbacks.convergence_stopping import ConvergenceStopping
from tfoptim.callbacks.evaluation_weights import (
    EvaluationWeights,
    assign_evaluation_weights,
    evaluation_values,
    evaluation_weights,
    update_batch_norm,
)
from tfoptim.callbacks.lr_finder import (
    LearningRateFinder,
    LearningRateFinderResult,
    find_learning_rate,
)
from tfoptim.callbacks.non_finite_recovery import NonFiniteRecovery
from tfoptim.callbacks.optimizer_monitor import OptimizerMonitor
from tfoptim.callbacks.progress_bar import ProgressBar
from tfoptim.callbacks.reduce_lr_on_plateau import ScheduleAwareReduceLROnPlateau
from tfoptim.callbacks.scaled_schedule import ScaledSchedule
from tfoptim.callbacks.time_stopping import TimeStopping

__all__ = [
    "ConvergenceStopping",
    "EvaluationWeights",
    "LearningRateFinder",
    "LearningRateFinderResult",
    "NonFiniteRecovery",
    "OptimizerMonitor",
    "ProgressBar",
    "ScaledSchedule",
    "ScheduleAwareReduceLROnPlateau",
    "TimeStopping",
    "assign_evaluation_weights",
    "evaluation_values",
    "evaluation_weights",
    "find_learning_rate",
    "update_batch_norm",
]
