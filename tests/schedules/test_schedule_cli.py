"""``tfoptim schedule``, run in-process through ``tfoptim.cli.main``."""

import pathlib
import re
import shlex

import pytest

import tfoptim.cli
from schedules.schedule_testing import assert_close
from tfoptim.schedules import LinearWarmup, OneCycle, values

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "schedules.md"


@pytest.fixture
def tfoptim_command(monkeypatch):
    """Runs a ``tfoptim ...`` command line through ``tfoptim.cli.main``, with only this
    subcommand wired, so the test does not depend on the other subcommands importing."""
    monkeypatch.setattr(tfoptim.cli, "COMMANDS", {"schedule": tfoptim.cli.COMMANDS["schedule"]})

    def run(command_line):
        argv = shlex.split(command_line) if isinstance(command_line, str) else command_line
        assert argv[0] == "tfoptim"
        return tfoptim.cli.main(argv[1:])

    return run



def test_writes_the_png_and_prints_values(tfoptim_command, tmp_path, capsys):
    path = tmp_path / "curve.png"
    command = (
        "tfoptim schedule one-cycle --steps 300 --max_learning_rate 0.1 --total-steps=300 "
        f"--pct_start 0.25 --three_phase --output {path}"
    )
    assert tfoptim_command(command) == 0
    out = capsys.readouterr().out
    expected = values(OneCycle(0.1, 300, pct_start=0.25, three_phase=True), 300)
    assert "OneCycle(max_learning_rate=0.1, total_steps=300, pct_start=0.25" in out
    assert "three_phase=True" in out
    rows = dict(re.findall(r"^\s+(\d+)\s+(\S+)$", out, flags=re.M))
    assert set(rows) == {str(s) for s in (0, 30, 60, 90, 120, 150, 179, 209, 239, 269, 299)}
    assert_close(float(rows["60"]), expected[60], rtol=1e-5)
    assert f"max {expected.max():.6g} at step {expected.argmax()}" in out
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "command, printed",
    [
        (
            "tfoptim schedule LinearWarmup --steps 700 --warmup_steps 100 --schedule "
            '"SequentialSchedule([0.1, CosineDecayRestarts(0.1, first_decay_steps=200)], '
            'boundaries=[50])"',
            "LinearWarmup(schedule=SequentialSchedule(schedules=[0.1, CosineDecayRestarts(",
        ),
        (
            "tfoptim schedule WarmupStableDecay --steps 50 --peak_learning_rate 1e-3 "
            "--warmup_steps 5 --stable_steps 20 --decay_steps 10 --decay_type 1-sqrt",
            "decay_type='1-sqrt'",
        ),
        (
            "tfoptim schedule MultiStepDecay --steps 50 --initial_learning_rate 0.1 "
            "--milestones 10,20",
            "milestones=[10, 20]",
        ),
        (
            "tfoptim schedule LinearWarmup --steps 20 --schedule 0.5 --warmup_steps 10",
            repr(LinearWarmup(0.5, 10)),
        ),
    ],
)
def test_reads_numbers_lists_text_and_schedule_calls(tfoptim_command, capsys, command, printed):
    assert tfoptim_command(command) == 0
    assert printed in capsys.readouterr().out.splitlines()[0]


def test_help_for_one_schedule(tfoptim_command, capsys):
    assert tfoptim_command("tfoptim schedule OneCycle --help") == 0
    out = capsys.readouterr().out
    assert out.startswith("OneCycle(max_learning_rate, total_steps, pct_start=0.3")
    assert "OneCycleLR" in out


@pytest.mark.parametrize(
    "arguments, message",
    [
        ("NoSuchSchedule --steps 10", r"unknown schedule 'NoSuchSchedule'; choose from: "),
        ("StepDecay --initial_learning_rate 0.1 --step_size 5", r"--steps N"),
        ("StepDecay --steps ten", r"--steps N"),
        (
            "StepDecay --steps 10 --initial_learning_rate 0.1 --step_size 5 --milestones 3",
            r"StepDecay takes no argument --milestones; it takes: ",
        ),
        (
            "StepDecay --steps 10 --initial_learning_rate 0.1 --step_size 0",
            r"StepDecay: `step_size` must be an integer >= 1",
        ),
        ("StepDecay --steps 10 --step_size 5", r"StepDecay: .*initial_learning_rate"),
        (
            "LinearWarmup --steps 10 --warmup_steps 3 --schedule 'Nope(1)'",
            r"unknown schedule 'Nope'",
        ),
        (
            'LinearWarmup --steps 10 --warmup_steps 3 --schedule "CosineDecay(0.1, '
            "__import__('os'))\"",
            r"unknown schedule '__import__'",
        ),
        (
            "LinearWarmup --steps 10 --warmup_steps 3 --schedule "
            "'CosineDecay(0.1, decay_steps=2 ** 10)'",
            r"cannot read '2 \*\* 10'",
        ),
        ("StepDecay 0.1", r"expected --ARG VALUE, got '0.1'"),
        ("StepDecay --gamma 0.5 --gamma 0.2", r"--gamma is given twice"),
    ],
)
def test_bad_command_lines_exit_with_a_message(tfoptim_command, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        tfoptim_command(f"tfoptim schedule {arguments}")
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_every_gallery_command_in_the_docs_runs(tfoptim_command, capsys):
    commands = [
        shlex.split(line)
        for line in re.findall(r"^tfoptim schedule .*$", DOCS.read_text(), flags=re.M)
    ]
    assert len(commands) >= 9
    for argv in commands:
        # Drawing is tested above; here, that each command still builds its schedule and that
        # the picture it made is in the repository.
        index = argv.index("--output")
        assert (ROOT / argv[index + 1]).is_file(), argv[index + 1]
        assert tfoptim_command(argv[:index] + argv[index + 2 :]) == 0, argv
    capsys.readouterr()
