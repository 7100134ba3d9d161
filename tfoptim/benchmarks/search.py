"""Quality of search: what tuning the optimizer buys, and at what cost in epochs.

Four ways to choose how a model is trained, each run as a KerasTuner search so all are scored
alike (the best trial's best-epoch validation accuracy, and the model of that trial and epoch
evaluated on a held-out test split that no search sees):

- ``default``: ``Adam(1e-3)``, one run;
- ``grid``: KerasTuner's ``HyperResNet``-style choice, ``adam``/``rmsprop``/``sgd`` x learning
  rate in {0.1, 0.01, 0.001}, all 9 (``GridSearch``);
- ``sample_optimizer``: :func:`tfoptim.tuning.sample_optimizer`'s defaults (its optimizers,
  their learning rates, the weight decay AdamW needs, constant or cosine schedule),
  ``RandomSearch`` with as many trials as the grid;
- ``autotune``: :func:`tfoptim.tuning.autotune` with the grid's epochs as its budget, its
  finder's sweeps included.

Every run trains at batch size 32; a trial of ``default``, ``grid`` and ``sample_optimizer``
trains ``epochs`` epochs, ``autotune`` runs up to ``epochs``. The compute each method used is
reported as epochs trained. Each problem's data is split 60/20/20 (train/validation/test),
stratified, the same for every method; each seed repeats the whole comparison (split, initial
weights, tuner seed). Problems are looked up by name in :data:`PROBLEMS`: adding one there adds
it to the benchmark and to ``tfoptim autotune``.
"""

import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

METHODS = ("default", "grid", "sample_optimizer", "autotune")
GRID_SIZE = 9
BATCH_SIZE = 32


@dataclasses.dataclass(frozen=True)
class SearchProblem:
    """A problem of the search benchmark: ``split(seed)`` gives ``(train, validation, test)``
    pairs of arrays and ``model()`` a fresh, uncompiled model with 10 logits."""

    name: str
    description: str
    split: Callable
    model: Callable


def split_digits(seed=0, image=False):
    """scikit-learn's digits split 60/20/20, stratified; ``image`` shapes them 8 x 8 x 1."""
    from sklearn.model_selection import train_test_split

    from tfoptim.callbacks.cli import digits_data

    x, y = digits_data()
    if image:
        x = x.reshape(-1, 8, 8, 1)
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


def cnn():
    import keras

    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])


#: The problems by name.
PROBLEMS = {
    "digits_mlp": SearchProblem("digits_mlp", "64-64-10 MLP (ReLU) on scikit-learn's 8x8 digits",
                                split_digits, mlp),
    "digits_cnn": SearchProblem("digits_cnn", "two 3x3 convolutions (16, 32), max-pooling, "
                                "a 64-unit dense layer, on the 8x8 digits",
                                lambda seed=0: split_digits(seed, image=True), cnn),
}


def _loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fixed_batch(build):
    """A ``HyperModel`` around ``build(hp)`` that trains with the benchmark's batch size."""
    import keras_tuner

    class FixedBatch(keras_tuner.HyperModel):
        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=BATCH_SIZE, **kwargs)

    return FixedBatch()


def _build(method, problem, total_steps):
    """``build(hp)`` of ``default``, ``grid`` and ``sample_optimizer``."""
    import keras

    import tfoptim.tuning

    def build(hp):
        if method == "default":
            optimizer = keras.optimizers.Adam(1e-3)
        elif method == "grid":
            # As keras_tuner.applications.HyperResNet chooses its optimizer.
            optimizer = keras.optimizers.get(
                hp.Choice("optimizer", ["adam", "rmsprop", "sgd"], default="adam"))
            optimizer.learning_rate = hp.Choice("learning_rate", [0.1, 0.01, 0.001], default=0.01)
        else:
            optimizer = tfoptim.tuning.sample_optimizer(hp, total_steps=total_steps)
        model = problem.model()
        model.compile(optimizer=optimizer, loss=_loss(), metrics=["accuracy"])
        return model

    return build


def _tuner(method, problem, directory, seed, epochs, steps_per_epoch):
    import keras_tuner

    # KerasTuner's random oracle draws trial k from seed + k: seeds 1 and 2 would share all
    # but one trial. Spacing them keeps repeats independent.
    common = dict(objective="val_accuracy", directory=directory, project_name=method,
                  seed=1000 * seed, overwrite=True)
    hypermodel = _fixed_batch(_build(method, problem, epochs * steps_per_epoch))
    if method == "sample_optimizer":
        return keras_tuner.RandomSearch(hypermodel, max_trials=GRID_SIZE, **common)
    return keras_tuner.GridSearch(hypermodel, max_trials=1 if method == "default" else GRID_SIZE,
                                  **common)


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


def run_method(method, seed, problem="digits_mlp", epochs=10, directory=None):
    """One search of ``method`` on the problem named ``problem``; returns a dict of results."""
    import keras

    import tfoptim.tuning

    problem = PROBLEMS[problem]
    # get_best_models rebuilds each model with a fresh optimizer: the saved optimizer state
    # is not needed to evaluate it, and Keras warns about every one.
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = problem.split(seed)
    steps_per_epoch = math.ceil(len(x_train) / BATCH_SIZE)
    totals = {"epochs": 0, "steps": 0}
    finder_epochs = 0.0
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        start = time.perf_counter()
        if method == "autotune":
            def build():
                model = problem.model()
                model.compile(loss=_loss(), metrics=["accuracy"])
                return model

            result = tfoptim.tuning.autotune(
                build, x_train, y_train, validation_data=(x_val, y_val),
                budget_epochs=GRID_SIZE * epochs, max_epochs=epochs, objective="val_accuracy",
                batch_size=BATCH_SIZE, directory=folder, seed=1000 * seed,
                callbacks=[_counter(totals)], verbose=0,
            )
            tuner, finder_epochs = result.tuner, result.finder_epochs
        else:
            tuner = _tuner(method, problem, folder, seed, epochs, steps_per_epoch)
            tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                         callbacks=[_counter(totals)], verbose=0)
        seconds = time.perf_counter() - start
        best_trial = tuner.oracle.get_best_trials(1)[0]
        model = tuner.get_best_models(1)[0]
        test_accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
        order = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
        config = dict(best_trial.hyperparameters.values)
    scores = [t.score if t.score is not None else math.nan for t in order]
    spent = [t.hyperparameters.values.get("tuner/epochs", epochs) for t in order]
    return {
        "problem": problem.name,
        "method": method,
        "seed": seed,
        "trials": len(order),
        # Epochs trained, counted by a callback; autotune's finder sweeps in epochs on top.
        "epochs_trained": totals["epochs"] + finder_epochs,
        "finder_epochs": finder_epochs,
        "steps_trained": totals["steps"],
        "seconds": seconds,
        "best_val_accuracy": float(best_trial.score),
        "test_accuracy_of_best": test_accuracy,
        "best_so_far": [float(max(scores[: i + 1])) for i in range(len(scores))],
        "epochs_so_far": [finder_epochs + sum(spent[: i + 1]) for i in range(len(spent))],
        "best_config": config,
    }


def run_search_benchmark(problems=("digits_mlp", "digits_cnn"), seeds=(0, 1, 2), epochs=10,
                         methods=METHODS, progress=True):
    from tqdm import tqdm

    for name in problems:
        if name not in PROBLEMS:
            raise ValueError(f"Unknown problem {name!r}. Choose from: {', '.join(PROBLEMS)}.")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}. Choose from: {', '.join(METHODS)}.")
    jobs = [(p, s, m) for p in problems for s in seeds for m in methods]
    results = []
    bar = tqdm(jobs, desc="bench search", disable=not progress)
    for problem, seed, method in bar:
        bar.set_postfix_str(f"{problem} {method} seed {seed}")
        results.append(run_method(method, seed, problem=problem, epochs=epochs))
    return results


def summarize(results):
    """``{problem: {method: means and ranges over the seeds}}``."""
    import numpy as np

    summary = {}
    for problem in dict.fromkeys(r["problem"] for r in results):
        summary[problem] = {}
        for method in METHODS:
            mine = [r for r in results if r["problem"] == problem and r["method"] == method]
            if not mine:
                continue
            val = np.array([r["best_val_accuracy"] for r in mine])
            test = np.array([r["test_accuracy_of_best"] for r in mine])
            summary[problem][method] = {
                "runs": len(mine),
                "best_val_accuracy_mean": float(val.mean()),
                "best_val_accuracy_min": float(val.min()),
                "best_val_accuracy_max": float(val.max()),
                "test_accuracy_mean": float(test.mean()),
                "test_accuracy_min": float(test.min()),
                "test_accuracy_max": float(test.max()),
                "epochs_trained": float(np.mean([r["epochs_trained"] for r in mine])),
                "trials": float(np.mean([r["trials"] for r in mine])),
                "seconds": float(np.mean([r["seconds"] for r in mine])),
            }
    return summary


LABELS = {
    "default": "Adam(1e-3)",
    "grid": "grid {adam, rmsprop, sgd} x {0.1, 0.01, 0.001}",
    "sample_optimizer": "sample_optimizer defaults, random search",
    "autotune": "autotune (grid's epochs as budget)",
}


def verdict(summary):
    """Per problem: whether autotune reached the grid's mean best validation and test
    accuracy at no more than the grid's epochs."""
    out = {}
    for problem, methods in summary.items():
        if "autotune" in methods and "grid" in methods:
            a, g = methods["autotune"], methods["grid"]
            out[problem] = {
                "validation": a["best_val_accuracy_mean"] >= g["best_val_accuracy_mean"],
                "test": a["test_accuracy_mean"] >= g["test_accuracy_mean"],
                "epochs_within_grid": a["epochs_trained"] <= g["epochs_trained"] + 1e-9,
            }
    return out


def format_table(summary, markdown=False):
    header = ("problem", "method", "runs", "best val acc, mean (min-max)", "test acc, mean (min-max)",
              "epochs", "trials")
    rows = []
    for problem, methods in summary.items():
        for method, s in methods.items():
            rows.append((
                problem, LABELS[method], str(s["runs"]),
                f"{s['best_val_accuracy_mean']:.4f} ({s['best_val_accuracy_min']:.4f}-"
                f"{s['best_val_accuracy_max']:.4f})",
                f"{s['test_accuracy_mean']:.4f} ({s['test_accuracy_min']:.4f}-"
                f"{s['test_accuracy_max']:.4f})",
                f"{s['epochs_trained']:.1f}", f"{s['trials']:.0f}",
            ))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def plot(results, path, caption=None):
    """Per problem: best validation accuracy so far against epochs spent, and the test accuracy
    of each search's best model against the epochs it used; ``caption`` below (the command,
    the date and the versions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in results))
    fig, axes = plt.subplots(len(problems), 2, figsize=(11, 4.0 * len(problems)), squeeze=False)
    for (left, right), problem in zip(axes, problems):
        for i, method in enumerate(METHODS):
            mine = [r for r in results if r["problem"] == problem and r["method"] == method]
            for j, r in enumerate(mine):
                left.step(r["epochs_so_far"], r["best_so_far"], where="post", color=f"C{i}",
                          alpha=0.8, marker="o", markersize=3,
                          label=LABELS[method] if j == 0 else None)
            right.scatter([r["epochs_trained"] for r in mine],
                          [r["test_accuracy_of_best"] for r in mine], color=f"C{i}",
                          label=LABELS[method])
        left.set_xlabel("epochs trained (cumulative)")
        left.set_ylabel("best validation accuracy so far")
        left.set_title(problem)
        left.grid(alpha=0.3)
        left.legend(fontsize="small", loc="lower right")
        right.set_xlabel("epochs trained by the search")
        right.set_ylabel("test accuracy of the best trial's model")
        right.set_title(problem)
        right.grid(alpha=0.3)
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=7, wrap=True, va="bottom", ha="left")
        fig.tight_layout(rect=(0, 0.06 / len(problems), 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results, machine, output, command=None):
    """Writes ``search.json``, ``search.md`` and ``search.png`` to ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    command = command or "tfoptim " + " ".join(sys.argv[1:])
    date = datetime.date.today().isoformat()
    verdicts = verdict(summary)
    with open(output / "search.json", "w") as f:
        json.dump({"command": command, "date": date, "machine": machine, "summary": summary,
                   "autotune_vs_grid": verdicts, "runs": results}, f, indent=2,
                  default=lambda v: v.item() if hasattr(v, "item") else str(v))
    versions = ", ".join(f"{k} {v}" for k, v in machine.items())
    lines = [
        "# Search benchmark",
        "",
        f"`{command}`, {date}; {versions}.",
        "",
        format_table(summary, markdown=True),
        "",
        "Autotune against the grid (means over the seeds; at no more than the grid's epochs):",
        "",
    ]
    for problem, v in verdicts.items():
        lines.append(
            f"- {problem}: validation {'reached' if v['validation'] else 'not reached'}, test "
            f"{'reached' if v['test'] else 'not reached'}, epochs "
            f"{'within' if v['epochs_within_grid'] else 'over'} the grid's."
        )
    (output / "search.md").write_text("\n".join(lines) + "\n")
    plot(results, output / "search.png", caption=f"{command}; {date}; {versions}")
    return summary


def machine_info():
    import platform

    import keras
    import keras_tuner
    import tensorflow as tf

    import tfoptim

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tfoptim": tfoptim.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": keras_tuner.__version__,
    }
