"""Regenerate the README's result tables from the benchmark JSON files.

    .venv/bin/python scripts/eval_tables.py [--results DIR] [--readme README.md] [--check]

Why: every figure in the README comes from a command that regenerates it. The evaluation scripts
under ``benchmarks/`` write ``benchmarks/results/NAME.json`` (with the rows, and the command, suite
and caption that made them); the README's tables are rendered from that JSON by this script, never
typed, so a number in the README cannot drift from the run it claims to come from.

In the README, a table lives between two markers, each alone on its line::

    <!-- results:NAME -->
    ...everything here is replaced...
    <!-- /results:NAME -->

The markers stay; what lies between them becomes one line naming the command that made the JSON
(``*Made by `COMMAND` (suite SUITE) — CAPTION*``), a blank line, and the table of ``rows``.

Exit codes: 0 done (or, with ``--check``, the README is current); 1 with ``--check``: some tables
are out of date (nothing is written); 2 a user error (a missing or unreadable JSON file, missing,
unbalanced or duplicate markers), reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from tumsyn.io import atomic_output

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"

MARKER = re.compile(r"^[ \t]*<!--[ \t]*(/?)results:([A-Za-z0-9_-]+)[ \t]*-->[ \t]*\r?$", re.M)
DASH = "–"  # an en dash: a missing value or NaN


class TableError(ValueError):
    """A user error: the README's markers or a results file are not as they should be."""


def _decimals(column: str) -> int:
    name = column.lower()
    return 3 if ("ssim" in name or "dice" in name or "_r" in name) else 2


def _cell(value: object, column: str) -> str:
    """One value as Markdown table text, formatted by the rules of its column."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return DASH
        return f"{value:.{_decimals(column)}f}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\r", " ").replace("\n", " ").replace("|", r"\|")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _columns(first: dict) -> list[tuple[str, str | None, str | None]]:
    """``(column, low, high)`` per shown column: ``X, X_low, X_high`` in a row become one."""
    keys = list(first)
    shown = []
    index = 0
    while index < len(keys):
        key = keys[index]
        if keys[index + 1 : index + 3] == [f"{key}_low", f"{key}_high"]:
            shown.append((key, f"{key}_low", f"{key}_high"))
            index += 3
        else:
            shown.append((key, None, None))
            index += 1
    return shown


def render_table(rows: list[dict]) -> str:
    """``rows`` as a Markdown table (no trailing newline).

    The columns are the keys of the first row, in order (a key missing from a later row shows as
    "–"). A column ``X`` directly followed by ``X_low`` and ``X_high`` is shown as one column ``X``
    with cells ``value [low, high]``, or ``value`` alone where both ends are missing (one case: no
    interval). Floats get 2 decimals, or 3 in columns whose name contains
    "ssim", "dice" or "_r" (correlations); ints are shown as they are; None and NaN as "–";
    strings as they are, with ``|`` escaped.
    """
    if not rows:
        raise TableError("no rows to tabulate")
    columns = _columns(rows[0])
    lines = [
        "| " + " | ".join(_cell(name, "") for name, _, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = []
        for name, low, high in columns:
            cell = _cell(row.get(name), name)
            if low is not None and not (_missing(row.get(low)) and _missing(row.get(high))):
                cell += f" [{_cell(row.get(low), name)}, {_cell(row.get(high), name)}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def _load(name: str, results_dir: Path) -> dict:
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        raise TableError(f"{name}: no {_shown_path(path)}; run make eval-quick first")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TableError(f"{name}: cannot read {_shown_path(path)}: {error}") from None
    if not isinstance(content, dict) or not isinstance(content.get("rows"), list):
        raise TableError(f"{name}: {_shown_path(path)} holds no list of rows")
    if not content["rows"] or not all(isinstance(row, dict) for row in content["rows"]):
        raise TableError(f"{name}: the rows of {_shown_path(path)} are empty or not objects")
    return content


def render_block(content: dict) -> str:
    """What goes between the markers: the provenance line, a blank line and the table."""
    command, suite, caption = (content.get(key) for key in ("command", "suite", "caption"))
    line = f"Made by `{command}`" if command else "Command unknown"
    if suite:
        line += f" (suite {suite})"
    if caption:
        line += f" — {caption}"
    return f"*{line}*\n\n{render_table(content['rows'])}\n"


def _pairs(text: str) -> list[tuple[str, re.Match, re.Match]]:
    """The marker pairs of ``text`` in order, checked: balanced, not nested, each name once."""
    pairs = []
    seen: set[str] = set()
    opened: re.Match | None = None
    for match in MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if not closing:
            if opened is not None:
                raise TableError(
                    f"README line {line}: results:{name} opens inside results:{opened.group(2)}"
                )
            if name in seen:
                raise TableError(f"README line {line}: results:{name} appears twice")
            opened = match
        else:
            if opened is None or opened.group(2) != name:
                raise TableError(f"README line {line}: /results:{name} closes no open marker")
            pairs.append((name, opened, match))
            seen.add(name)
            opened = None
    if opened is not None:
        line = text.count("\n", 0, opened.start()) + 1
        raise TableError(f"README line {line}: results:{opened.group(2)} is never closed")
    return pairs


def update_readme(
    text: str, results_dir: Path, only: Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """``text`` with every marked table (or those named in ``only``) regenerated from
    ``results_dir``, and the names changed.

    Only what lies between a pair of markers is touched; the rest of ``text`` is kept byte for
    byte. Raises :class:`TableError` for bad markers or a missing or unreadable results file.
    """
    pieces = []
    changed = []
    position = 0
    for name, opened, closed in _pairs(text):
        if only is not None and name not in only:
            continue
        block = render_block(_load(name, results_dir))
        if opened.group(0).endswith("\r"):  # keep a CRLF file's line ends
            block = block.replace("\n", "\r\n")
        between = "\n" + block  # opened.end() lies just before the newline ending its line
        if text[opened.end() : closed.start()] != between:
            changed.append(name)
        pieces += [text[position : opened.end()], between]
        position = closed.start()
    pieces.append(text[position:])
    return "".join(pieces), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eval_tables.py", description="Regenerate the README's result tables from JSON."
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of NAME.json")
    parser.add_argument("--readme", type=Path, default=README, help="the Markdown file to update")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a table is out of date; write nothing"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these tables only")
    args = parser.parse_args(argv)
    try:
        try:
            text = args.readme.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TableError(f"cannot read {args.readme}: {error}") from None
        new_text, changed = update_readme(text, args.results, args.only)
    except TableError as error:
        print(f"eval_tables: {error}", file=sys.stderr)
        return 2
    count = len(_pairs(text))
    if args.check:
        if changed:
            print(
                f"eval_tables: out of date in {args.readme}: {', '.join(changed)} "
                "(run scripts/eval_tables.py)"
            )
            return 1
        print(f"eval_tables: {count} table(s) in {args.readme} up to date")
        return 0
    if new_text != text:
        with atomic_output(args.readme) as temporary:
            temporary.write_bytes(new_text.encode("utf-8"))
    for name in changed:
        print(f"eval_tables: updated {name}")
    if not changed:
        print(f"eval_tables: {count} table(s) in {args.readme} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
