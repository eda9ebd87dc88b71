"""Helpers for benchmark scripts: timing, a printed table, and a JSON record of the results."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

from tumsyn.io import save_json

RESULTS = Path(__file__).parent / "results"


def best_of(function: Callable[[], object], repeats: int = 3) -> float:
    """Shortest wall-clock time of ``repeats`` calls, in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, rows: list[dict], facts: dict | None = None) -> Path:
    """Print ``rows`` as a table and write them with machine facts (and ``facts``: the command
    that made them, the suite, a caption) to ``results/NAME.json``."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    save_json(path, {"benchmark": name, "machine": machine, **(facts or {}), "rows": rows})
    print(f"written to {path}")
    return path
