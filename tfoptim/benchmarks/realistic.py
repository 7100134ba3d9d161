"""Which optimizer reaches a target first on models people train: ``tfoptim bench convergence --suite realistic``.

The three workloads of :mod:`tfoptim.benchmarks.workloads` (``gpt``, ``resnet``, ``recsys``),
trained with ``model.fit`` as a user would (Keras's defaults: no XLA on a CPU), under the rules
of :mod:`tfoptim.benchmarks.convergence` where they carry over, in two tiers:

* **Sweep tier** (the workloads' ``"sweep"`` size: the same kinds of model, smaller): every
  tfoptim optimizer that stands alone, the Keras built-ins users reach for
  (:data:`KERAS_BUILTINS`), and the practitioner's baseline :data:`BASELINE` (Keras's
  ``AdamW`` with a linear warm-up over the first :data:`WARMUP_FRACTION` of the budget, then a
  cosine decay to zero), each at its default hyperparameters and at its default learning rate
  times each factor of :data:`SWEEP`, the same factors for everyone. Every factor runs with the
  first seed; the *tuned* factor (best final metric with that seed; ties to the factor closer
  to 1) then runs with every other seed of :data:`SEEDS` (the default too, when it is the
  tuned one).
* **Finalist tier** (the ``"full"`` size): per workload, the baseline, the best
  :data:`FINALISTS_TFOPTIM` tfoptim optimizers and the best :data:`FINALISTS_KERAS` Keras
  built-ins of the sweep tier (``keras.AdamW`` always among them when Keras built-ins are
  picked), each at its sweep-tier tuned
  factor, unscaled (the same multiple of its default rate at the larger width), with
  :data:`FINAL_SEEDS`.

**Targets.** A workload's size states its ``target`` once measured
(:class:`tfoptim.benchmarks.workloads.Size`); where it does not, the target of a tier is the
median final metric of the tuned baseline in that tier, so the baseline reaches it at the end
of its budget by construction (``target_source`` in the results says which).

**Figures.** Steps to target: the first evaluation (every ``steps / CHECKS`` steps, on the whole
validation split, at the weights the optimizer wants evaluated, see
:func:`tfoptim.callbacks.evaluation_weights`) that meets the target. Seconds to target: steps
to target times the run's median CPU seconds per training step (process time over all
threads: what the step costs, which other work on the machine inflates far less than wall-clock
time), the first interval (tracing) left out, evaluation not counted. A run that spends more
than :data:`RUN_CPU_FACTOR` times the baseline's CPU seconds training stops as a failure. Medians over seeds with the range; a run whose loss or
metric becomes non-finite is "diverged" and one that raises is "error"; both stay in every
table. The performance profile is :func:`tfoptim.benchmarks.convergence.profile` over the
three workloads, from steps.

**Memory.** The bytes of every candidate's state on the full ``gpt`` model (all of them, not
only those run), summed over the built optimizer's variables, per trainable parameter.

**Extra candidates** (:func:`extra_candidates`): named wrappers and options that are not in
the default list but that ``--optimizers`` accepts, to measure each against its base (SAM and
ASAM around AdamW, also at twice the step budget; AdaptiveGradientClipping around SGD with
momentum and AdamW; AdamW with bfloat16 moments). A candidate with a multiplied budget
(:attr:`Extra.budget`) runs that many times the tier's steps and is evaluated every that many
times the tier's interval (the same :data:`CHECKS` evaluations); its steps, steps to target
and seconds count ``model.fit`` steps (gradient evaluations) like everyone's. The workloads of
:func:`tfoptim.benchmarks.workloads.extra_workloads` (``resnet_nobn``) are likewise run by name
only.

**Sized for two CPU cores.** The full suite's cost is set by :data:`SWEEP`, :data:`SEEDS`, the
per-size ``steps`` and the finalists; what was cut to fit, and the measured cost, are in
``docs/benchmarks/realistic.md``. ``quick`` keeps every rule and shrinks everything.
"""

import dataclasses
import datetime
import functools
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tfoptim.benchmarks import convergence

BASELINE = "keras.AdamW+warmup+cosine"
#: The Keras optimizers in the suite (those this Keras has), beside tfoptim's.
KERAS_BUILTINS = ("AdamW", "Muon", "Lion", "Lamb", "Adafactor", "ScheduleFreeAdamW")
WARMUP_FRACTION = 0.1
#: Learning-rate multipliers of the sweep tier (1, the default, always runs).
SWEEP = (1.0, 3.0)
SEEDS = (0, 1, 2)
FINAL_SEEDS = (0,)
FINALISTS_TFOPTIM = 3
FINALISTS_KERAS = 2
#: Evaluations per run (plus one at step 0).
CHECKS = 10
#: A run whose training has used more than this many times the CPU seconds of the baseline's
#: first run in the same tier (and at least :data:`RUN_CPU_FLOOR`) stops and is reported as a
#: failure ("time limit"), so one rule that is pathologically slow on a workload cannot hold the
#: suite for hours; its other seeds are then not run.
RUN_CPU_FACTOR = 10.0
RUN_CPU_FLOOR = 60.0

#: ``quick``: three optimizers, one seed, short budgets; the finalist tier on the ``"quick"``
#: size (the full models' shapes on a few batches) for the baseline and the best other one;
#: the memory of the optimizers run only.
QUICK_OPTIMIZERS = (BASELINE, "Adam", "LazyAdam")
QUICK_SWEEP = (1.0, 3.0)
QUICK_SEEDS = (0,)
QUICK_FINALISTS_TFOPTIM = 1
QUICK_FINALISTS_KERAS = 0
QUICK_CHECKS = 2
#: Steps of a quick run per tier (the workloads' own ``steps`` are the full suite's).
QUICK_STEPS = {"sweep": 20, "finalist": 4}

TIERS = {"sweep": "sweep", "finalist": "full"}


def candidates():
    """``name -> Candidate``: tfoptim's standalone optimizers, :data:`KERAS_BUILTINS` and :data:`BASELINE`."""
    import keras

    from tfoptim.benchmarks.convergence import Candidate

    everything = convergence.candidates()
    found = {n: c for n, c in everything.items() if c.source == "tfoptim"}
    for name in KERAS_BUILTINS:
        if f"keras.{name}" in everything:
            found[f"keras.{name}"] = everything[f"keras.{name}"]
    adamw = keras.optimizers.AdamW

    def warmup_cosine(rate, steps):
        warmup = max(1, int(WARMUP_FRACTION * steps))
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, max(1, steps - warmup), warmup_target=rate, warmup_steps=warmup
        )
        return adamw(learning_rate=schedule)

    found[BASELINE] = Candidate(
        BASELINE, "reference",
        f"keras.optimizers.AdamW, linear warm-up over {WARMUP_FRACTION:.0%} of the budget, cosine decay to 0",
        convergence._default_rate(adamw), warmup_cosine, adamw,
    )
    return found


@dataclasses.dataclass(frozen=True)
class Extra(convergence.Candidate):
    """A candidate of :func:`extra_candidates`: ``budget`` times the tier's steps (an integer >= 1),
    each training batch fed ``repeat_batches`` times in a row."""

    budget: int = 1
    repeat_batches: int = 1


#: SAM's neighbourhood radius in :func:`extra_candidates`: its default (Foret et al.'s value).
SAM_RHO = 0.05
#: ASAM's radius: the scale-invariant neighbourhood is measured relative to the weights, and
#: Kwon et al. use 0.5 (CIFAR-10) to 1.0; 0.05 would barely move it.
ASAM_RHO = 0.5


def extra_candidates():
    """``name -> Extra``: wrappers and options measured against their base, run only by name.

    * ``SAM(AdamW)``, ``ASAM(AdamW)``: :class:`tfoptim.optimizers.SAM` around tfoptim's
      ``AdamW`` at its defaults (``rho`` :data:`SAM_RHO`; ASAM: ``adaptive=True``, ``rho``
      :data:`ASAM_RHO`). In its alternating form each ``fit`` step is one gradient
      evaluation and a descent comes every second step: at the tier's budget SAM makes half
      of AdamW's descents for about the same compute (equal steps, about equal wall-clock).
    * ``SAM(AdamW)+2x-steps``, ``ASAM(AdamW)+2x-steps``: the same at twice the budget: as many
      descents as AdamW, twice its gradient evaluations.
    * ``SAM(AdamW)+same-batch``: twice the budget with each batch fed twice in a row, so the
      ascent and the descent of a SAM step take their gradients on one batch, as the original
      SAM does (``fit``'s alternating form otherwise takes them on consecutive batches): the
      data and descents of AdamW at the tier's budget.
    * ``AdamW(moment_dtype=bfloat16)``: tfoptim's ``AdamW`` storing both moments in bfloat16
      (against ``AdamW``, float32 moments).
    * ``SGD(momentum=0.9)``: tfoptim's ``SGD`` with heavy-ball momentum 0.9 (the base of the next).
    * ``AGC(SGD(momentum=0.9))``, ``AGC(AdamW)``:
      :class:`tfoptim.optimizers.AdaptiveGradientClipping` at its defaults (``clip_factor``
      0.01, ``eps`` 1e-3) around those, every variable clipped (the classifier too: a
      candidate does not know the model; NFNets leave the classifier unclipped).

    The learning rate swept is the inner optimizer's."""
    import tfoptim.optimizers as to

    adamw_rate = convergence._default_rate(to.AdamW)
    sgd_rate = convergence._default_rate(to.SGD)

    def sam(adaptive, rho):
        return lambda rate, steps: to.SAM(to.AdamW(learning_rate=rate), rho=rho, adaptive=adaptive)

    found = {}
    for label, adaptive, rho in (("SAM", False, SAM_RHO), ("ASAM", True, ASAM_RHO)):
        described = f"tfoptim SAM(adaptive={adaptive}, rho={rho:g}) around tfoptim AdamW, alternating calls"
        found[f"{label}(AdamW)"] = Extra(f"{label}(AdamW)", "tfoptim", f"{described}, the tier's steps",
                                         adamw_rate, sam(adaptive, rho), to.SAM)
        found[f"{label}(AdamW)+2x-steps"] = Extra(
            f"{label}(AdamW)+2x-steps", "tfoptim", f"{described}, twice the tier's steps (AdamW's descents)",
            adamw_rate, sam(adaptive, rho), to.SAM, budget=2)
    found["SAM(AdamW)+same-batch"] = Extra(
        "SAM(AdamW)+same-batch", "tfoptim",
        f"tfoptim SAM(rho={SAM_RHO:g}) around tfoptim AdamW, each batch fed twice (ascent and descent on one batch)",
        adamw_rate, sam(False, SAM_RHO), to.SAM, budget=2, repeat_batches=2)
    found["AdamW(moment_dtype=bfloat16)"] = Extra(
        "AdamW(moment_dtype=bfloat16)", "tfoptim", "tfoptim AdamW, both moments stored in bfloat16",
        adamw_rate, lambda rate, steps: to.AdamW(learning_rate=rate, moment_dtype="bfloat16"), to.AdamW)
    found["SGD(momentum=0.9)"] = Extra(
        "SGD(momentum=0.9)", "tfoptim", "tfoptim SGD, momentum 0.9, constant rate",
        sgd_rate, lambda rate, steps: to.SGD(learning_rate=rate, momentum=0.9), to.SGD)
    found["AGC(SGD(momentum=0.9))"] = Extra(
        "AGC(SGD(momentum=0.9))", "tfoptim", "tfoptim AdaptiveGradientClipping (defaults) around SGD(momentum=0.9)",
        sgd_rate, lambda rate, steps: to.AdaptiveGradientClipping(to.SGD(learning_rate=rate, momentum=0.9)),
        to.AdaptiveGradientClipping)
    found["AGC(AdamW)"] = Extra(
        "AGC(AdamW)", "tfoptim", "tfoptim AdaptiveGradientClipping (defaults) around tfoptim AdamW",
        adamw_rate, lambda rate, steps: to.AdaptiveGradientClipping(to.AdamW(learning_rate=rate)),
        to.AdaptiveGradientClipping)
    return found


# ---------------------------------------------------------------------------------------------
# One run


@functools.lru_cache(maxsize=8)
def _data(workload, size, seed):
    from tfoptim.benchmarks.workloads import get_workload

    return get_workload(workload).data(size, seed)


def _metric_of(workload, model, data):
    from tfoptim.callbacks import evaluation_weights

    with evaluation_weights(model):
        return workload.evaluate(model, data)[workload.metric]


def fed(batches, repeat):
    """The dataset of ``batches`` with each batch ``repeat`` times in a row."""
    if repeat == 1:
        return batches
    import tensorflow as tf

    return batches.flat_map(lambda *batch: tf.data.Dataset.from_tensors(batch).repeat(repeat))


def train(workload, size, candidate, rate, seed, steps, every, cpu_limit=math.inf):
    """One ``model.fit`` run; returns ``(curve, seconds_per_step, cpu_seconds_per_step, error)``.

    ``curve[k]`` is the validation metric after ``k * every`` steps (NaN from the first
    interval whose loss or metric is not finite, where training stops)."""
    import keras

    data = _data(workload.name, size, seed)
    curve, times, cpu_times = [], [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            cpu_times.append(time.process_time() - self.cpu_start)
            value = _metric_of(workload, self.model, data) if math.isfinite(logs["loss"]) else math.nan
            curve.append(value)
            if not math.isfinite(value) or sum(cpu_times) > cpu_limit:
                self.model.stop_training = True

    try:
        model = workload.compile(workload.build_model(size, seed), candidate.make(rate, steps))
        curve.append(_metric_of(workload, model, data))
        batches = fed(data.train(), getattr(candidate, "repeat_batches", 1))
        model.fit(batches.repeat(), steps_per_epoch=every, epochs=steps // every, verbose=0, shuffle=False,
                  callbacks=[Record()])
    except Exception as error:  # a failure is a result: report it, do not drop it
        lines = str(error).strip().splitlines() or [""]
        return curve, None, None, f"{type(error).__name__}: {lines[-1].strip()}"[:300]
    if sum(cpu_times) > cpu_limit and len(curve) < steps // every + 1:
        return curve, None, None, (f"time limit: {sum(cpu_times):.0f} CPU seconds of training after "
                                   f"{(len(curve) - 1) * every} of {steps} steps (limit {cpu_limit:.0f})")
    curve += [math.nan] * (steps // every + 1 - len(curve))

    def per_step(seconds):
        return float(np.median(seconds[1:] if len(seconds) > 1 else seconds)) / every

    return curve, per_step(times), per_step(cpu_times), None


@dataclasses.dataclass(frozen=True)
class Problem:
    """A workload at one tier, as :mod:`convergence`'s aggregation sees a problem."""

    name: str
    goal: str
    target: float | None
    every: int

    def reached(self, curve):
        curve = np.asarray(curve, dtype=float)
        if self.target is None:
            return np.zeros(curve.shape, bool)
        return curve <= self.target if self.goal == "min" else curve >= self.target


def judge(raw, problem):
    """A :class:`convergence.Run` from a raw run record and the problem's (resolved) target."""
    if raw["error"] is not None:
        return convergence.Run(raw["optimizer"], problem.name, raw["factor"], raw["learning_rate"], raw["seed"],
                               "error", None, None, 0.0, None, [], raw["error"])
    run = convergence._judge(raw["optimizer"], problem, raw["factor"], raw["learning_rate"], raw["seed"],
                             np.asarray(raw["curve"], dtype=float), 0.0)
    steps_run = (len(raw["curve"]) - 1) * problem.every
    # CPU seconds (see the module's docstring); results written before they were recorded keep wall-clock.
    per_step = raw.get("cpu_seconds_per_step") or raw["seconds_per_step"]
    run.seconds = per_step * steps_run
    run.seconds_to_target = None if run.steps_to_target is None else per_step * run.steps_to_target
    return run


class Journal:
    """Every finished run, one JSON line each in ``path`` (``runs.jsonl`` next to the results),
    so an interrupted suite resumes where it stopped: a run is taken from the journal when its
    workload, size, budget, optimizer (:func:`tfoptim.benchmarks.convergence.fingerprint`: its
    code, TensorFlow and Keras), factor and seed are those of a line; anything else reruns."""

    def __init__(self, path, reuse):
        self.path = Path(path)
        self.found = {}
        if reuse and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by the interruption
                    continue
                self.found[record["key"]] = record["raw"]
        elif self.path.exists():
            self.path.unlink()
        self.reused = 0

    @staticmethod
    def key(workload, size, steps, every, candidate, factor, seed):
        spec = workload.sizes[size]
        return json.dumps([workload.name, size, dict(spec.model), dict(spec.data), steps, every,
                           convergence.fingerprint(candidate), float(factor), int(seed)], sort_keys=True)

    def get(self, key):
        raw = self.found.get(key)
        self.reused += raw is not None
        return raw

    def add(self, key, raw):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            # Floats as they are (repr round-trips exactly; NumPy scalars through float): a resumed
            # run must give the numbers the original run gave, to the last digit.
            f.write(json.dumps({"key": key, "raw": raw}, separators=(",", ":"), default=float) + "\n")


# ---------------------------------------------------------------------------------------------
# The suite


def _tier_budget(workload, tier, quick):
    size = "quick" if quick and tier == "finalist" else TIERS[tier]
    if quick:
        steps, checks = QUICK_STEPS[tier], QUICK_CHECKS
    else:
        steps, checks = workload.sizes[size].steps, CHECKS
    return size, steps, max(1, steps // checks)


def _rank(records, goal):
    """Tuned records, best first: reached before not, fewer steps, then better final metric."""

    def key(record):
        final = record["final"]
        quality = math.inf if final is None else (final if goal == "min" else -final)
        steps = math.inf if record["steps_to_target"] is None else record["steps_to_target"]
        return (record["status"] != "reached", steps, quality, record["optimizer"])

    return sorted(records, key=key)


def resolve_target(workload, size, raws, every, quick=False):
    """``(target, source)``: the size's stated target, else the tuned baseline's median final.
    ``quick`` (shortened budgets, where the stated target, set for the size's own budget, is out
    of reach): the baseline's."""
    stated = None if quick else workload.sizes[size].target
    if stated is not None:
        return stated, "stated"
    problem = Problem(workload.name, workload.goal, None, every)
    baseline = [judge(r, problem) for r in raws if r["optimizer"] == BASELINE]
    if not baseline:
        return None, "none (no stated target and no baseline run)"
    records = convergence.summarize(baseline, problem)
    _, tuned = convergence.pick(records, problem)
    if tuned["final"] is None:
        return None, "none (the baseline failed)"
    return tuned["final"], f"median final {workload.metric} of the tuned {BASELINE}"


def run_tier(workload, tier, chosen, factors_of, seeds, quick, progress, journal=None):
    """Every run of one tier on one workload; returns ``(problem_entry, settings, runs)``.

    ``factors_of[name]``: the factors to sweep with the first seed (the default, 1, among them).
    The tuned factor then runs with the other seeds."""
    from tqdm import tqdm

    size, steps, every = _tier_budget(workload, tier, quick)
    raws = []
    limit = [math.inf]

    def budget(candidate):
        return getattr(candidate, "budget", 1)

    def problem_of(candidate, target=None):
        return Problem(workload.name, workload.goal, target, every * budget(candidate))

    def run(candidate, factor, seed):
        rate = candidate.default_learning_rate * factor
        times = budget(candidate)
        key = journal and Journal.key(workload, size, steps * times, every * times, candidate, factor, seed)
        raw = journal and journal.get(key)
        if raw is None:
            curve, per_step, cpu_per_step, error = train(workload, size, candidate, rate, seed, steps * times,
                                                         every * times, limit[0])
            raw = dict(optimizer=candidate.name, factor=factor, learning_rate=rate, seed=seed, curve=curve,
                       seconds_per_step=per_step, cpu_seconds_per_step=cpu_per_step, error=error)
            if journal:
                journal.add(key, raw)
        raws.append(raw)
        cpu_per_step = raw["cpu_seconds_per_step"]
        if candidate.name == BASELINE and math.isinf(limit[0]) and cpu_per_step is not None:
            limit[0] = max(RUN_CPU_FLOOR, RUN_CPU_FACTOR * cpu_per_step * steps)

    # The baseline first: its first run sets the time limit of the others.
    chosen = sorted(chosen, key=lambda c: c.name != BASELINE)
    bar = tqdm(chosen, desc=f"{workload.name} {tier}", unit="optimizer", disable=not progress)
    for candidate in bar:
        for factor in factors_of[candidate.name]:
            run(candidate, factor, seeds[0])
        if len(seeds) > 1:
            # The first seed picks the tuned factor (targets are not known yet: by final metric).
            mine = [r for r in raws if r["optimizer"] == candidate.name]
            problem = problem_of(candidate)
            _, tuned = convergence.pick(convergence.summarize([judge(r, problem) for r in mine], problem), problem)
            first = next(r for r in mine if r["factor"] == tuned["factor"])
            if (first["error"] or "").startswith("time limit"):
                continue  # another seed would only spend the limit again
            for seed in seeds[1:]:
                run(candidate, tuned["factor"], seed)
    bar.close()
    target, source = resolve_target(workload, size, raws, every, quick)
    settings, runs = [], []
    for candidate in chosen:
        own = problem_of(candidate, target)
        judged = [judge(r, own) for r in raws if r["optimizer"] == candidate.name]
        records = convergence.summarize(judged, own)
        default, tuned = convergence.pick(records, own)
        for record in records:
            record["tier"] = tier
            record["default"] = record is default
            record["tuned"] = record is tuned
            if budget(candidate) != 1:
                record["budget"], record["every"] = budget(candidate), own.every
            if not (record["default"] or record["tuned"]):
                record["curve"] = []
        settings += records
        runs += [{k: v for k, v in dataclasses.asdict(r).items() if k != "curve"} for r in judged]
    spec = workload.sizes[size]
    entry = {
        "description": workload.description,
        "seeds": list(seeds),
        "metric": workload.metric,
        "goal": workload.goal,
        "size": size,
        "model": dict(spec.model),
        "data": dict(spec.data),
        "target": target,
        "target_source": source,
        "steps": steps,
        "every": every,
    }
    return entry, settings, runs


def pick_finalists(settings, workload, available, quick):
    """The finalists of ``workload`` from its sweep-tier records: the baseline, the best tfoptim
    optimizers and the best Keras built-ins (``keras.AdamW`` first among them), each with its
    tuned factor."""
    tuned = [r for r in settings if r["tuned"] and r["problem"] == workload.name]
    ranked = [r["optimizer"] for r in _rank(tuned, workload.goal)]
    n_ours = QUICK_FINALISTS_TFOPTIM if quick else FINALISTS_TFOPTIM
    n_keras = QUICK_FINALISTS_KERAS if quick else FINALISTS_KERAS
    ours = [n for n in ranked if available[n].source == "tfoptim"][:n_ours]
    keras_ = ["keras.AdamW"] if n_keras and "keras.AdamW" in available else []
    keras_ += [n for n in ranked if available[n].source == "keras" and n not in keras_][: n_keras - len(keras_)]
    chosen = [BASELINE] if BASELINE in available else []
    chosen += [n for n in ours + keras_ if n in ranked]
    factor = {r["optimizer"]: r["factor"] for r in tuned}
    return {n: factor[n] for n in dict.fromkeys(chosen) if n in factor}


def state_bytes(candidate, workload_name="gpt", size="full", model=None):
    """``(state bytes, trainable parameters)`` of ``candidate`` built on the workload's model
    (``model``: one already built, reused)."""
    from tfoptim.benchmarks.workloads import get_workload

    model = model or get_workload(workload_name).build_model(size, seed=0)
    optimizer = candidate.make(candidate.default_learning_rate, 1000)
    optimizer.build(model.trainable_variables)
    state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in optimizer.variables)
    return state, sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def memory(chosen):
    """``name -> {"state_bytes", "parameters", "bytes_per_parameter"}`` (or ``{"error"}``) on the full gpt."""
    from tfoptim.benchmarks.workloads import get_workload

    model = get_workload("gpt").build_model("full", seed=0)
    found = {}
    for candidate in chosen:
        try:
            state, parameters = state_bytes(candidate, model=model)
            found[candidate.name] = {"state_bytes": state, "parameters": parameters,
                                     "bytes_per_parameter": state / parameters}
        except Exception as error:  # reported, like any failure
            found[candidate.name] = {"error": f"{type(error).__name__}: {error}"[:300]}
    return found


def run_suite(optimizers=None, workloads=None, tiers=("sweep", "finalist"), seeds=None, sweep=None, quick=False,
              progress=True, with_memory=True, checkpoint=None, journal=None, reuse=False):
    """The realistic suite; returns the payload written to ``results.json``.

    ``journal``: a path where every finished run is recorded (:class:`Journal`); with
    ``reuse``, the runs already recorded there are taken instead of rerun."""
    from tfoptim.benchmarks.workloads import get_workload
    from tfoptim.benchmarks.workloads import workloads as all_workloads

    known = candidates()
    extras = {n: c for n, c in extra_candidates().items() if n not in known}
    names = list(optimizers) if optimizers else (
        [n for n in QUICK_OPTIMIZERS if n in known] if quick else list(known))
    unknown = [n for n in names if n not in known and n not in extras]
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {sorted(known)} or the extras {sorted(extras)}")
    known = {**known, **{n: extras[n] for n in names if n in extras}}
    for tier in tiers:
        if tier not in TIERS:
            raise ValueError(f"`tiers` must be among {list(TIERS)}. Received: {tier!r}")
    chosen = [known[n] for n in names]
    journal = Journal(journal, reuse) if journal else None
    chosen_workloads = [get_workload(w) for w in (workloads or all_workloads())]
    seeds = tuple(seeds if seeds is not None else (QUICK_SEEDS if quick else SEEDS))
    final_seeds = seeds[:1] if quick else FINAL_SEEDS
    factors = tuple(sorted({1.0, *map(float, sweep if sweep is not None else (QUICK_SWEEP if quick else SWEEP))}))
    started = time.perf_counter()
    payload = {
        "benchmark": "tfoptim bench convergence --suite realistic",
        "command": "tfoptim " + " ".join(sys.argv[1:]) if sys.argv and "tfoptim" in sys.argv[0] else None,
        "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": quick,
        "seeds": list(seeds),
        "finalist_seeds": list(final_seeds),
        "sweep_factors": list(factors),
        "machine": _machine(),
        "rules": {
            "sweep": "every factor with the first seed; the tuned factor (best final metric with that "
                     "seed, ties to the factor closer to 1) with the other seeds",
            "tuned": "the factor with the best median final metric over seeds; ties: fewer median steps to "
                     "target, then the factor closer to 1",
            "finalists": "per workload: the baseline, the best tfoptim optimizers and the best Keras built-ins "
                         "of the sweep tier (keras.AdamW always), at their sweep-tier factors",
            "target": "the size's stated target, else the tuned baseline's median final metric in the tier",
            "seconds_to_target": "steps to target x the run's median CPU seconds (process time, all threads) "
                                 "per step (tracing and evaluation left out)",
            "time_limit": f"a run stops as a failure past {RUN_CPU_FACTOR:g} x the CPU seconds of training of the "
                          f"baseline's first run in the tier (at least {RUN_CPU_FLOOR:g}); its other seeds do not run",
        },
        "optimizers": {c.name: {"source": c.source, "description": c.description,
                                "default_learning_rate": c.default_learning_rate,
                                **({"budget": c.budget} if getattr(c, "budget", 1) != 1 else {})} for c in chosen},
        "tiers": {},
    }
    for tier in tiers:
        entry = payload["tiers"].setdefault(tier, {"problems": {}, "settings": [], "runs": []})
        for workload in chosen_workloads:
            if tier == "sweep":
                tier_chosen, factors_of, tier_seeds = chosen, {c.name: factors for c in chosen}, seeds
            else:
                sweep_settings = payload["tiers"].get("sweep", {}).get("settings", [])
                finals = pick_finalists(sweep_settings, workload, known, quick) if sweep_settings else {
                    c.name: 1.0 for c in chosen}
                tier_chosen = [known[n] for n in finals]
                factors_of, tier_seeds = {n: (f,) for n, f in finals.items()}, final_seeds
            problem, settings, runs = run_tier(workload, tier, tier_chosen, factors_of, tier_seeds, quick, progress,
                                               journal)
            entry["problems"][workload.name] = problem
            entry["settings"] += settings
            entry["runs"] += runs
            if checkpoint:
                Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
                Path(checkpoint).write_text(json.dumps(convergence._jsonable(payload), separators=(",", ":")))
        entry["profile"] = _profile(entry)
    if with_memory:
        # Every candidate, not only those run (building costs little beside training), except in
        # quick mode, which stays a smoke run.
        # The extras named are measured too.
        measured = chosen if quick else known.values()
        payload["memory"] = {"workload": "gpt", "size": "full", "optimizers": memory(measured)}
    payload["seconds"] = time.perf_counter() - started
    if journal:
        payload["reused_runs"] = journal.reused
    return payload


def merge(payloads):
    """One payload from the results of runs over disjoint workloads (``--workloads`` split over
    processes, to use every core): tiers' problems, settings and runs joined, profiles
    recomputed over all the workloads. Raises ``ValueError`` where the runs' rules differ or a
    workload appears twice."""
    payloads = list(payloads)
    if not payloads:
        raise ValueError("`merge` needs at least one results payload")
    keys = ("quick", "finalist_seeds", "sweep_factors")
    first = payloads[0]
    for other in payloads[1:]:
        differing = [k for k in keys if other.get(k) != first.get(k)]
        if differing:
            raise ValueError(f"results differ in {differing}: merge runs made with the same settings")
    merged = {k: v for k, v in first.items() if k not in ("tiers", "seconds", "memory", "profile")}
    merged["command"] = " && ".join(p["command"] or "tfoptim bench convergence --suite realistic" for p in payloads)
    merged["utc"] = max(p["utc"] for p in payloads)
    # Seeds may differ between parts (each workload's entry says its own).
    merged["seeds"] = sorted({s for p in payloads for s in p["seeds"]})
    merged["optimizers"] = {k: v for p in payloads for k, v in p["optimizers"].items()}
    merged["tiers"] = {}
    for payload in payloads:
        for tier, entry in payload["tiers"].items():
            into = merged["tiers"].setdefault(tier, {"problems": {}, "settings": [], "runs": []})
            twice = set(into["problems"]) & set(entry["problems"])
            if twice:
                raise ValueError(f"workloads {sorted(twice)} appear in more than one result of the {tier} tier")
            for problem in entry["problems"].values():
                problem.setdefault("seeds", payload["seeds"])  # results written before entries held them
            into["problems"].update(entry["problems"])
            into["settings"] += entry["settings"]
            into["runs"] += entry["runs"]
    for entry in merged["tiers"].values():
        entry["profile"] = _profile(entry)
    merged["parts"] = [{"command": p["command"], "workloads": sorted({w for e in p["tiers"].values() for w in e["problems"]}),
                        "seconds": p.get("seconds")} for p in payloads]
    if all("seconds" in p for p in payloads):
        merged["seconds"] = max(p["seconds"] for p in payloads)  # the parts ran side by side
    memory = [p["memory"] for p in payloads if "memory" in p]
    if memory:
        merged["memory"] = memory[0]
    return merged


def _profile(entry):
    taus = list(np.round(np.geomspace(1, 100, 41), 4))
    names = list(dict.fromkeys(r["optimizer"] for r in entry["settings"]))
    out = {"taus": taus}
    for which in ("tuned", "default"):
        table = {n: {} for n in names}
        for r in entry["settings"]:
            if r[which]:
                table[r["optimizer"]][r["problem"]] = r["steps_to_target"]
        out[which] = convergence.profile(table, list(entry["problems"]), taus)
    return out


def _machine():
    import keras
    import tensorflow as tf

    import tfoptim

    return {"platform": platform.platform(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "tfoptim": tfoptim.__version__, "cpu_count": convergence._cpu_count(),
            "jit_compile": "auto (Keras's default: no XLA on a CPU)"}


# ---------------------------------------------------------------------------------------------
# Tables, plots, files


def _reported(entry, which):
    table = {}
    for r in entry["settings"]:
        if r[which]:
            table.setdefault(r["problem"], {})[r["optimizer"]] = r
    return table


def ranking(entry):
    """Optimizers of a tier, best first: by area under the tuned profile, then by name."""
    rows = entry["profile"]["tuned"]
    return sorted(rows, key=lambda name: (-sum(rows[name]), name))


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}g}"


def format_markdown(payload):
    machine = payload["machine"]
    out = [
        "# tfoptim bench convergence --suite realistic: results",
        "",
        f"Command: `{payload['command'] or 'tfoptim bench convergence --suite realistic'}`; "
        f"{payload['utc']}; {'quick mode; ' if payload['quick'] else ''}seeds {payload['seeds']} "
        f"(finalists {payload['finalist_seeds']}); learning-rate factors {[round(f, 4) for f in payload['sweep_factors']]}"
        f" times each default; {machine['cpu_count']} CPU cores, Python {machine['python']}, TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}, tfoptim {machine['tfoptim']}; "
        + (f"{payload['seconds'] / 60:.1f} minutes" + (
            f" ({len(payload['parts'])} processes side by side over disjoint workloads, joined with --merge)."
            if len(payload.get("parts", ())) > 1 else ".") if "seconds" in payload
           else "**partial results**: the run's checkpoint, written after each workload of each tier."),
    ]
    states = payload.get("memory", {}).get("optimizers", {})
    for tier, entry in payload["tiers"].items():
        order = ranking(entry)
        tuned, default = _reported(entry, "tuned"), _reported(entry, "default")
        out += ["", f"## {tier} tier", "", "Performance profile over the workloads (steps to target, tuned "
                "learning rate): the fraction of workloads where the optimizer is within tau of the best.", "",
                "| optimizer | solved | tau=1 | tau=2 | tau=4 | tau=10 |", "| --- | --- | --- | --- | --- | --- |"]
        taus = entry["profile"]["taus"]
        for name in order:
            solved = sum(t.get(name, {}).get("status") == "reached" for t in tuned.values())
            at = [entry["profile"]["tuned"][name][int(np.argmin(np.abs(np.array(taus) - t)))] for t in (1, 2, 4, 10)]
            out.append(f"| {name} | {solved}/{len(entry['problems'])} | " + " | ".join(f"{a:.2f}" for a in at) + " |")
        for pname, problem in entry["problems"].items():
            goal = "at most" if problem["goal"] == "min" else "at least"
            target = "none" if problem["target"] is None else f"{problem['target']:.4g}"
            out += [
                "", f"### {pname} ({tier} tier, size `{problem['size']}`)", "",
                f"Target: {problem['metric']} {goal} {target} ({problem['target_source']}); budget "
                f"{problem['steps']} steps, evaluated every {problem['every']}"
                + (f"; seeds {problem['seeds']}" if "seeds" in problem else "")
                + f"; model {problem['model']}, "
                f"data {problem['data']}.", "",
                "| optimizer | default: steps to target | default final | tuned factor (rate) | steps to target "
                "(per seed) | CPU seconds to target | final (range) | failures | state B/param (gpt) |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            rows = sorted(tuned.get(pname, {}).values(),
                          key=lambda r: (convergence._sort_steps(r), _final_key(r, problem["goal"]), r["optimizer"]))
            for t in rows:
                # A finalist runs at its tuned factor only: no default record unless that is 1.
                d = default.get(pname, {}).get(t["optimizer"])
                failures = [f"{s}: {c}" for s, c in _failures(entry, pname, t["optimizer"]).items()]
                mem = states.get(t["optimizer"], {}).get("bytes_per_parameter")
                out.append(
                    f"| {t['optimizer']} | {convergence._status(d) if d else '-'} | {_fmt(d and d['final'])} | "
                    f"x{t['factor']:.3g} "
                    f"({t['learning_rate']:.3g}) | {convergence._status(t)}{convergence._range(t['steps_to_target_per_seed'])}"
                    f" | {_fmt(t['seconds_to_target'], 3)} | {_fmt(t['final'])}{convergence._final_range(t)} | "
                    f"{'; '.join(failures) or '-'} | {_fmt(mem, 3)} |"
                )
    if states:
        out += ["", "## Optimizer state on the full gpt", "",
                "Bytes of the built optimizer's variables per trainable parameter (float32 parameters).", "",
                "| optimizer | state bytes | bytes per parameter |", "| --- | --- | --- |"]
        for name, m in sorted(states.items(), key=lambda kv: (kv[1].get("bytes_per_parameter", math.inf), kv[0])):
            if "error" in m:
                out.append(f"| {name} | **error**: {m['error']} | - |")
            else:
                out.append(f"| {name} | {m['state_bytes']:,} | {m['bytes_per_parameter']:.3f} |")
    return "\n".join(out) + "\n"


def _final_key(record, goal):
    if record["final"] is None:
        return math.inf
    return record["final"] if goal == "min" else -record["final"]


def _failures(entry, problem, optimizer):
    """``status -> count`` of the failed runs (any factor, any seed) of one optimizer on one problem."""
    counts = {}
    for run in entry["runs"]:
        if run["problem"] == problem and run["optimizer"] == optimizer and run["status"] in ("diverged", "error"):
            counts[run["status"]] = counts.get(run["status"], 0) + 1
    return counts


#: Lines per panel in the plots.
PANEL = 8


def _panels(names):
    return [names[i : i + PANEL] for i in range(0, len(names), PANEL)] or [[]]


def plot_curves(payload, workload, path):
    """Tuned median curves of ``workload``, one panel per :data:`PANEL` optimizers of a tier, in ranking order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for tier, entry in payload["tiers"].items():
        if workload not in entry["problems"]:
            continue
        rows = _reported(entry, "tuned").get(workload, {})
        order = [n for n in ranking(entry) if n in rows]
        panels += [(tier, entry["problems"][workload], rows, group) for group in _panels(order)]
    columns = min(3, len(panels))
    fig, axes = plt.subplots(math.ceil(len(panels) / columns), columns, figsize=(max(8, 5 * columns), 3.8 * math.ceil(
        len(panels) / columns)), dpi=90, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (tier, problem, rows, group) in zip(axes.flat, panels):
        for i, name in enumerate(group):
            record = rows[name]
            values = np.array([np.nan if v is None else v for v in record["curve"]], dtype=float)
            # A candidate with a multiplied budget is evaluated at its own interval.
            ax.plot(np.arange(len(values)) * record.get("every", problem["every"]), values, color=cmap(i % 10), linewidth=1.2,
                    label=f"{name} x{record['factor']:.3g}")
        if problem["target"] is not None:
            ax.axhline(problem["target"], color="black", linestyle=":", linewidth=1.0)
        ax.set_title(f"{tier} tier ({problem['size']})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(problem["metric"])
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{workload}: median over seeds, tuned learning rate (dotted: target)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_profile(payload, path):
    """The tuned performance profile of each tier, :data:`PANEL` optimizers a panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(tier, entry, group) for tier, entry in payload["tiers"].items() for group in _panels(ranking(entry))]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(8, 5 * columns), 3.8 * rows), dpi=90, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (tier, entry, group) in zip(axes.flat, panels):
        taus = entry["profile"]["taus"]
        for i, name in enumerate(group):
            ax.step(taus, entry["profile"]["tuned"][name], where="post", color=cmap(i % 10), linewidth=1.2, label=name)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{tier} tier", fontsize=9)
        ax.set_xlabel("tau (steps to target / best)")
        ax.set_ylabel("fraction of workloads")
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("performance profile, tuned learning rate (panels in ranking order)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(payload, output):
    """Writes ``results.json``, ``results.md``, ``curves_<workload>.png`` and ``profile.png``
    (of a finished run, or of a checkpoint: its tiers' profiles are then computed here)."""
    for entry in payload["tiers"].values():
        entry.setdefault("profile", _profile(entry))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(convergence._jsonable(payload), separators=(",", ":")))
    (output / "results.md").write_text(format_markdown(payload))
    workloads = dict.fromkeys(p for entry in payload["tiers"].values() for p in entry["problems"])
    for workload in workloads:
        plot_curves(payload, workload, output / f"curves_{workload}.png")
    if payload["tiers"]:
        plot_profile(payload, output / "profile.png")


def format_table(payload):
    """The terminal summary: per tier and workload, the tuned optimizers best first."""
    lines = []
    for tier, entry in payload["tiers"].items():
        for pname, problem in entry["problems"].items():
            target = "none" if problem["target"] is None else f"{problem['target']:.4g}"
            lines.append(f"{tier} tier, {pname} ({problem['metric']}, target {target}, {problem['steps']} steps)")
            rows = _rank(list(_reported(entry, "tuned").get(pname, {}).values()), problem["goal"])
            for r in rows:
                lines.append(f"  {r['optimizer'][:30]:<31}x{r['factor']:<6.3g}{convergence._cell(r):>10}"
                             f"{_fmt(r['final']):>10}")
    lines.append(f"total {payload['seconds']:.0f} s" if "seconds" in payload else "partial results")
    return "\n".join(lines)
