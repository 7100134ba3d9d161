"""``tfoptim tune``: tune the optimizer of a small MLP on scikit-learn's digits.

The optimizer (and its own hyperparameters), the batch size and the activation are searched
with KerasTuner; one line per finished trial shows progress, and the report (table, plot of
the objective against the learning rate, best configuration as JSON) comes at the end. The
search lives in ``--output``/search: run the same command again to continue an interrupted
search (``--overwrite`` starts afresh).
"""

import math
import os

TUNERS = ("random", "bayesian", "hyperband", "grid")


def add_arguments(parser):
    parser.add_argument("--tuner", choices=TUNERS, default="random", help="default: %(default)s")
    parser.add_argument("--trials", type=int, default=10,
                        help="trials for random, bayesian and grid search (Hyperband's count "
                        "follows from --epochs); default: %(default)s")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per trial (Hyperband: the most any trial gets); "
                        "default: %(default)s")
    parser.add_argument("--optimizers", nargs="+", default=None, metavar="NAME",
                        help="optimizers to choose from (default: adam adamw momentum; "
                        "`--optimizers all`: every one)")
    parser.add_argument("--schedules", nargs="+", default=["constant"], metavar="NAME",
                        help="learning-rate schedules to choose from (default: constant)")
    parser.add_argument("--wrappers", nargs="+", default=None, metavar="NAME",
                        help="wrappers to choose from around the optimizer, 'none' for none "
                        "(e.g. none sam lookahead; default: no wrapper)")
    parser.add_argument("--output", default="tfoptim-tune", metavar="DIR",
                        help="folder for the search, trials.png, trials.json and "
                        "best_optimizer.json (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh instead of continuing the search in --output")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")


def digits_split(seed=0):
    """Digits, 75% train / 25% validation, stratified."""
    from sklearn.model_selection import train_test_split

    from tfoptim.callbacks.cli import digits_data

    x, y = digits_data()
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def digits_mlp(hp, activation="relu"):
    """The built-in task's model: 64 inputs, one hidden layer (width tuned), 10 logits."""
    import keras

    units = hp.Choice("units", [32, 64, 128], default=64)
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(units, activation=activation), keras.layers.Dense(10)]
    )


def make_tuner(kind, hypermodel, directory, trials, epochs, seed, overwrite):
    import keras_tuner

    common = dict(objective="val_accuracy", directory=directory, project_name="search",
                  seed=seed, overwrite=overwrite)
    if kind == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)
    tuner_class = {"random": keras_tuner.RandomSearch,
                   "bayesian": keras_tuner.BayesianOptimization,
                   "grid": keras_tuner.GridSearch}[kind]
    return tuner_class(hypermodel, max_trials=trials, **common)


def watch(tuner, total=None):
    """Prints one line per finished trial (and a running best) while ``tuner`` searches."""
    from tfoptim.tuning.report import trial_rows

    original = tuner.on_trial_end
    objective = tuner.oracle.objective
    done = [0]

    def on_trial_end(trial):
        original(trial)
        done[0] += 1
        values = trial.hyperparameters.values
        optimizer = values.get("optimizer", "?")
        rate = values.get(f"{optimizer}/learning_rate", math.nan)
        score = trial.score if trial.score is not None else math.nan
        best = trial_rows(tuner)[0].objective
        count = f"{done[0]}/{total}" if total else f"{done[0]}"
        print(f"trial {count:>7}  {optimizer:<12} lr={rate:<10.3g} batch={values.get('batch_size', '-'):<4}"
              f" {objective.name}={score:.4f}  best={best:.4f}  [{trial.status}]", flush=True)

    tuner.on_trial_end = on_trial_end
    return tuner


def run(args):
    import keras

    import tfoptim.tuning as tuning

    keras.utils.set_random_seed(args.seed)
    optimizers = args.optimizers or tuning.DEFAULT_OPTIMIZERS
    if list(optimizers) == ["all"]:
        optimizers = tuning.canonical_names()
    x_train, x_val, y_train, y_val = digits_split(args.seed)
    hypermodel = tuning.OptimizerHyperModel(
        digits_mlp,
        optimizers=optimizers,
        schedules=args.schedules,
        wrappers=args.wrappers,
        activation=("relu", "gelu", "tanh"),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    os.makedirs(args.output, exist_ok=True)
    tuner = make_tuner(args.tuner, hypermodel, args.output, args.trials, args.epochs, args.seed,
                       args.overwrite)
    already = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    total = None if args.tuner == "hyperband" else args.trials
    print(f"Tuning the optimizer of the digits MLP: {args.tuner} search, "
          f"{'Hyperband brackets' if total is None else f'{total} trials'}, "
          f"optimizers {', '.join(optimizers)}"
          + (f"; continuing, {already} trials already done" if already else ""), flush=True)
    fit_epochs = {} if args.tuner == "hyperband" else {"epochs": args.epochs}
    watch(tuner, total).search(x_train, y_train, validation_data=(x_val, y_val), verbose=0,
                               **fit_epochs)
    print()
    result = tuning.report(tuner, path=args.output)
    best = result.rows[0]
    print(f"Best: {best.optimizer}, learning rate {best.learning_rate:.3g}, "
          f"{result.objective} {best.objective:.4f}")
    return 0
