"""What a search found: the best optimizer, a table of trials, a plot and the best config."""

import dataclasses
import json
import math
import os

from tfoptim.tuning import sampler

def _best_values(tuner):
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise ValueError("The tuner has no completed trial yet: run `tuner.search` first.")
    return best[0].values


def best_optimizer(tuner, total_steps=None, name="optimizer"):
    """A fresh, unbuilt optimizer with the best trial's configuration.

    Args:
        tuner: a ``keras_tuner`` tuner whose space comes from :func:`sample_optimizer` (directly
            or through :class:`OptimizerHyperModel`).
        total_steps: the steps a schedule or warm-up spans. Default: with an
            ``OptimizerHyperModel``, the best trial's own (from the data size it was fit on,
            its batch size and epochs); needed otherwise when the configuration has one.
        name: the ``name`` given to ``sample_optimizer``.
    """
    from tfoptim.tuning.hypermodel import OptimizerHyperModel

    values = _best_values(tuner)
    hypermodel = getattr(tuner, "hypermodel", None)
    if (
        total_steps is None
        and sampler.needs_total_steps(values, name)
        and isinstance(hypermodel, OptimizerHyperModel)
    ):
        total_steps = hypermodel.total_steps(values)
    return sampler.optimizer_from_values(values, total_steps=total_steps, name=name)


@dataclasses.dataclass
class TrialRow:
    trial_id: str
    status: str
    optimizer: str
    learning_rate: float
    hyperparameters: dict
    objective: float


@dataclasses.dataclass
class Report:
    """What :func:`report` found: ``rows`` best first, the printed ``table``, the ``best``
    optimizer's Keras config and the ``files`` written."""

    objective: str
    rows: list
    table: str
    best: dict
    files: dict


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_rows(tuner, name="optimizer"):
    """One :class:`TrialRow` per trial, the best first (unfinished trials last)."""
    prefix = sampler._prefix(name)
    direction = tuner.oracle.objective.direction
    rows = []
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        optimizer = values.get(name, "?")
        own = f"{prefix}{optimizer}/"
        others = {}
        for key, value in values.items():
            if key.startswith(own):
                others[key[len(own):]] = value
            elif not key.startswith("tuner/") and key != name:
                others[key] = value
        score = trial.score if trial.score is not None else math.nan
        rows.append(
            TrialRow(trial.trial_id, trial.status, optimizer,
                     others.pop("learning_rate", math.nan), others, float(score))
        )
    sign = -1.0 if direction == "max" else 1.0
    rows.sort(key=lambda r: (math.isnan(r.objective), 0.0 if math.isnan(r.objective) else sign * r.objective))
    return rows


def format_table(rows, objective):
    header = ("trial", "status", "optimizer", "learning_rate", objective, "hyperparameters")
    body = [
        (r.trial_id, r.status, r.optimizer, _format(r.learning_rate), _format(r.objective),
         ", ".join(f"{k}={_format(v)}" for k, v in sorted(r.hyperparameters.items())))
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        cells = [str(c).ljust(w) for c, w in zip(line[:-1], widths)]
        lines.append("  ".join([*cells, str(line[-1])]).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def plot(rows, objective, path):
    """Objective against learning rate (log scale), one color per optimizer; best circled."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [r for r in rows if not math.isnan(r.objective) and not math.isnan(r.learning_rate)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, optimizer in enumerate(sorted({r.optimizer for r in finished})):
        mine = [r for r in finished if r.optimizer == optimizer]
        ax.scatter([r.learning_rate for r in mine], [r.objective for r in mine],
                   label=optimizer, color=f"C{i % 10}", s=36, alpha=0.85)
    if finished:
        best = finished[0]
        ax.scatter([best.learning_rate], [best.objective], s=180, facecolors="none",
                   edgecolors="black", linewidths=1.5, label="best")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (peak)")
    ax.set_ylabel(objective)
    ax.set_title(f"{len(finished)} trials")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(tuner, path=None, total_steps=None, name="optimizer", print_table=True):
    """Prints a table of the trials and, with ``path``, writes the results there.

    Files in the folder ``path``: ``trials.png`` (objective against learning rate, colored by
    optimizer), ``best_optimizer.json`` (the best configuration, as
    ``keras.optimizers.serialize`` writes it: ``keras.optimizers.deserialize(json.load(f))``
    rebuilds the optimizer) and ``trials.json`` (every trial's values and objective).

    Returns:
        A :class:`Report`.
    """
    import keras

    objective = tuner.oracle.objective.name
    rows = trial_rows(tuner, name)
    table = format_table(rows, objective)
    best = keras.optimizers.serialize(best_optimizer(tuner, total_steps=total_steps, name=name))
    if print_table:
        print(table)
    files = {}
    if path is not None:
        os.makedirs(path, exist_ok=True)
        files = {
            "plot": os.path.join(path, "trials.png"),
            "best": os.path.join(path, "best_optimizer.json"),
            "trials": os.path.join(path, "trials.json"),
        }
        plot(rows, objective, files["plot"])
        with open(files["best"], "w") as f:
            json.dump(best, f, indent=2, default=_json_default)
        with open(files["trials"], "w") as f:
            json.dump({"objective": objective,
                       "direction": tuner.oracle.objective.direction,
                       "trials": [dataclasses.asdict(r) for r in rows]},
                      f, indent=2, default=_json_default)
        if print_table:
            print(f"Plot: {files['plot']}\nBest configuration: {files['best']}")
    return Report(objective, rows, table, best, files)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
