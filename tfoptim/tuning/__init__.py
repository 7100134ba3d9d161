"""Tune the optimizer itself with KerasTuner: which optimizer, its own hyperparameters, the
learning-rate schedule, the batch size and epochs.

- :func:`sample_optimizer` inside any ``build(hp)``: an optimizer and only its own
  hyperparameters (conditional scopes), plus an optional schedule and warm-up.
- :class:`OptimizerHyperModel`: wraps ``build_model(hp)`` and also tunes the batch size, the
  epochs and the activation, compatible with ``RandomSearch``, ``BayesianOptimization``,
  ``Hyperband`` and ``GridSearch``.
- :func:`best_optimizer` and :func:`report` read the result.

See docs/tuning.md, also for distributed search and training.
"""

from tfoptim.tuning.hypermodel import OptimizerHyperModel
from tfoptim.tuning.report import Report, best_optimizer, report, trial_rows
from tfoptim.tuning.sampler import (
    needs_total_steps,
    optimizer_from_values,
    sample_optimizer,
    schedule_names,
)
from tfoptim.tuning.space import (
    DEFAULT_OPTIMIZERS,
    FAMILY_LEARNING_RATES,
    PRIORS,
    Prior,
    canonical_names,
    optimizer_names,
)

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "FAMILY_LEARNING_RATES",
    "OptimizerHyperModel",
    "PRIORS",
    "Prior",
    "Report",
    "best_optimizer",
    "canonical_names",
    "needs_total_steps",
    "optimizer_from_values",
    "optimizer_names",
    "report",
    "sample_optimizer",
    "schedule_names",
    "trial_rows",
]
