"""``tfoptim demo``, ``tfoptim list`` and the modernized seed example, end to end."""

import json
import runpy
import sys

import numpy as np
import pytest

from tfoptim import cli, demo


def test_demo_writes_results_and_plot(tmp_path, capsys):
    assert cli.main(["demo", "--steps", "150", "--output", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert {r["optimizer"] for r in records} == set(demo.demo_optimizers())
    # "Every optimizer in the package": each class `tfoptim list` knows runs in the demo.
    from tfoptim.catalog import optimizers

    ran = {type(make()).__name__ for make in demo.demo_optimizers().values()}
    assert ran == set(optimizers())
    for record in records:
        assert {"optimizer", "final_loss", "weight", "bias", "steps_to_converge", "seconds"} <= set(record)
    assert (tmp_path / "loss_curves.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "steps to 1%" in table and "GradientDescent" in table


def test_demo_converges_to_the_least_squares_answer():
    """Within 1000 full-batch steps, plain gradient descent reaches the normal-equation optimum."""
    x, y = demo.make_data()
    weight, bias, optimum = demo.least_squares(x, y)
    design = np.hstack([x, np.ones_like(x)]).astype("float64")
    exact = np.linalg.solve(design.T @ design, design.T @ y[:, 0])
    np.testing.assert_allclose([weight, bias], exact, rtol=1e-9)
    losses, w, b = demo.fit_linear(demo.demo_optimizers()["GradientDescent"](), x, y, 1000)
    assert demo.steps_to_converge(losses, optimum) is not None
    np.testing.assert_allclose([w, b], exact, rtol=1e-3)
    assert losses[-1] == pytest.approx(optimum, rel=1e-4)


def test_every_optimizer_is_in_exactly_one_family():
    from tfoptim.catalog import FAMILIES, family, optimizers

    members = [name for names in FAMILIES.values() for name in names]
    assert sorted(members) == sorted(optimizers())
    assert family(optimizers()["Lookahead"]) == "wrappers"
    with pytest.raises(ValueError, match="no family"):
        family(int)


def test_steps_to_converge():
    assert demo.steps_to_converge(np.array([5.0, 2.0, 1.02, 1.005, 1.0]), 1.0) == 3
    assert demo.steps_to_converge(np.array([5.0, 2.0]), 1.0) is None


def test_list_prints_every_optimizer_with_a_reference(capsys):
    cli.main(["list", "--references"])
    out = capsys.readouterr().out
    from tfoptim.catalog import describe, optimizers

    for name, cls in optimizers().items():
        assert name in out
        assert describe(cls)[1], f"{name} has no Reference: in its docstring"


def test_linear_regression_example_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["linear_regression.py", "--steps", "4", "--every", "2"])
    runpy.run_path("examples/linear_regression.py", run_name="__main__")
    out = capsys.readouterr().out
    # model.fit and the custom loop take the same steps from the same start.
    blocks = out.split("== ")[1:]
    for fit_block, loop_block in zip(blocks[::2], blocks[1::2]):
        assert fit_block.split("\n")[1:3] == loop_block.split("\n")[1:3]
    assert out.count("Step: 4,") == 14
