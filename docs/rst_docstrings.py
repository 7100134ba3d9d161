"""A griffe extension for the API reference: renders the docstrings' reStructuredText in Markdown.

The docstrings are written for ``help()`` and Sphinx-style readers: cross-references as roles
(``:class:`Adam```), literal blocks introduced by ``::``, simple tables drawn with ``=====``
borders, and argument ranges that start with ``>`` (``epsilon: > 0.``). mkdocstrings reads
docstrings as Markdown, where those would print the role's markup, a stray ``::``, a run-on
paragraph and a block quote. This rewrites them before the docstrings are parsed; the
docstrings themselves stay as they are.
"""

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|obj|exc):`~?([^`]+)`")
TABLE_BORDER = re.compile(r"^( *)(=+)((?: +=+)+) *$")


def rst_table_to_markdown(lines):
    """A simple reST table (a border, a header row, a border, rows, a border) as Markdown rows.

    Column starts are read off the border; a line with an empty first column continues the row
    above."""
    indent, first, rest = TABLE_BORDER.match(lines[0]).groups()
    border = lines[0][len(indent):]
    starts = [0] + [m.start() for m in re.finditer(r"(?<= )=", border)]

    def cells(line):
        line = line[len(indent):]
        return [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]

    header = cells(lines[1])
    rows = []
    for line in lines[3:-1]:
        row = cells(line)
        if row[0] or not rows:
            rows.append(row)
        else:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], row)]
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [indent + line for line in out]


def convert(text):
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if TABLE_BORDER.match(line):
            # A table ends at its third border.
            borders = [j for j in range(i, len(lines)) if lines[j].strip() and set(lines[j].strip()) <= {"=", " "}]
            if len(borders) >= 3 and borders[1] == i + 2:
                out += rst_table_to_markdown(lines[i : borders[2] + 1])
                i = borders[2] + 1
                continue
        line = ROLE.sub(r"`\1`", line)
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2].rstrip()
            line = stripped + ":" if stripped else ""
        # "name: > 0" and continuation lines starting with ">" are ranges, not block quotes.
        line = re.sub(r"^(\s*(?:[\w*]+:\s+)?)>(?!>)", r"\1\\>", line)
        out.append(line)
        i += 1
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        stack = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
