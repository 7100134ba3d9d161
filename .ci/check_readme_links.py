"""Fails when a relative link or image in README.md points at a file, or a heading, that does
not exist (links into the repository are relative, so they hold in any clone and on any host). mkdocs checks the pages under docs/; the README is read on the repository's own page,
outside the site, so it is checked here (headings by GitHub's anchor rule)."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def main():
    readme = (ROOT / "README.md").read_text()
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.M | re.S)
    errors = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):  # another site (https:, mailto:): not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / "README.md"
        if not file.exists():
            errors.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            errors.append(f"{target}: no heading #{anchor} in {path or 'README.md'}")
    for error in errors:
        print(f"README.md: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
