"""docs/callbacks.md says its Python snippets run as they are: each one runs here, unchanged."""

import pathlib
import re

import keras
import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "callbacks.md"


def _snippets():
    text = DOC.read_text()
    snippets = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.M | re.S):
        line = text.count("\n", 0, match.start(1)) + 1
        heading = re.findall(r"^## (.+)$", text[: match.start()], flags=re.M)
        section = heading[-1] if heading else "introduction"
        snippets.append(pytest.param(match.group(1), line, id=f"line {line}: {section}"))
    return snippets


def test_every_snippet_is_found():
    # A block the pattern misses would silently go untested.
    assert 0 < len(_snippets()) == DOC.read_text().count("```python")


@pytest.mark.parametrize("code, line", _snippets())
def test_snippet_runs(code, line, tmp_path, monkeypatch):
    # Snippets write files (plots, CSV logs, saved models) to the working directory.
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    # Padded so that a traceback points at the snippet's line in the doc.
    source = "\n" * (line - 1) + code
    exec(compile(source, str(DOC), "exec"), {"__name__": "__main__"})
