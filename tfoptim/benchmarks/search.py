"""Quality of search: what tuning the optimizer buys on the digits MLP, and at what cost.

Three ways to choose how a 64-64-10 MLP on scikit-learn's digits is trained, each run as a
KerasTuner search so all are scored alike (best validation accuracy over the epochs of the
best trial, the model at that epoch evaluated on a held-out test split):

- ``default``: ``Adam(1e-3)``, batch size 32 (Keras's defaults), one run;
- ``hyperresnet``: KerasTuner's ``HyperResNet``-style choice, ``adam``/``rmsprop``/``sgd`` x
  learning rate in {0.1, 0.01, 0.001}, all 9 (``GridSearch``), batch size 32;
- ``tfoptim``: :class:`tfoptim.tuning.OptimizerHyperModel`'s default space (optimizer, its
  own hyperparameters, batch size) plus a schedule choice, ``RandomSearch`` with 20 trials.

Every trial trains the same number of epochs; the compute each method used is reported as
epochs trained (and optimizer steps, which differ with the batch size). The data split is
60/20/20 (train/validation/test), stratified, the same for every method; each seed repeats the
whole comparison.
"""

import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

METHODS = ("default", "hyperresnet", "tfoptim")


def split_digits(seed=0):
    from sklearn.model_selection import train_test_split

    from tfoptim.callbacks.cli import digits_data

    x, y = digits_data()
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def mlp(activation="relu"):
    import keras

    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation=activation), keras.layers.Dense(10)]
    )


def _loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fixed_batch(build):
    """A ``HyperModel`` around ``build(hp)`` that trains with batch size 32."""
    import keras_tuner

    class FixedBatch(keras_tuner.HyperModel):
        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=32, **kwargs)

    return FixedBatch()


def _default_build(hp):
    import keras

    model = mlp()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_loss(), metrics=["accuracy"])
    return model


def _hyperresnet_build(hp):
    import keras

    # As keras_tuner.applications.HyperResNet chooses its optimizer.
    optimizer = hp.Choice("optimizer", ["adam", "rmsprop", "sgd"], default="adam")
    optimizer = keras.optimizers.get(optimizer)
    optimizer.learning_rate = hp.Choice("learning_rate", [0.1, 0.01, 0.001], default=0.01)
    model = mlp()
    model.compile(optimizer=optimizer, loss=_loss(), metrics=["accuracy"])
    return model


def _tuner(method, directory, seed, trials):
    import keras_tuner

    import tfoptim.tuning

    # KerasTuner's random oracle draws trial k from seed + k: seeds 1 and 2 would share all
    # but one trial. Spacing them keeps repeats independent.
    common = dict(objective="val_accuracy", directory=directory, project_name=method,
                  seed=1000 * seed, overwrite=True)
    if method == "default":
        return keras_tuner.GridSearch(_fixed_batch(_default_build), max_trials=1, **common)
    if method == "hyperresnet":
        return keras_tuner.GridSearch(_fixed_batch(_hyperresnet_build), max_trials=9, **common)
    hypermodel = tfoptim.tuning.OptimizerHyperModel(
        lambda hp: mlp(), loss=_loss(), metrics=["accuracy"],
        schedules=("constant", "cosine_decay", "one_cycle"),
    )
    return keras_tuner.RandomSearch(hypermodel, max_trials=trials, **common)


def _counter(totals):
    """Counts epochs and optimizer steps into ``totals``, across all trials of a search
    (KerasTuner deep-copies callbacks per trial; the dict they close over is shared)."""
    import keras

    class Counter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            totals["steps"] += 1

        def on_epoch_end(self, epoch, logs=None):
            totals["epochs"] += 1

    return Counter()


def run_method(method, seed, trials=20, epochs=20, directory=None):
    """One search; returns a dict of its results."""
    import keras

    from tfoptim.tuning import trial_rows

    # get_best_models rebuilds each model with a fresh optimizer: the saved optimizer state
    # is not needed to evaluate it, and Keras warns about every one.
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split_digits(seed)
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        tuner = _tuner(method, folder, seed, trials)
        totals = {"epochs": 0, "steps": 0}
        start = time.perf_counter()
        tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                     callbacks=[_counter(totals)], verbose=0)
        seconds = time.perf_counter() - start
        best_trial = tuner.oracle.get_best_trials(1)[0]
        model = tuner.get_best_models(1)[0]
        test_accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
        order = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
        scores = [t.score if t.score is not None else math.nan for t in order]
        best_so_far = [float(max(scores[: i + 1])) for i in range(len(scores))]
        rows = trial_rows(tuner)
        config = {k: v for k, v in best_trial.hyperparameters.values.items()}
    return {
        "method": method,
        "seed": seed,
        "trials": len(scores),
        "epochs_trained": totals["epochs"],
        "steps_trained": totals["steps"],
        "seconds": seconds,
        "best_val_accuracy": float(best_trial.score),
        "test_accuracy_of_best": test_accuracy,
        "best_so_far": best_so_far,
        "best_config": config,
        "trial_scores": [{"optimizer": r.optimizer, "learning_rate": r.learning_rate,
                          "val_accuracy": r.objective} for r in rows],
    }


def run_search_benchmark(seeds=(0, 1, 2), trials=20, epochs=20, progress=True):
    from tqdm import tqdm

    jobs = [(m, s) for s in seeds for m in METHODS]
    results = []
    bar = tqdm(jobs, desc="bench search", disable=not progress)
    for method, seed in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        results.append(run_method(method, seed, trials=trials, epochs=epochs))
    return results


def summarize(results):
    import numpy as np

    summary = {}
    for method in METHODS:
        mine = [r for r in results if r["method"] == method]
        if not mine:
            continue
        val = np.array([r["best_val_accuracy"] for r in mine])
        test = np.array([r["test_accuracy_of_best"] for r in mine])
        summary[method] = {
            "runs": len(mine),
            "best_val_accuracy_mean": float(val.mean()),
            "best_val_accuracy_min": float(val.min()),
            "best_val_accuracy_max": float(val.max()),
            "test_accuracy_mean": float(test.mean()),
            "test_accuracy_min": float(test.min()),
            "test_accuracy_max": float(test.max()),
            "epochs_trained": int(np.mean([r["epochs_trained"] for r in mine])),
            "steps_trained": int(np.mean([r["steps_trained"] for r in mine])),
            "seconds": float(np.mean([r["seconds"] for r in mine])),
        }
    return summary


LABELS = {
    "default": "Adam(1e-3), batch 32",
    "hyperresnet": "HyperResNet-style (3 optimizers x 3 rates)",
    "tfoptim": "tfoptim space, random search",
}


def format_table(summary):
    lines = [
        f"{'method':<44} {'runs':>4} {'best val acc (mean, min-max)':>30} "
        f"{'test acc (mean)':>16} {'epochs':>7} {'steps':>7}",
    ]
    for method, s in summary.items():
        val = (f"{s['best_val_accuracy_mean']:.4f} ({s['best_val_accuracy_min']:.4f}-"
               f"{s['best_val_accuracy_max']:.4f})")
        lines.append(
            f"{LABELS[method]:<44} {s['runs']:>4} {val:>30} {s['test_accuracy_mean']:>16.4f} "
            f"{s['epochs_trained']:>7} {s['steps_trained']:>7}"
        )
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, method in enumerate(METHODS):
        mine = [r for r in results if r["method"] == method]
        for j, r in enumerate(mine):
            per_trial = r["epochs_trained"] / max(1, r["trials"])
            cumulative = [per_trial * (k + 1) for k in range(len(r["best_so_far"]))]
            left.step(cumulative, r["best_so_far"], where="post", color=f"C{i}", alpha=0.8,
                      marker="o", markersize=3, label=LABELS[method] if j == 0 else None)
        right.scatter([r["epochs_trained"] for r in mine],
                      [r["test_accuracy_of_best"] for r in mine], color=f"C{i}",
                      label=LABELS[method])
    for ax in (left, right):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("epochs trained (cumulative)")
    left.set_ylabel("best validation accuracy so far")
    left.grid(alpha=0.3)
    left.legend(fontsize="small", loc="lower right")
    right.set_xlabel("epochs trained by the search")
    right.set_ylabel("test accuracy of the best trial's model")
    right.grid(alpha=0.3)
    fig.suptitle("Digits MLP: choosing how to train it")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results, machine, output):
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    with open(output / "search.json", "w") as f:
        json.dump({"machine": machine, "summary": summary, "runs": results}, f, indent=2,
                  default=lambda v: v.item() if hasattr(v, "item") else str(v))
    plot(results, output / "search.png")
    return summary


def machine_info():
    import platform

    import keras
    import keras_tuner
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": keras_tuner.__version__,
    }
