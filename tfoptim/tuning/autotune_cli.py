"""``tfoptim autotune``: choose the optimizer, its learning rate and its schedule for a
built-in problem within a budget of epochs.

The problems are the search benchmark's (``tfoptim.benchmarks.search.PROBLEMS``: the digits
MLP and CNN, split 60/20/20, and the ``gpt`` and ``resnet`` workloads' sweep models); the
search never sees the test split, on which the best model is evaluated at the end. The search
lives in ``--output``/search: the same command again resumes it (``--overwrite`` starts
afresh).
"""

import argparse


def add_arguments(parser):
    from tfoptim.benchmarks.search import PROBLEMS

    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="digits_mlp",
                        help="default: %(default)s")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-epochs", type=int, default=None, metavar="N",
                        help="the most epochs the search trains, the range tests included "
                        "(default: 90)")
    budget.add_argument("--budget-seconds", type=float, default=None, metavar="S",
                        help="a wall-clock budget instead (needs --max-epochs)")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="E",
                        help="the run length to tune for (default: a ninth of the budget)")
    parser.add_argument("--min-epochs", type=int, default=1, metavar="E",
                        help="the shortest rung: configurations are first judged after E epochs "
                        "(--max-epochs: every one trains the whole run; default: %(default)s)")
    parser.add_argument("--objective", default="val_loss",
                        help="val_loss, loss, or the problem's metric with or without val_: "
                        "accuracy, or bits_per_byte for gpt (default: %(default)s)")
    parser.add_argument("--optimizers", nargs="+", default=None, metavar="NAME",
                        help="optimizers to choose from (default: adam adamw)")
    parser.add_argument("--schedules", nargs="+", default=None, metavar="NAME",
                        help="schedules to choose from (default: constant cosine_decay)")
    parser.add_argument("--wrappers", nargs="+", default=None, metavar="NAME",
                        help="wrappers to choose from around the optimizer, 'none' for none "
                        "(e.g. none sam lookahead; default: no wrapper)")
    refine = parser.add_mutually_exclusive_group()
    refine.add_argument("--no-refine", action="store_true",
                        help="draw the last full-length runs at random instead of around the best "
                        "configuration's learning rate")
    refine.add_argument("--refine-share", type=float, default=None, metavar="X",
                        help="the share of what the suggestions leave that goes to those runs, "
                        "in (0, 1) (default: 0.5)")
    parser.add_argument("--decay-peak", type=_decay_peak, default=None, metavar="X",
                        help="the decaying suggestion's first rate, X times the range test's "
                        "suggestion, or 'none' for constant suggestions only (default: 4)")
    parser.add_argument("--output", default="tfoptim-autotune", metavar="DIR",
                        help="folder for the search and its report (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")


def _decay_peak(text):
    """``--decay-peak``: ``"none"``, or a number (autotune checks its range)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def run(args):
    import keras
    import keras_tuner

    import tfoptim.tuning as tuning
    from tfoptim.benchmarks import search

    keras.utils.set_random_seed(args.seed)
    problem = search.PROBLEMS[args.problem]
    train, validation, test = problem.split(args.seed)
    x, y = search.fit_arguments(train)
    objective = args.objective
    if objective in (problem.metric, f"val_{problem.metric}"):
        # The problem knows its metric's direction (bits per byte: lower is better).
        objective = keras_tuner.Objective(objective, direction=problem.goal)

    budget_epochs = args.budget_epochs
    if budget_epochs is None and args.budget_seconds is None:
        budget_epochs = 90
    extra = {}
    if args.optimizers:
        extra["optimizers"] = args.optimizers
    if args.schedules:
        extra["schedules"] = args.schedules
    if args.wrappers:
        extra["wrappers"] = args.wrappers
    if args.no_refine:
        extra["refine"] = False
    if args.refine_share is not None:
        extra["refine"] = args.refine_share
    if args.decay_peak is not None:
        extra["decay_peak"] = None if args.decay_peak == "none" else args.decay_peak
    print(f"Autotuning the optimizer of {args.problem}: {problem.description}.", flush=True)
    try:
        result = tuning.autotune(
            problem.compiled, x, y, validation_data=validation, budget_epochs=budget_epochs,
            budget_seconds=args.budget_seconds, max_epochs=args.max_epochs, min_epochs=args.min_epochs,
            objective=objective, directory=args.output, project_name="search",
            overwrite=args.overwrite, seed=args.seed, batch_size=search.BATCH_SIZE, **extra,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from None
    test = result.tuner.get_best_models(1)[0].evaluate(*search.fit_arguments(test), verbose=0,
                                                       return_dict=True)
    best = result.report.rows[0]
    wrapper = result.values.get("wrapper", "none")
    wrapped = "" if wrapper == "none" else f" in {wrapper}"
    print(f"\nBest: {best.optimizer}{wrapped}, learning rate {best.learning_rate:.3g}, schedule "
          f"{result.values.get('schedule', 'constant')}, {result.epochs} epochs of "
          f"{result.steps_per_epoch} steps: {result.objective} {result.score:.4f}, test "
          f"{problem.metric} {test[problem.metric]:.4f}.\nEpochs used: {result.epochs_used:.1f} (range tests "
          f"{result.finder_epochs:.1f}).")
    return 0
