"""The ``tfoptim`` command line.

Each subcommand lives next to the code it drives and exposes ``add_arguments(parser)`` and
``run(args)``; this module only wires them up, importing each lazily so ``tfoptim --help`` does
not pay for a TensorFlow import.
"""

import argparse
import importlib
import logging
import os
import sys

COMMANDS = {
    "demo": ("tfoptim.demo", "fit the seed document's linear regression with every optimizer"),
    "list": ("tfoptim.catalog", "list every optimizer with a one-line summary and its reference"),
    "lr-find": ("tfoptim.callbacks.cli", "learning-rate range test on a built-in example"),
    "schedule": ("tfoptim.schedules.cli", "plot a learning-rate schedule without writing code"),
    "bench": ("tfoptim.benchmarks.cli", "benchmarks: apply-step speed (speed), convergence to target (convergence), tuning quality (search)"),
    "tune": ("tfoptim.tuning.cli", "tune the optimizer, batch size and activation of a digits MLP"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="tfoptim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Keras on JAX without TensorFlow or KerasTuner (a GPU machine): the commands that
            # need them are left out, `bench speed` stays.
            if error.name not in ("tensorflow", "keras_tuner"):
                raise
            continue
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    # TensorFlow's start-up chatter (CUDA probing, retracing hints) is noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
