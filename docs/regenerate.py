"""Rewrites the command outputs pasted into the docs, so that docs and code cannot disagree.

A page marks each pasted output with a pair of comments; everything between them is replaced
by the command's current output in a fenced block::

    <!-- strategy-show: dmasking -->        the output of `supernas strategy show dmasking`
    <!-- /strategy-show -->
    <!-- strategy-list -->                  the output of `supernas strategy list`
    <!-- /strategy-list -->

Run ``.venv/bin/python docs/regenerate.py`` after changing a strategy's ``Config`` (its fields,
defaults or trailing comments); ``--check`` only reports stale pages and exits with 1.
`tests/test_docs.py` runs the same check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BLOCK = re.compile(
    r"(?P<open><!-- (?P<kind>strategy-show|strategy-list)(?:: (?P<name>[\w-]+))? -->\n)"
    r".*?"
    r"(?P<close><!-- /(?P=kind) -->)",
    re.DOTALL,
)


def command_output(argv: list[str]) -> str:
    """What ``supernas ARGV`` prints on stdout (run in this process)."""
    from supernas.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"supernas {' '.join(argv)} exited with {code}")
    return out.getvalue()


def _argv(match: re.Match) -> list[str]:
    if match["kind"] == "strategy-list":
        return ["strategy", "list"]
    return ["strategy", "show", match["name"]]


def render(text: str) -> str:
    """``text`` with every marked block holding its command's current output."""

    def block(match: re.Match) -> str:
        argv = _argv(match)
        body = f"```text\n$ supernas {' '.join(argv)}\n{command_output(argv)}```\n"
        return match["open"] + body + match["close"]

    return BLOCK.sub(block, text)


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def stale_pages() -> list[Path]:
    return [page for page in pages() if render(page.read_text()) != page.read_text()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale pages, write nothing")
    args = parser.parse_args()
    stale = stale_pages()
    for page in stale:
        if not args.check:
            page.write_text(render(page.read_text()))
        print(f"{'stale' if args.check else 'rewrote'}: {page.relative_to(DOCS.parent)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
