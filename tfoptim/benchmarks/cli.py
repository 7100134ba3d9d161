"""``tfoptim bench``: benchmarks, printed as ratios measured side by side in one run."""

import platform
from pathlib import Path


def add_arguments(parser):
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    speed = sub.add_parser("speed", help="apply-step time of each optimizer against its Keras twin")
    speed.add_argument("--output", default="tfoptim-bench", help="folder for speed.json and speed.png")
    speed.add_argument("--quick", action="store_true", help="small workloads, for a smoke run")
    speed.add_argument("--optimizers", nargs="+", help="subset of optimizers (default: all with a twin)")
    speed.add_argument("--workloads", nargs="+", help="subset of workloads")
    speed.add_argument("--modes", nargs="+", default=["graph", "xla"], choices=["graph", "xla"])
    speed.add_argument("--rounds", type=int, default=7, help="alternating rounds per measurement")


def run(args):
    from tfoptim.benchmarks import speed

    known = speed.twins()
    for name in args.optimizers or []:
        if name not in known:
            raise SystemExit(f"unknown optimizer {name!r}; choose from {sorted(known)}")
    results, machine = speed.run_speed(
        optimizers=args.optimizers,
        workloads=args.workloads,
        modes=tuple(args.modes),
        rounds=args.rounds,
        quick=args.quick,
    )
    machine["platform"] = platform.platform()
    print(speed.format_table(results, machine))
    speed.write(results, machine, args.output)
    print(f"wrote {Path(args.output) / 'speed.json'} and {Path(args.output) / 'speed.png'}")
