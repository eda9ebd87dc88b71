"""Speed of the simulator: a cohort like `tumsyn simulate OUT --subjects 20 --seed 0 --workers 2`.

    .venv/bin/python benchmarks/bench_simulate.py [--subjects 20] [--workers 2]

Writes 20 subjects x 7 contrasts at 1 mm (the packaged default protocols) plus tissue maps to a
temporary folder, then runs the official BIDS validator on it when `make bids-validator` has
installed it. Also times the parts of one subject: anatomy, one scan, one NIfTI write. Prints a
table and writes benchmarks/results/simulate.json. Target: under 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, report
from tumsyn.io import save_nifti
from tumsyn.metadata import load_protocols
from tumsyn.simulate import CohortSettings, ScanSettings, make_subject, scan, simulate_dataset

VALIDATOR = Path(".venv/bids-validator/node_modules/bids-validator/bin/bids-validator")


def _validate(root: Path) -> str:
    if not VALIDATOR.is_file():
        return "not installed (make bids-validator)"
    result = subprocess.run(
        [str(VALIDATOR), str(root), "--json"], capture_output=True, text=True, check=False
    )
    issues = json.loads(result.stdout)["issues"]
    return f"{len(issues['errors'])} errors, {len(issues['warnings'])} warnings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    protocols = load_protocols("default")

    make_subject(0)  # template, torch and caches warm for the per-part timings
    anatomy_seconds = best_of(lambda: make_subject(1), repeats=3)
    anatomy = make_subject(1)
    image, affine = scan(anatomy, protocols[0].metadata, ScanSettings())
    scan_seconds = best_of(lambda: scan(anatomy, protocols[0].metadata, ScanSettings()))
    rows = [
        {"task": "one subject's anatomy (1 mm)", "seconds": f"{anatomy_seconds:.2f}"},
        {"task": f"one scan {image.shape} (1 mm)", "seconds": f"{scan_seconds:.2f}"},
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.nii.gz"
        write_seconds = best_of(lambda: save_nifti(path, image, affine))
        rows.append({"task": "write one scan (.nii.gz)", "seconds": f"{write_seconds:.2f}"})

        root = Path(folder) / "cohort"
        start = time.perf_counter()
        simulate_dataset(
            root,
            CohortSettings(subjects=args.subjects, seed=0),
            protocols,
            workers=args.workers,
            progress=False,
        )
        total = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        images = len(list(root.glob("sub-*/anat/*.nii.gz")))
        rows.append(
            {
                "task": f"cohort: {args.subjects} subjects x {len(protocols)} contrasts, "
                f"{args.workers} workers ({images} images, {size:.0f} MiB)",
                "seconds": f"{total:.1f}",
            }
        )
        rows.append({"task": "BIDS validator on the cohort", "seconds": _validate(root)})
    report("simulate", rows)
    print(f"target: cohort under 120 s -> {'met' if total < 120 else 'MISSED'} ({total:.1f} s)")


if __name__ == "__main__":
    main()
