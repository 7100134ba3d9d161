"""``tfoptim bench``: benchmarks, printed as ratios measured side by side in one run."""

import json
import os
import platform
from pathlib import Path


def add_arguments(parser):
    from tfoptim.benchmarks.search import GPT_STEPS_PER_EPOCH

    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    speed = sub.add_parser("speed", help="apply-step time of each optimizer against its Keras twin")
    speed.add_argument("--output", default="tfoptim-bench", help="folder for speed.json and speed.png")
    speed.add_argument("--quick", action="store_true", help="small workloads, for a smoke run")
    speed.add_argument("--optimizers", nargs="+", help="subset of optimizers (default: all with a twin)")
    speed.add_argument("--workloads", nargs="+",
                       help="subset of workloads: apply-step ones, and with --e2e gpt, resnet or recsys")
    speed.add_argument("--modes", nargs="+", choices=["graph", "xla"],
                       help="graph (no XLA) and/or xla; default: both on TensorFlow, xla on JAX")
    speed.add_argument("--rounds", type=int, default=7, help="alternating rounds per measurement")
    speed.add_argument("--fast-path", choices=["true", "false", "grouped"], default="true",
                       help="tfoptim's fast_path setting (default: %(default)s)")
    speed.add_argument("--no-fit", action="store_true",
                       help="skip the end-to-end model.fit figure (digits MLP and CNN)")
    speed.add_argument("--e2e", action="store_true",
                       help="also time model.fit on the gpt, resnet and recsys workloads (Adam, SGD(momentum);"
                            " LazyAdam on recsys), full size or with --quick the quick one")
    speed.add_argument("--per-step", action="store_true",
                       help="instead: time model.fit steps of the matrix-aware methods (Muon, NorMuon, SOAP,"
                            " Shampoo, PSGDKron, keras.Muon; or --optimizers: tfoptim names or keras.NAME) against"
                            " keras.AdamW on gpt, both modes in the same rounds; writes per_step.json")
    speed.add_argument("--size", choices=["full", "sweep", "quick"],
                       help="--per-step: the gpt size (default: sweep; --quick: quick)")
    speed.add_argument("--steps", type=int,
                       help="--per-step: training steps per timed epoch (default: 100 at sweep, 10 at full, all at quick)")
    search = sub.add_parser(
        "search", help="best validation and test figure found by autotune and sample_optimizer's "
        "defaults, against Adam(1e-3) and a 9-point grid, on named problems, with the epochs each used")
    search.add_argument("--output", default="tfoptim-bench",
                        help="folder for search.json, search.md and search.png")
    search.add_argument("--problems", nargs="+", default=["digits_mlp", "digits_cnn"],
                        help="digits_mlp, digits_cnn (accuracy), gpt (the workload's sweep model, "
                             "validation bits per byte, minimised) or resnet (its sweep model, "
                             "accuracy) (default: %(default)s)")
    search.add_argument("--methods", nargs="+", default=None,
                        help="subset of default, grid, sample_optimizer, autotune, and the ablations "
                        "(only when named) autotune_fixed_ranges (autotune without its range tests), "
                        "sample_optimizer_all_arguments (random search tuning every argument), "
                        "autotune_full_length (autotune without successive halving), "
                        "autotune_random_first (without the suggestions first), default_repeated "
                        "(Adam(1e-3) run 9 times), autotune_with_momentum (SGD with momentum "
                        "searched too), autotune_no_refine (without the refinement), "
                        "autotune_constant_suggestions (without the decaying suggestion) and "
                        "autotune_refine_third (the refinement a third of the rest, not half) "
                        "(default: the first four)")
    search.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: %(default)s")
    search.add_argument("--epochs", type=int, default=10,
                        help="epochs per trial, an epoch being one pass over the digits, "
                             f"{GPT_STEPS_PER_EPOCH} steps of gpt or one pass of resnet; autotune's "
                             "budget is 9 times it (default: %(default)s)")
    convergence = sub.add_parser(
        "convergence", help="steps and seconds to a target on small problems, every optimizer")
    convergence.add_argument("--output", help="folder for results.json, results.md and the plots (default: "
                                              "tfoptim-bench/convergence, or tfoptim-bench/realistic)")
    convergence.add_argument("--quick", action="store_true",
                             help="a handful of optimizers, short budgets, one seed (about two minutes)")
    convergence.add_argument("--optimizers", nargs="+", help="subset of optimizers (default: all); the "
                                                             "realistic suite also takes its extra candidates "
                                                             "by name, e.g. 'SAM(AdamW)'")
    convergence.add_argument("--problems", nargs="+", help="subset of problems (default: all)")
    convergence.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 (--quick: 0)")
    convergence.add_argument("--sweep", nargs="+", type=float, metavar="FACTOR",
                             help="learning-rate factors times each default (default: 0.1 0.3 1 3 10 30 "
                                  "100; --quick: 1 10 100); 1, the default, always runs")
    convergence.add_argument("--reuse", action="store_true",
                             help="take results from OUTPUT/results.json where nothing that decides them "
                                  "changed (optimizer source, problems, seeds, sweep): adding an optimizer, "
                                  "or resuming an interrupted run, costs only the missing runs (realistic "
                                  "suite: the runs recorded in OUTPUT/runs.jsonl)")
    convergence.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    convergence.add_argument("--suite", choices=["toy", "realistic"], default="toy",
                             help="toy: the small problems (default); realistic: model.fit on the gpt, resnet "
                                  "and recsys workloads, a sweep tier and a finalist tier (--quick: under 5 "
                                  "minutes; --problems, --reuse: toy only)")
    convergence.add_argument("--workloads", nargs="+", help="realistic suite: subset of gpt, resnet, recsys "
                                                            "(default: those three), or resnet_nobn by name")
    convergence.add_argument("--tiers", nargs="+", choices=["sweep", "finalist"],
                             help="realistic suite: the tiers to run (default: both; the finalist tier alone "
                                  "runs the given optimizers at their default rates)")
    convergence.add_argument("--merge", nargs="+", metavar="DIR",
                             help="realistic suite: join the results.json of runs over disjoint --workloads "
                                  "(run side by side to use every core) into OUTPUT; trains nothing")
    convergence.add_argument("--memory-only", action="store_true",
                             help="realistic suite: only the optimizers' state bytes on the full gpt, no training")
    convergence.add_argument("--no-memory", action="store_true",
                             help="realistic suite: leave out the optimizers' state bytes on the full gpt")


def run(args):
    if args.benchmark == "search":
        return run_search(args)
    if args.benchmark == "convergence":
        return run_convergence(args)
    from tfoptim.benchmarks import speed

    if args.per_step:
        return run_per_step(args)
    for option in ("size", "steps"):
        if getattr(args, option):
            raise SystemExit(f"--{option} belongs to --per-step")
    known = speed.twins()
    for name in args.optimizers or []:
        if name not in known:
            raise SystemExit(f"unknown optimizer {name!r}; choose from {sorted(known)}")
    apply_step, end_to_end = _split_workloads(args)
    fast_path = {"true": True, "false": False}.get(args.fast_path, args.fast_path)
    results, fits, machine, skipped = speed.run_speed(
        optimizers=args.optimizers,
        workloads=apply_step,
        modes=tuple(args.modes or ()),
        rounds=args.rounds,
        quick=args.quick,
        fit=not args.no_fit,
        fast_path=fast_path,
    )
    ends = None
    if args.e2e:
        try:
            ends = speed.run_e2e(args.optimizers, end_to_end, tuple(args.modes or ()), args.rounds, args.quick,
                                 fast_path=fast_path)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    _add_versions(machine)
    if results or skipped:
        print(speed.format_table(results, machine, skipped))
    if fits:
        print(speed.format_fit_table(fits))
    if ends is not None:
        print(speed.format_e2e_table(ends))
    speed.write(results, machine, args.output, fits, ends, skipped, command=_command(args))
    plot = f" and {Path(args.output) / 'speed.png'}" if results else ""
    print(f"wrote {Path(args.output) / 'speed.json'}{plot}")


def _command(args):
    """The command line as given to ``tfoptim``, for the results files."""
    import sys

    return getattr(args, "_command_line", None) or "tfoptim " + " ".join(sys.argv[1:])


def _add_versions(machine):
    """``machine`` with the platform, the versions that ran and the CPU count added."""
    import keras

    import tfoptim

    machine.update(platform=platform.platform(), python=platform.python_version(), keras=keras.__version__,
                   tfoptim=tfoptim.__version__, cpu_count=os.cpu_count())
    if machine.get("backend") == "tensorflow":
        import tensorflow as tf

        machine["tensorflow"] = tf.__version__
    return machine


def run_per_step(args):
    """``bench speed --per-step``: :func:`tfoptim.benchmarks.speed.measure_per_step` on gpt."""
    from tfoptim.benchmarks import speed

    for option in ("e2e", "workloads"):
        if getattr(args, option):
            raise SystemExit(f"--{option} does not go with --per-step (it times the gpt workload)")
    if args.quick and args.size:
        raise SystemExit("--quick and --size: give one")
    size = args.size or ("quick" if args.quick else "sweep")
    try:
        rows = speed.measure_per_step(args.optimizers or speed.PER_STEP_OPTIMIZERS, size=size,
                                      modes=tuple(args.modes or ()), rounds=args.rounds, steps=args.steps,
                                      progress=True)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    machine = _add_versions({"backend": speed.backend(), "device": speed.device_name()})
    print(speed.format_per_step_table(rows))
    speed.write_per_step(rows, machine, args.output, command=_command(args))
    print(f"wrote {Path(args.output) / 'per_step.json'}")


def _split_workloads(args):
    """``--workloads`` as (apply-step workloads, end-to-end workloads), None where all are meant;
    naming end-to-end workloads only (with --e2e) runs no apply-step workload."""
    from tfoptim.benchmarks import speed
    from tfoptim.benchmarks.workloads import workloads

    if not args.workloads:
        return None, None
    e2e_names = list(workloads())
    known = [*speed.WORKLOADS, *speed.QUICK_WORKLOADS, *(e2e_names if args.e2e else ())]
    for name in args.workloads:
        if name not in known:
            hint = " (add --e2e for the model.fit workloads)" if name in e2e_names else ""
            raise SystemExit(f"unknown workload {name!r}{hint}; choose from {known}")
    end_to_end = [w for w in args.workloads if w in e2e_names]
    return [w for w in args.workloads if w not in e2e_names], end_to_end or None


def run_search(args):
    from tfoptim.benchmarks import search

    try:
        results = search.run_search_benchmark(problems=args.problems, seeds=args.seeds,
                                              epochs=args.epochs,
                                              methods=args.methods or search.METHODS)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    summary = search.write(results, search.machine_info(), args.output)
    print(search.format_table(summary))
    print(f"wrote {Path(args.output) / 'search.json'}, search.md and search.png")


def run_convergence(args):
    if args.suite == "realistic":
        return run_realistic(args)
    for option in ("workloads", "tiers", "memory_only", "no_memory", "merge"):
        if getattr(args, option):
            raise SystemExit(f"--{option.replace('_', '-')} belongs to --suite realistic")
    from tfoptim.benchmarks import convergence, problems

    args.output = args.output or "tfoptim-bench/convergence"
    for name in args.problems or []:
        if name not in problems.PROBLEMS:
            raise SystemExit(f"unknown problem {name!r}; choose from {list(problems.PROBLEMS)}")
    if args.sweep is not None and min(args.sweep) <= 0:
        raise SystemExit("--sweep factors must be > 0")
    try:
        payload = convergence.run_benchmark(
            optimizers=args.optimizers, problems=args.problems, seeds=args.seeds, sweep=args.sweep,
            quick=args.quick, progress=not args.no_progress,
            reuse=Path(args.output) / "results.json" if args.reuse else None,
            checkpoint=Path(args.output) / "results.json",
        )
    except ValueError as error:
        raise SystemExit(str(error)) from None
    print(convergence.format_table(payload))
    convergence.write(payload, args.output)
    print(f"wrote {Path(args.output) / 'results.json'}, results.md, profile.png and curves_*.png")


def run_realistic(args):
    from tfoptim.benchmarks import realistic
    from tfoptim.benchmarks.workloads import extra_workloads, workloads

    if args.problems:
        raise SystemExit("--problems belongs to the toy suite; the realistic one takes --workloads")
    known = [*workloads(), *extra_workloads()]
    for name in args.workloads or []:
        if name not in known:
            raise SystemExit(f"unknown workload {name!r}; choose from {known}")
    if args.sweep is not None and min(args.sweep) <= 0:
        raise SystemExit("--sweep factors must be > 0")
    if args.memory_only and args.no_memory:
        raise SystemExit("--memory-only and --no-memory exclude each other")
    output = Path(args.output or "tfoptim-bench/realistic")
    if args.merge:
        try:
            payload = realistic.merge(json.loads((Path(d) / "results.json").read_text()) for d in args.merge)
        except (OSError, ValueError) as error:
            raise SystemExit(f"--merge: {error}") from None
        realistic.write(payload, output)
        print(realistic.format_table(payload))
        print(f"wrote {output / 'results.json'} and results.md, profile.png and curves_*.png")
        return
    try:
        payload = realistic.run_suite(
            optimizers=args.optimizers, workloads=args.workloads,
            tiers=() if args.memory_only else tuple(args.tiers or realistic.TIERS),
            seeds=args.seeds, sweep=args.sweep, quick=args.quick, progress=not args.no_progress,
            with_memory=not args.no_memory, checkpoint=output / "results.json", journal=output / "runs.jsonl",
            reuse=args.reuse,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from None
    print(realistic.format_table(payload))
    realistic.write(payload, output)
    print(f"wrote {output / 'results.json'} and results.md" + (", profile.png and curves_*.png" if payload["tiers"] else ""))
