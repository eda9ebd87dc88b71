"""scripts/eval_tables.py: the README's tables are rendered from the benchmark JSON, exactly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_tables.py"

spec = importlib.util.spec_from_file_location("eval_tables", SCRIPT)
eval_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eval_tables)

ROWS = [
    {"method": "a|b", "n": 3, "psnr": 30.456, "psnr_low": 29.0, "psnr_high": 31.994,
     "ssim": 0.91234, "pearson_r": -0.5, "dice": None},
    {"method": "copy", "n": 12, "psnr": float("nan"), "psnr_low": None, "psnr_high": 1.0,
     "ssim": 1.0, "pearson_r": 0.12345, "dice": 0.5},
    {"method": "one case", "n": 1, "psnr": 17.8, "psnr_low": None, "psnr_high": None,
     "ssim": 0.5, "pearson_r": None, "dice": None},
]  # fmt: skip

TABLE = (
    "| method | n | psnr | ssim | pearson_r | dice |\n"
    "|---|---|---|---|---|---|\n"
    "| a\\|b | 3 | 30.46 [29.00, 31.99] | 0.912 | -0.500 | – |\n"
    "| copy | 12 | – [–, 1.00] | 1.000 | 0.123 | 0.500 |\n"
    "| one case | 1 | 17.80 | 0.500 | – | – |"
)

HEAD = "# Title\r\n\nIntro  with trailing spaces   \n\n"
MIDDLE = "\nBetween the tables.\n\n"
TAIL = "\nThe end, no final newline"


def write_results(folder: Path, name: str, rows: list[dict], **extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    content = {"benchmark": name, "machine": {"python": "3"}, "rows": rows, **extra}
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def readme_text(first: str = "stale\n", second: str = "") -> str:
    return (
        f"{HEAD}<!-- results:quality -->\n{first}<!-- /results:quality -->\n"
        f"{MIDDLE}<!-- results:speed-2 -->\n{second}<!-- /results:speed-2 -->{TAIL}"
    )


def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    write_results(
        folder, "quality", ROWS, command="make eval-quick", suite="quick", caption="PSNR and SSIM."
    )
    write_results(folder, "speed-2", [{"step": "load", "seconds": 1.5}])
    return folder


def test_render_table_intervals_and_number_formats():
    assert eval_tables.render_table(ROWS) == TABLE


def test_render_table_needs_low_and_high_right_after_the_column():
    rows = [{"x": 1.0, "x_high": 2.0, "x_low": 0.5}]
    assert eval_tables.render_table(rows) == (
        "| x | x_high | x_low |\n|---|---|---|\n| 1.00 | 2.00 | 0.50 |"
    )


def test_update_readme_replaces_between_markers_only(results: Path):
    text = readme_text()
    new, changed = eval_tables.update_readme(text, results)
    assert changed == ["quality", "speed-2"]
    quality = f"*Made by `make eval-quick` (suite quick) — PSNR and SSIM.*\n\n{TABLE}\n"
    speed = "*Command unknown*\n\n| step | seconds |\n|---|---|\n| load | 1.50 |\n"
    assert new == readme_text(quality, speed)
    # the rest is byte-identical: the text outside the markers is untouched
    assert new.startswith(HEAD + "<!-- results:quality -->\n")
    assert new.endswith("<!-- /results:speed-2 -->" + TAIL)
    assert MIDDLE in new

    again, changed_again = eval_tables.update_readme(new, results)
    assert again == new
    assert changed_again == []


def test_script_writes_then_check_passes(results: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_bytes(readme_text().encode("utf-8"))

    stale = run_script("--results", results, "--readme", readme, "--check")
    assert stale.returncode == 1
    assert "quality" in stale.stdout and "speed-2" in stale.stdout
    assert readme.read_bytes() == readme_text().encode("utf-8")  # --check writes nothing

    written = run_script("--results", results, "--readme", readme)
    assert written.returncode == 0, written.stderr
    assert "updated quality" in written.stdout and "updated speed-2" in written.stdout
    expected, _ = eval_tables.update_readme(readme_text(), results)
    assert readme.read_bytes() == expected.encode("utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["README.md"]  # no temp left

    current = run_script("--results", results, "--readme", readme, "--check")
    assert current.returncode == 0, current.stdout + current.stderr

    rerun = run_script("--results", results, "--readme", readme)
    assert rerun.returncode == 0
    assert "updated" not in rerun.stdout

    write_results(results, "speed-2", [{"step": "load", "seconds": 2.5}])
    changed = run_script("--results", results, "--readme", readme, "--check")
    assert changed.returncode == 1
    assert "speed-2" in changed.stdout and "quality" not in changed.stdout


def test_missing_json_is_one_line_and_exit_2(results: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    text = readme_text() + "\n<!-- results:absent -->\n<!-- /results:absent -->\n"
    readme.write_bytes(text.encode("utf-8"))
    done = run_script("--results", results, "--readme", readme)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("eval_tables: absent: no ")
    assert lines[0].endswith("absent.json; run make eval-quick first")
    assert readme.read_bytes() == text.encode("utf-8")  # nothing written

    # with the default folder, the message names it as the brief says
    readme.write_text("<!-- results:no_such_table -->\n<!-- /results:no_such_table -->\n")
    default = run_script("--readme", readme)
    assert default.returncode == 2
    assert default.stderr == (
        "eval_tables: no_such_table: no benchmarks/results/no_such_table.json; "
        "run make eval-quick first\n"
    )


@pytest.mark.parametrize(
    "markers",
    [
        "<!-- results:a -->\n",  # never closed
        "<!-- /results:a -->\n",  # closes nothing
        "<!-- results:a -->\n<!-- /results:b -->\n",  # mismatched names
        "<!-- results:a -->\n<!-- results:b -->\n<!-- /results:b -->\n<!-- /results:a -->\n",
        "<!-- results:a -->\n<!-- /results:a -->\n<!-- results:a -->\n<!-- /results:a -->\n",
    ],
    ids=["unclosed", "stray-close", "mismatched", "nested", "duplicate"],
)
def test_bad_markers_exit_2(tmp_path: Path, markers: str):
    folder = tmp_path / "results"
    for name in "ab":
        write_results(folder, name, [{"x": 1}])
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{markers}", encoding="utf-8")
    done = run_script("--results", folder, "--readme", readme)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("eval_tables: ")
    with pytest.raises(eval_tables.TableError):
        eval_tables.update_readme(readme.read_text(encoding="utf-8"), folder)


def test_only_updates_the_named_tables(results: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    absent = "<!-- results:absent -->\nkept as it is\n<!-- /results:absent -->\n"
    readme.write_text(readme_text() + "\n" + absent)
    done = run_script("--results", results, "--readme", readme, "--only", "quality")
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert absent in text and "30.46 [29.00, 31.99]" in text
    assert "<!-- results:speed-2 -->\n<!-- /results:speed-2 -->" in text  # not named: left alone
