"""The ``tfoptim`` command line.

Each subcommand lives next to the code it drives and exposes ``add_arguments(parser)`` and
``run(args)``; this module only wires them up. Only the module of the command being run is
imported, so ``tfoptim --help`` and ``tfoptim --version`` answer without importing TensorFlow.
"""

import argparse
import importlib
import logging
import os
import sys

from tfoptim import __version__

DESCRIPTION = (
    "Optimizers, learning-rate schedules, training callbacks and optimizer tuning for Keras 3 on TensorFlow 2."
)

COMMANDS = {
    "demo": ("tfoptim.demo", "fit a small linear regression (y = 2x + 1 + noise) with every optimizer"),
    "list": ("tfoptim.catalog", "list every optimizer with a one-line summary and its reference"),
    "lr-find": ("tfoptim.callbacks.cli", "learning-rate range test on a built-in example"),
    "schedule": ("tfoptim.schedules.cli", "plot a learning-rate schedule without writing code"),
    "bench": ("tfoptim.benchmarks.cli", "benchmarks: apply-step speed (speed), convergence to target (convergence), tuning quality (search)"),
    "tune": ("tfoptim.tuning.cli", "tune the optimizer, batch size and activation of a digits MLP"),
    "autotune": ("tfoptim.tuning.autotune_cli", "choose optimizer, learning rate and schedule for a built-in problem within a budget"),
}


def build_parser(command=None):
    """The parser, with the arguments of ``command`` (a key of ``COMMANDS``) filled in.

    The other commands are listed with their help line only: their modules are not imported.
    """
    parser = argparse.ArgumentParser(
        prog="tfoptim", description=DESCRIPTION, epilog="`tfoptim COMMAND --help` shows a command's arguments."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name != command:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Keras on JAX without TensorFlow or KerasTuner (a GPU machine): `bench speed` runs
            # there, the commands that need them cannot.
            if error.name not in ("tensorflow", "keras_tuner"):
                raise
            parser.error(f"`tfoptim {name}` needs {error.name}, which is not installed")
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top-level options take no value, so the first word that is not an option names the
    # command (or is an unknown word, which the parser then rejects).
    command = next((word for word in argv if not word.startswith("-")), None)
    # TensorFlow's start-up chatter (CUDA probing, retracing hints) is noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    args = build_parser(command).parse_args(argv)
    # The command line as given, for the results files that record how they were made.
    args._command_line = "tfoptim " + " ".join(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
