"""``tfoptim --help`` and ``--version`` answer without importing TensorFlow.

Each command runs in a fresh interpreter under ``-X importtime``, which reports every module
the process imports on stderr; a module counts as imported when its name, or its top-level
package, appears there.
"""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import tfoptim
from tfoptim import cli

REPOSITORY = Path(__file__).resolve().parents[1]
HEAVY = {"tensorflow", "keras"}


def run_cli(*args):
    """``(stdout, imported top-level packages)`` of ``python -X importtime -m tfoptim.cli ARGS``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfoptim.cli", *args],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "tfoptim" in imported, "-X importtime reported nothing: the check below would be void"
    return result.stdout, imported


def test_help_lists_every_command_without_importing_tensorflow():
    out, imported = run_cli("--help")
    assert not imported & HEAVY, sorted(imported & HEAVY)
    for name in cli.COMMANDS:
        assert name in out


def test_version_is_the_package_metadata_without_importing_tensorflow():
    out, imported = run_cli("--version")
    assert not imported & HEAVY, sorted(imported & HEAVY)
    assert out.strip() == f"tfoptim {importlib.metadata.version('tfoptim')}"
    assert tfoptim.__version__ == importlib.metadata.version("tfoptim")


@pytest.mark.parametrize("command", ["demo", "lr-find"])
def test_a_command_imports_its_own_module_only(command):
    """The detector sees a TensorFlow import when there is one: ``lr-find``'s module imports
    the callbacks (Keras, TensorFlow); ``demo``'s imports NumPy only until it runs."""
    out, imported = run_cli(command, "--help")
    assert "usage: tfoptim " + command in out
    assert ("tensorflow" in imported) == (command == "lr-find")
