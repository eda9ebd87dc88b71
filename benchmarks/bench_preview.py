"""Live-preview latency: one output plane of the bundled example, as `tumsyn serve` makes it.

    .venv/bin/python benchmarks/bench_preview.py [--checkpoint FILE] [--repeats 3]

For each view (axial, coronal, sagittal) and output voxel size (2 mm, the example's own, and
1 mm), the first request fills the source's patch-feature cache ("cold"); then the TE of a T2w
prompt changes on every request, as a slider does ("warm": median of ``--repeats``). Target: about
a second warm on 2 CPU cores. Planes through the origin (0, 0, 0) mm. Prints a table and writes
benchmarks/results/preview.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn import Synthesizer
from tumsyn.examples import example_t1w
from tumsyn.infer.preview import PlanePreview
from tumsyn.io import load_nifti
from tumsyn.serve.display import plane_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: bundled model")
    parser.add_argument("--repeats", type=int, default=3, help="warm requests per row")
    args = parser.parse_args()
    synthesizer = Synthesizer.from_checkpoint(args.checkpoint, device="cpu")
    volume = load_nifti(example_t1w())
    rows = []
    for size in (2.0, 1.0):
        for view in ("axial", "coronal", "sagittal"):
            preview = PlanePreview(synthesizer, volume)  # a fresh cache per row
            times = []
            for n in range(args.repeats + 1):
                target = synthesizer.target("T2w", te=80.0 + 20 * n, voxel_size=(size,) * 3)
                grid = preview.output_grid(target)
                axis, index = plane_index(grid, view, (0.0, 0.0, 0.0))  # MNI origin
                start = time.perf_counter()
                preview.plane(target, axis, index)
                times.append(time.perf_counter() - start)
            rows.append({"voxel_mm": size, "view": view, "cold_s": round(times[0], 2),
                         "warm_s": round(statistics.median(times[1:]), 2)})  # fmt: skip
    report("preview", rows, {"command": "python benchmarks/bench_preview.py",
                             "model": synthesizer.name})  # fmt: skip


if __name__ == "__main__":
    main()
