"""Which optimizer gets a small model to its target fastest: ``tfoptim bench convergence``.

Every optimizer of ``tfoptim.optimizers`` that stands alone (wrappers that need an inner
optimizer are left out), every such Keras built-in, and three reference settings (Keras SGD
with momentum 0.9, with and without a cosine decay, and Keras AdamW with a cosine decay) run
on each problem of :mod:`tfoptim.benchmarks.problems` under the same rules:

* **Same budget.** Every optimizer gets the problem's step budget; nothing stops early except
  a divergence (a non-finite parameter), which is reported as such.
* **Learning rates.** Each optimizer runs at its default hyperparameters, and at its default
  learning rate times each factor of a log grid (:data:`SWEEP`; learning-rate-free rules such
  as Prodigy, D-Adaptation and COCOB sweep their ``learning_rate`` multiplier the same way).
  The grid reaches two decades above the default and one below because most defaults are
  chosen for minibatch training of deep networks, where rates are smaller than these small
  problems allow; it is the same grid for every optimizer, Keras's included.
* **Tuned point.** The factor with the best median final metric over the seeds; ties go to
  the fewer median steps to target, then to the factor closer to 1 (the default).
* **Seeds.** Each setting runs with every seed (:data:`SEEDS`; the seed draws the start, the
  minibatches and the gradient noise); figures are medians over seeds, with the range. A
  problem with a fixed start and no noise (Rosenbrock) gives the same run for every seed, so it
  runs once.
* **Steps to target**: the first recorded step at which the metric meets the problem's target,
  at the problem's recording interval. A setting reaches the target when the median over seeds
  does (a run that does not, or diverges, counts as infinitely many steps).
* **Seconds to target**: the run's wall time (tracing excluded) times the fraction of its
  steps spent before the target. On a shared machine it is noisy; the performance profile is
  built from steps.
* **Evaluation weights.** The metric is taken at the weights an optimizer wants evaluated
  where it keeps them apart from the trained ones (schedule-free's averaged ``x``, through
  :func:`tfoptim.callbacks.evaluation_values`, for tfoptim's ``ScheduleFreeSGD`` and Keras's
  ``ScheduleFreeAdamW``), as a user following the authors would; the gradient is always
  taken at the trained weights.
* **Failures are results.** A run whose parameters become NaN or infinite is "diverged", an
  optimizer that raises is "error"; both stay in every table.
* **Performance profile** (Dolan & Moré, 2002): for each optimizer, the fraction of problems
  on which its median steps to target are within a factor tau of the best optimizer's.

Each problem's whole trajectory runs inside one ``tf.function`` loop, traced once per optimizer
and problem and rerun for every rate and seed with the optimizer's state restored, so the
benchmark costs little beyond the steps themselves.
"""

import dataclasses
import inspect
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tfoptim.benchmarks.problems import PROBLEMS

#: Learning-rate multipliers of the sweep (of each optimizer's default learning rate).
SWEEP = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
QUICK_SWEEP = (1.0, 10.0, 100.0)
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
#: ``--quick``'s optimizers (those present): one of each family, and Keras's twins.
QUICK_OPTIMIZERS = ("GradientDescent", "Adam", "Prodigy", "ScheduleFreeSGD", "keras.Adam", "keras.SGD(momentum=0.9)")
#: Where the profile is tabulated.
PROFILE_TAUS = (1.0, 2.0, 4.0, 10.0)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An optimizer as the benchmark runs it: ``make(learning_rate, steps)`` builds a fresh one."""

    name: str
    source: str  # "tfoptim", "keras" or "reference"
    description: str
    default_learning_rate: float
    make: object
    cls: type = None  # the optimizer class, whose source the fingerprint hashes


def _standalone(cls):
    """True for optimizer classes that can be built without arguments (not wrappers)."""
    import keras

    if not (isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)):
        return False
    parameters = list(inspect.signature(cls).parameters.values())
    required = [
        p for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return not required and "learning_rate" in inspect.signature(cls).parameters


def _default_rate(cls):
    return float(inspect.signature(cls).parameters["learning_rate"].default)


def candidates():
    """``name -> Candidate``: tfoptim's optimizers, Keras's built-ins, and the references."""
    import keras

    import tfoptim.optimizers as to
    from tfoptim.callbacks import ScaledSchedule

    found = {}
    for name in sorted(to.__all__):
        cls = getattr(to, name)
        if cls is not to.Optimizer and _standalone(cls):
            summary = (cls.__doc__ or name).strip().splitlines()[0]
            found[name] = Candidate(name, "tfoptim", summary, _default_rate(cls), _plain(cls), cls)
    for name in sorted(dir(keras.optimizers)):
        cls = getattr(keras.optimizers, name)
        if cls is not keras.optimizers.Optimizer and _standalone(cls):
            found[f"keras.{name}"] = Candidate(
                f"keras.{name}", "keras", f"keras.optimizers.{name}, defaults", _default_rate(cls), _plain(cls), cls
            )

    def cosine(cls, **kwargs):
        # The rate lives in the wrapper's factor, so a sweep changes it without re-tracing.
        return lambda rate, steps: cls(
            learning_rate=ScaledSchedule(keras.optimizers.schedules.CosineDecay(1.0, steps), rate), **kwargs
        )

    sgd = keras.optimizers.SGD
    found["keras.SGD(momentum=0.9)"] = Candidate(
        "keras.SGD(momentum=0.9)", "reference", "keras.optimizers.SGD(momentum=0.9), constant rate",
        _default_rate(sgd), lambda rate, steps: sgd(rate, momentum=0.9), sgd,
    )
    found["keras.SGD(momentum=0.9)+cosine"] = Candidate(
        "keras.SGD(momentum=0.9)+cosine", "reference",
        "keras.optimizers.SGD(momentum=0.9), CosineDecay to 0 over the budget",
        _default_rate(sgd), cosine(sgd, momentum=0.9), sgd,
    )
    found["keras.AdamW+cosine"] = Candidate(
        "keras.AdamW+cosine", "reference", "keras.optimizers.AdamW, CosineDecay to 0 over the budget",
        _default_rate(keras.optimizers.AdamW), cosine(keras.optimizers.AdamW), keras.optimizers.AdamW,
    )
    return found


def _plain(cls):
    return lambda rate, steps: cls(learning_rate=rate)


def _set_rate(optimizer, rate):
    """Sets the learning rate in place (no re-tracing); False if the optimizer cannot."""
    from tfoptim.callbacks import ScaledSchedule

    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, ScaledSchedule):
        schedule.factor = rate
        return True
    try:
        optimizer.learning_rate = rate
    except (TypeError, ValueError):
        return False
    return True


def _load_state(optimizer, fresh, rate, same_rate):
    """Copies ``fresh``'s state into ``optimizer`` and sets its rate; False if it cannot."""
    if [tuple(v.shape) for v in optimizer.variables] != [tuple(v.shape) for v in fresh.variables]:
        return False
    for variable, value in zip(optimizer.variables, fresh.variables):
        variable.assign(value)
    return same_rate or _set_rate(optimizer, rate)


def _train_function(optimizer, setup):
    """A traced loop: ``train(seed, checks, every)`` -> the metric at steps 0, every, 2 every, ...

    The metric is taken at the weights the optimizer wants evaluated where it keeps them apart
    (schedule-free's ``x``; :func:`tfoptim.callbacks.evaluation_values`), else at the trained
    ones. Stops at the first check where a parameter is not finite and records NaN from there.
    """
    import tensorflow as tf

    from tfoptim.callbacks import evaluation_values

    variables = setup.variables
    optimizer.build(variables)

    def judged():
        values = evaluation_values(optimizer, variables)
        return [v.value for v in variables] if values is None else values

    @tf.function
    def train(seed, checks, every):
        values = tf.TensorArray(tf.float32, size=checks + 1)
        values = values.write(0, tf.cast(setup.metric(judged()), tf.float32))
        check = tf.constant(0)
        finite = tf.constant(True)
        while check < checks and finite:
            for i in tf.range(every):
                with tf.GradientTape() as tape:
                    loss = setup.loss(seed, check * every + i)
                optimizer.apply(tape.gradient(loss, variables), variables)
            point = judged()
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in [*variables, *point]])
            metric = tf.cast(setup.metric(point), tf.float32)
            values = values.write(check + 1, tf.where(finite, metric, float("nan")))
            check += 1
        while check < checks:
            values = values.write(check + 1, float("nan"))
            check += 1
        return values.stack()

    return train


@dataclasses.dataclass
class Run:
    optimizer: str
    problem: str
    factor: float
    learning_rate: float
    seed: int
    status: str  # "reached", "not reached", "diverged" or "error"
    steps_to_target: int | None
    final: float | None
    seconds: float
    seconds_to_target: float | None
    curve: list
    error: str | None = None


def run_problem(candidate, problem, factors, seeds, steps):
    """Every ``(factor, seed)`` run of one optimizer on one problem; returns ``(runs, trace_s)``."""
    import tensorflow as tf

    every = problem.every
    checks = steps // every
    seeds = seeds[:1] if problem.deterministic else seeds
    setup = problem.setup()
    runs, traced, traced_rate, trace_seconds = [], None, None, 0.0
    for factor in factors:
        rate = candidate.default_learning_rate * factor
        for seed in seeds:
            try:
                setup.init(seed)
                # A fresh optimizer built at this run's starting point holds the state the run
                # starts from (some rules copy the starting weights: Prodigy, schedule-free).
                # Building is cheap; tracing is not, so its state goes into the traced one.
                fresh = candidate.make(rate, steps)
                fresh.build(setup.variables)
                if traced is None or not _load_state(traced[0], fresh, rate, rate == traced_rate):
                    start = time.perf_counter()
                    train = _train_function(fresh, setup)
                    train(tf.constant(0), tf.constant(0), tf.constant(every))  # trace only
                    trace_seconds += time.perf_counter() - start
                    traced = fresh, train
                traced_rate = rate
                optimizer, train = traced
                start = time.perf_counter()
                curve = train(tf.constant(seed), tf.constant(checks), tf.constant(every)).numpy()
                seconds = time.perf_counter() - start
            except Exception as error:  # a failure is a result: report it, do not drop it
                # TensorFlow's trace errors put the cause on their last line.
                lines = str(error).strip().splitlines() or [""]
                message = f"{type(error).__name__}: {lines[-1].strip()}"[:300]
                runs.append(Run(candidate.name, problem.name, factor, rate, seed, "error", None, None, 0.0,
                                None, [], message))
                traced = None
                continue
            runs.append(_judge(candidate.name, problem, factor, rate, seed, curve, seconds))
    return runs, trace_seconds


def _judge(name, problem, factor, rate, seed, curve, seconds):
    every = problem.every
    diverged = bool(np.isnan(curve).any())
    reached = np.flatnonzero(problem.reached(curve))
    steps = None if diverged or not reached.size else int(reached[0] * every)
    status = "diverged" if diverged else ("reached" if steps is not None else "not reached")
    ran = (int(np.argmax(np.isnan(curve))) - 1 if diverged else len(curve) - 1) * every
    return Run(
        optimizer=name,
        problem=problem.name,
        factor=factor,
        learning_rate=rate,
        seed=seed,
        status=status,
        steps_to_target=steps,
        final=None if diverged else float(curve[-1]),
        seconds=seconds,
        seconds_to_target=None if steps is None else seconds * steps / max(ran, 1),
        curve=[float(v) for v in curve],
    )


# ---------------------------------------------------------------------------------------------
# Aggregation


def _worst(goal):
    return math.inf if goal == "min" else -math.inf


def _median_metric(values, goal):
    """Median where a missing (diverged) value counts as the worst; NaN if the median is one."""
    filled = [_worst(goal) if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    median = float(np.median(filled))
    return None if math.isinf(median) else median


def _median_steps(values):
    median = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(median) else median


def summarize(runs, problem):
    """One record per ``(optimizer, factor)`` of one problem: medians and ranges over seeds."""
    by_factor = {}
    for run in runs:
        by_factor.setdefault(run.factor, []).append(run)
    records = []
    for factor, group in by_factor.items():
        statuses = [r.status for r in group]
        steps = [r.steps_to_target for r in group]
        finals = [r.final for r in group]
        median_steps = _median_steps(steps)
        if "error" in statuses:
            status = "error"
        elif 2 * statuses.count("diverged") > len(statuses):
            status = "diverged"
        else:
            status = "reached" if median_steps is not None else "not reached"
        curves = [r.curve for r in group if r.curve]
        curve = (
            [_median_metric(column, problem.goal) for column in zip(*curves)] if curves else []
        )
        finite_finals = [f for f in finals if f is not None]
        records.append(
            {
                "optimizer": group[0].optimizer,
                "problem": problem.name,
                "factor": factor,
                "learning_rate": group[0].learning_rate,
                "seeds": [r.seed for r in group],
                "status": status,
                "statuses": statuses,
                "diverged_seeds": statuses.count("diverged"),
                "steps_to_target": median_steps,
                "steps_to_target_per_seed": steps,
                "seconds_to_target": _median_steps([r.seconds_to_target for r in group]),
                "seconds": float(np.median([r.seconds for r in group])),
                "final": _median_metric(finals, problem.goal),
                "final_per_seed": finals,
                "final_range": [min(finite_finals), max(finite_finals)] if finite_finals else None,
                "errors": sorted({r.error for r in group if r.error}),
                "curve": curve,
            }
        )
    return records


def pick(records, problem):
    """``(default, tuned)`` records: factor 1 (None where it did not run), and the best by the stated rule."""

    def key(record):
        final = record["final"]
        quality = _worst(problem.goal) if final is None or record["status"] == "error" else final
        if problem.goal == "max":
            quality = -quality
        steps = math.inf if record["steps_to_target"] is None else record["steps_to_target"]
        return (quality, steps, abs(math.log(record["factor"])))

    default = next((r for r in records if r["factor"] == 1.0), None)
    return default, min(records, key=key)


def profile(table, problems, taus):
    """``optimizer -> [fraction of problems within tau of the best, for tau in taus]``.

    ``table[optimizer][problem]`` is the median steps to target (None: not reached)."""
    best = {}
    for p in problems:
        reached = [row[p] for row in table.values() if row.get(p) is not None]
        best[p] = min(reached) if reached else None
    result = {}
    for name, row in table.items():
        ratios = [
            row[p] / max(best[p], 1) if row.get(p) is not None and best[p] is not None else math.inf
            for p in problems
        ]
        result[name] = [sum(r <= tau for r in ratios) / len(problems) for tau in taus]
    return result


# ---------------------------------------------------------------------------------------------
# The whole benchmark


def fingerprint(candidate):
    """A hash of what decides an optimizer's runs: its name and description, the source of
    every class it is built from (for tfoptim's, with the shared modules they use), and the
    TensorFlow and Keras versions. ``--reuse`` reruns an optimizer whose fingerprint changed."""
    import hashlib

    import keras
    import tensorflow as tf

    parts = [candidate.name, candidate.description, tf.__version__, keras.__version__]
    if candidate.cls is not None:
        files = sorted({inspect.getsourcefile(c) for c in candidate.cls.__mro__ if c.__module__.startswith("tfoptim")})
        if files:
            folder = Path(files[0]).parent
            files += [str(folder / "_moments.py"), str(Path(__file__).parents[1] / "_validation.py")]
        parts += [Path(f).read_text() for f in files if Path(f).exists()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _problems_fingerprint():
    """A hash of the problems and of the code that runs them (not of tables and plots)."""
    import hashlib

    code = [inspect.getsource(f) for f in (_train_function, _load_state, _set_rate, run_problem, _judge)]
    text = Path(__file__).with_name("problems.py").read_text() + "".join(code)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reusable_jobs(path, seeds, factors, quick, problem_entries):
    """``(optimizer, problem) -> (settings, runs, fingerprint)`` from an earlier results.json that
    used the same seeds, factors, mode and problem definitions."""
    path = Path(path)
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if (old.get("seeds"), old.get("sweep_factors"), old.get("quick")) != (list(seeds), list(factors), quick):
        return {}
    if old.get("problems_fingerprint") != _problems_fingerprint():
        return {}
    jobs = {}
    for record in old["settings"]:
        if old["problems"].get(record["problem"]) == problem_entries.get(record["problem"]):
            key = (record["optimizer"], record["problem"])
            jobs.setdefault(key, ([], [], old["optimizers"][record["optimizer"]].get("fingerprint")))[0].append(record)
    for run in old["runs"]:
        if (run["optimizer"], run["problem"]) in jobs:
            jobs[run["optimizer"], run["problem"]][1].append(run)
    return jobs


def run_benchmark(optimizers=None, problems=None, seeds=None, sweep=None, quick=False, progress=True,
                  extra_candidates=None, reuse=None, checkpoint=None):
    """Runs the benchmark; returns the payload written to ``results.json``.

    ``extra_candidates``: more :class:`Candidate` s to run beside the named ones.
    ``reuse``: an earlier ``results.json``; an optimizer's results on a problem are taken from it
    when the seeds, factors, mode, problem definition and the optimizer's :func:`fingerprint`
    are unchanged (adding an optimizer then costs only its own runs).
    ``checkpoint``: a path where the payload so far is written after each optimizer, so an
    interrupted run can go on with ``reuse=checkpoint``.
    """
    from tqdm import tqdm

    known = candidates()
    if optimizers is None:
        optimizers = [n for n in QUICK_OPTIMIZERS if n in known] if quick else list(known)
    unknown = [n for n in optimizers if n not in known]
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {sorted(known)}")
    chosen = [known[n] for n in optimizers] + list(extra_candidates or [])
    problems = [PROBLEMS[p] for p in (problems or PROBLEMS)]
    seeds = tuple(seeds if seeds is not None else (QUICK_SEEDS if quick else SEEDS))
    factors = tuple(sorted({1.0, *map(float, sweep if sweep is not None else (QUICK_SWEEP if quick else SWEEP))}))
    problem_entries = {
        p.name: {
            "description": p.description,
            "metric": p.metric,
            "goal": p.goal,
            "target": p.target,
            "steps": p.quick_steps if quick else p.steps,
            "every": p.every,
            "deterministic": p.deterministic,
        }
        for p in problems
    }
    previous = _reusable_jobs(reuse, seeds, factors, quick, problem_entries) if reuse else {}
    fingerprints = {c.name: fingerprint(c) for c in chosen}

    started = time.perf_counter()
    settings, runs_out, trace_seconds, reused = [], [], 0.0, []
    jobs = [(c, p) for c in chosen for p in problems]
    bar = tqdm(jobs, desc="bench convergence", unit="run", disable=not progress)
    for index, (candidate, problem) in enumerate(bar):
        bar.set_postfix_str(f"{candidate.name} on {problem.name}")
        old = previous.get((candidate.name, problem.name))
        if old is not None and old[2] == fingerprints[candidate.name]:
            settings.extend(old[0])
            runs_out.extend(old[1])
            reused.append([candidate.name, problem.name])
            continue
        steps = problem.quick_steps if quick else problem.steps
        runs, traced = run_problem(candidate, problem, factors, seeds, steps)
        trace_seconds += traced
        records = summarize(runs, problem)
        default, tuned = pick(records, problem)
        for record in records:
            record["default"] = record is default
            record["tuned"] = record is tuned
            if not (record["default"] or record["tuned"]):
                record["curve"] = []  # curves are kept for the two reported settings only
        settings.extend(records)
        runs_out.extend(
            {k: v for k, v in dataclasses.asdict(r).items() if k != "curve"} for r in runs
        )
        last_of_optimizer = index + 1 == len(jobs) or jobs[index + 1][0] is not candidate
        if checkpoint and last_of_optimizer:
            partial = _payload(chosen[: chosen.index(candidate) + 1], problem_entries, seeds, factors, quick,
                               fingerprints, settings, runs_out, reused, started, trace_seconds)
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(checkpoint).write_text(json.dumps(_jsonable(partial), indent=1))
    bar.close()
    return _payload(chosen, problem_entries, seeds, factors, quick, fingerprints, settings, runs_out, reused,
                    started, trace_seconds)


def _payload(chosen, problem_entries, seeds, factors, quick, fingerprints, settings, runs_out, reused, started,
             trace_seconds):
    import keras
    import tensorflow as tf

    import tfoptim

    payload = {
        "benchmark": "tfoptim bench convergence",
        "quick": quick,
        "command": "tfoptim " + " ".join(sys.argv[1:]) if sys.argv and "tfoptim" in sys.argv[0] else None,
        "seeds": list(seeds),
        "sweep_factors": list(factors),
        "rules": {
            "tuned": "the factor with the best median final metric over seeds; ties: fewer median "
                     "steps to target, then the factor closer to 1",
            "reached": "median over seeds of steps to target is finite (a seed that does not reach "
                       "the target or diverges counts as infinitely many steps)",
            "seconds_to_target": "run wall time (tracing excluded) x steps to target / steps run",
            "profile": "fraction of problems where the median steps to target are within tau times "
                       "the best optimizer's (same setting: tuned or default)",
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tfoptim": tfoptim.__version__,
            "cpu_count": _cpu_count(),
        },
        "seconds": {"total": time.perf_counter() - started, "tracing": trace_seconds},
        "problems_fingerprint": _problems_fingerprint(),
        "problems": problem_entries,
        "reused": reused,
        "optimizers": {
            c.name: {"source": c.source, "description": c.description,
                     "default_learning_rate": c.default_learning_rate, "fingerprint": fingerprints[c.name]}
            for c in chosen
        },
        "settings": settings,
        "runs": runs_out,
    }
    payload["profile"] = {"taus": list(np.round(np.geomspace(1, 100, 41), 4))}
    for which in ("tuned", "default"):
        table = steps_table(payload, which)
        payload["profile"][which] = profile(table, list(payload["problems"]), payload["profile"]["taus"])
    return payload


def _cpu_count():
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def steps_table(payload, which):
    """``optimizer -> problem -> median steps to target`` of the ``which`` setting."""
    table = {name: {} for name in payload["optimizers"]}
    for record in payload["settings"]:
        if record[which]:
            table[record["optimizer"]][record["problem"]] = record["steps_to_target"]
    return table


def reported(payload, which):
    """``optimizer -> problem -> record`` of the ``which`` setting ("tuned" or "default")."""
    table = {name: {} for name in payload["optimizers"]}
    for record in payload["settings"]:
        if record[which]:
            table[record["optimizer"]][record["problem"]] = record
    return table


def ranking(payload, which="tuned"):
    """Optimizers, best first: by area under the profile, then by problems solved."""
    rows = payload["profile"][which]
    return sorted(rows, key=lambda name: (-sum(rows[name]), name))


def _cell(record):
    if record is None:
        return "-"
    if record["status"] == "reached":
        return f"{record['steps_to_target']:g}"
    return {"not reached": "no", "diverged": "DIVERGED", "error": "ERROR"}[record["status"]]


def _profile_at(payload, which, name, tau):
    taus = payload["profile"]["taus"]
    return payload["profile"][which][name][int(np.argmin(np.abs(np.array(taus) - tau)))]


def format_table(payload, which="tuned"):
    """The terminal table: median steps to target per problem (tuned setting by default)."""
    problems = list(payload["problems"])
    table = reported(payload, which)
    width = max(10, *(len(p) for p in problems)) + 1
    lines = [
        f"median steps to target, {which} learning rate ('no': not reached in the budget); "
        f"seeds {payload['seeds']}",
        f"{'optimizer':<32}" + "".join(f"{p[:width - 1]:>{width}}" for p in problems) + f"{'solved':>8}{'rho(2)':>8}",
    ]
    for name in ranking(payload, which):
        row = table[name]
        solved = sum(r["status"] == "reached" for r in row.values())
        lines.append(
            f"{name[:31]:<32}" + "".join(f"{_cell(row.get(p)):>{width}}" for p in problems)
            + f"{solved:>5}/{len(problems):<2}{_profile_at(payload, which, name, 2.0):>8.2f}"
        )
    lines.append(f"total {payload['seconds']['total']:.0f} s (tracing {payload['seconds']['tracing']:.0f} s)")
    return "\n".join(lines)


def _fmt(value, digits=4):
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def format_markdown(payload):
    problems = payload["problems"]
    tuned, default = reported(payload, "tuned"), reported(payload, "default")
    order = ranking(payload, "tuned")
    out = [
        "# tfoptim bench convergence: results",
        "",
        f"Seeds {payload['seeds']}; learning-rate factors {payload['sweep_factors']} (times each "
        f"optimizer's default); {'quick mode; ' if payload['quick'] else ''}"
        f"{payload['machine']['cpu_count']} CPU cores, TensorFlow {payload['machine']['tensorflow']}, "
        f"Keras {payload['machine']['keras']}; {payload['seconds']['total'] / 60:.1f} minutes"
        + (f" ({len(payload['reused'])} optimizer-problem results reused from an earlier run)."
           if payload.get("reused") else "."),
        "",
        "## Performance profile (steps to target)",
        "",
        "Fraction of the problems on which the optimizer's median steps to target are within a "
        "factor tau of the best optimizer's; `solved`: problems where it reaches the target.",
        "",
        "| optimizer | solved (tuned) | tau=1 | tau=2 | tau=4 | tau=10 | solved (default) | default tau=2 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    n = len(problems)
    for name in order:
        solved_t = sum(r["status"] == "reached" for r in tuned[name].values())
        solved_d = sum(r["status"] == "reached" for r in default[name].values())
        taus = " | ".join(f"{_profile_at(payload, 'tuned', name, t):.2f}" for t in PROFILE_TAUS)
        out.append(
            f"| {name} | {solved_t}/{n} | {taus} | {solved_d}/{n} | "
            f"{_profile_at(payload, 'default', name, 2.0):.2f} |"
        )
    for pname, problem in problems.items():
        goal = "at most" if problem["goal"] == "min" else "at least"
        out += [
            "",
            f"## {pname}",
            "",
            f"{problem['description']}. Target: {problem['metric']} {goal} {problem['target']:g}; "
            f"budget {problem['steps']} steps, metric recorded every {problem['every']}"
            + ("; deterministic (one seed)." if problem["deterministic"] else "."),
            "",
            "| optimizer | default: steps to target | final | tuned: learning rate | steps to target "
            "(range) | seconds to target | final (range) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = [(name, tuned[name].get(pname), default[name].get(pname)) for name in order]
        rows.sort(key=lambda row: (_sort_steps(row[1]), row[0]))
        for name, t, d in rows:
            if t is None:
                continue
            out.append(
                f"| {name} | {_status(d)} | {_fmt(d['final'])} | {t['learning_rate']:.3g} (x{t['factor']:g}) | "
                f"{_status(t)}{_range(t['steps_to_target_per_seed'])} | {_fmt(t['seconds_to_target'], 3)} | "
                f"{_fmt(t['final'])}{_final_range(t)} |"
            )
    return "\n".join(out) + "\n"


def _sort_steps(record):
    if record is None or record["steps_to_target"] is None:
        return math.inf
    return record["steps_to_target"]


def _status(record):
    if record["status"] == "reached":
        text = f"{record['steps_to_target']:g}"
    else:
        text = {"not reached": "not reached", "diverged": "**diverged**", "error": "**error**"}[record["status"]]
    if record["diverged_seeds"] and record["status"] != "diverged":
        text += f" ({record['diverged_seeds']} seed(s) diverged)"
    return text


def _range(steps):
    if len(steps) < 2:
        return ""
    shown = ["-" if s is None else f"{s:g}" for s in steps]
    return f" ({', '.join(shown)})"


def _final_range(record):
    if len(record["seeds"]) < 2 or record["final_range"] is None:
        return ""
    lo, hi = record["final_range"]
    return f" ({lo:.4g}-{hi:.4g})"


# ---------------------------------------------------------------------------------------------
# Plots and files


_STYLES = ("-", "--", ":")


def plot_curves(payload, problem, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = payload["problems"][problem]
    order = ranking(payload, "tuned")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=100, sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, which in zip(axes, ("default", "tuned")):
        table = reported(payload, which)
        for i, name in enumerate(order):
            record = table[name].get(problem)
            if record is None or not record["curve"]:
                continue
            values = np.array([np.nan if v is None else v for v in record["curve"]], dtype=float)
            steps = np.arange(len(values)) * info["every"]
            label = name if which == "default" else f"{name} x{record['factor']:g}"
            ax.plot(steps, values, _STYLES[i // 20 % 3], color=cmap(i % 20), linewidth=1.0, label=label)
        ax.axhline(info["target"], color="black", linestyle=":", linewidth=1.0)
        if info["goal"] == "min":
            ax.set_yscale("log")
        else:
            ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("step")
        ax.set_title(f"{which} learning rate")
        ax.legend(fontsize=5, ncol=2, loc="best")
    axes[0].set_ylabel(f"{info['metric']} (median over seeds)")
    fig.suptitle(f"{problem}: target {info['metric']} {'<=' if info['goal'] == 'min' else '>='} {info['target']:g}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_profile(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = payload["profile"]["taus"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=100, sharey=True)
    cmap = plt.get_cmap("tab20")
    # One color and style per optimizer in both panels, in the order of the tuned ranking.
    for ax, which in zip(axes, ("default", "tuned")):
        for i, name in enumerate(ranking(payload, "tuned")):
            ax.step(taus, payload["profile"][which][name], where="post", color=cmap(i % 20),
                    linestyle=_STYLES[i // 20 % 3], linewidth=1.0, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("tau (steps to target / best optimizer's)")
        ax.set_title(f"{which} learning rate")
        ax.legend(fontsize=5, ncol=2, loc="lower right")
    axes[0].set_ylabel("fraction of problems")
    axes[0].set_ylim(0, 1.02)
    fig.suptitle("performance profile")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _jsonable(value):
    if isinstance(value, float):
        # Six significant digits: the file stays small, and no figure is finer than that.
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def write(payload, output):
    """Writes ``results.json``, ``results.md``, ``curves_<problem>.png`` and ``profile.png``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(_jsonable(payload), separators=(",", ":")))
    (output / "results.md").write_text(format_markdown(payload))
    for problem in payload["problems"]:
        plot_curves(payload, problem, output / f"curves_{problem}.png")
    plot_profile(payload, output / "profile.png")
