"""Throughput of the foundation: prompt format/parse, tokenization, NIfTI load/save.

    .venv/bin/python benchmarks/bench_prompts_and_io.py

Prints a table and writes benchmarks/results/prompts_and_io.json. The NIfTI rows use a whole-brain
1 mm grid (182 x 218 x 182, the MNI152 FSL grid) of random float32 values.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, report
from tumsyn.io import load_nifti, save_nifti
from tumsyn.metadata import ImagingMetadata, format_prompt, parse_prompt
from tumsyn.text import ClipTokenizer

PROMPTS = 1000


def main() -> None:
    rng = np.random.default_rng(0)
    records = [
        ImagingMetadata(
            age=float(rng.integers(5, 90)),
            sex=str(rng.choice(["F", "M"])),
            field_strength=float(rng.choice([1.5, 3.0])),
            manufacturer=str(rng.choice(["Siemens", "GE", "Philips"])),
            modality=str(rng.choice(["T1w", "T2w", "FLAIR", "PD"])),
            voxel_size=(1.0, 1.0, float(rng.choice([1.0, 3.0, 5.0]))),
            tr=float(rng.integers(2000, 10000)),
            te=float(rng.integers(2, 120)),
            flip_angle=90.0,
        )
        for _ in range(PROMPTS)
    ]
    texts = [format_prompt(r) for r in records]

    start = time.perf_counter()
    tokenizer = ClipTokenizer()
    build = time.perf_counter() - start

    rows = [
        {"task": "build tokenizer (cold)", "n": 1, "seconds": f"{build:.3f}", "per item": "-"},
    ]
    for task, function in [
        ("format prompt", lambda: [format_prompt(r) for r in records]),
        ("parse prompt", lambda: [parse_prompt(t) for t in texts]),
        ("tokenize prompt", lambda: tokenizer(texts)),
    ]:
        seconds = best_of(function)
        rows.append(
            {
                "task": task,
                "n": PROMPTS,
                "seconds": f"{seconds:.3f}",
                "per item": f"{seconds / PROMPTS * 1e6:.1f} us",
            }
        )

    volume = rng.random((182, 218, 182), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "brain.nii.gz"
        for task, function in [
            ("save NIfTI 182x218x182 (.nii.gz)", lambda: save_nifti(path, volume, np.eye(4))),
            ("load NIfTI 182x218x182 (.nii.gz)", lambda: load_nifti(path)),
        ]:
            seconds = best_of(function)
            rows.append({"task": task, "n": 1, "seconds": f"{seconds:.3f}", "per item": "-"})
    report("prompts_and_io", rows)


if __name__ == "__main__":
    main()
