"""Tune the optimizer itself with KerasTuner: which optimizer, its own hyperparameters, the
learning-rate schedule, the batch size and epochs.

- :func:`sample_optimizer` inside any ``build(hp)``: an optimizer and only its own
  hyperparameters (conditional scopes), plus an optional schedule and warm-up.
- :class:`OptimizerHyperModel`: wraps ``build_model(hp)`` and also tunes the batch size, the
  epochs and the activation, compatible with ``RandomSearch``, ``BayesianOptimization``,
  ``Hyperband`` and ``GridSearch``.
- :func:`best_optimizer` and :func:`report` read the result.
- :func:`autotune`: the optimizer, its learning rate and its schedule within a budget of
  epochs: learning-rate ranges centred by a range test (:func:`finder_ranges`), then
  successive-halving brackets on KerasTuner's oracle.

See docs/tuning.md, also for distributed search and training.
"""

from tfoptim.tuning.autotune import (
    AUTOTUNE_OPTIMIZERS,
    DECAY_PEAK,
    AutotuneResult,
    BudgetHyperbandOracle,
    autotune,
    plan_brackets,
)
from tfoptim.tuning.finder import FinderRanges, finder_ranges
from tfoptim.tuning.hypermodel import OptimizerHyperModel
from tfoptim.tuning.report import Report, best_optimizer, report, trial_rows
from tfoptim.tuning.sampler import (
    DEFAULT_SCHEDULES,
    needs_total_steps,
    optimizer_from_values,
    sample_optimizer,
    schedule_names,
)
from tfoptim.tuning.space import (
    DEFAULT_OPTIMIZERS,
    FAMILY_LEARNING_RATES,
    NEEDED_ARGUMENTS,
    PRIORS,
    Prior,
    canonical_names,
    optimizer_names,
)
from tfoptim.tuning.wrappers import WRAPPERS, wrapper_names

__all__ = [
    "AutotuneResult",
    "BudgetHyperbandOracle",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SCHEDULES",
    "FAMILY_LEARNING_RATES",
    "FinderRanges",
    "NEEDED_ARGUMENTS",
    "OptimizerHyperModel",
    "PRIORS",
    "Prior",
    "Report",
    "WRAPPERS",
    "AUTOTUNE_OPTIMIZERS",
    "DECAY_PEAK",
    "autotune",
    "best_optimizer",
    "canonical_names",
    "finder_ranges",
    "needs_total_steps",
    "optimizer_from_values",
    "optimizer_names",
    "plan_brackets",
    "report",
    "sample_optimizer",
    "schedule_names",
    "trial_rows",
    "wrapper_names",
]
