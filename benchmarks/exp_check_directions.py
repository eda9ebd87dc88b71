"""The held-out real-scan check's procedure, on simulated scans: four directions, whole volumes.

    make check-directions    # this script with the shipped models v2 and v1
    .venv/bin/python benchmarks/exp_check_directions.py [--model NAME=CHECKPOINT ...]
        [--workdir DIR] [--erode N]

Why: the shipped model is judged on real multi-contrast scans kept outside the repository, in
four directions (T1w -> T2w, T1w -> PD, T2w -> T1w, PD -> T2w), each against copying and
inverting the source (bar: 1 dB above the better of the two). `exp_generated_samples.py --only
transfer` scores those directions on 32^3 patches of noise-free targets; this runs them the way
a user's own data set is evaluated: whole brain-extracted 1 mm volumes of a T1w, a T2w and a PD
of each subject, scanned with noise and a bias field (the simulator's defaults: SNR 25-60, bias
0.12), min-max scaled in the brain mask. Protocols: the library's 1.5 T Philips ones (a spoiled
gradient echo T1w, TR 25 ms, TE 4.6 ms, flip angle 30 degrees; a dual-echo turbo spin echo, TR
5725 ms, TE 100 ms for the T2w and 8 ms for the PD), the three contrasts of a public data set of
that kind (IXI), on virtual subjects that no shipped model was trained on (seed 77), without
enhancing lesions. What it is not: real scans; every model here was trained on this simulator.

Writes the data set once into WORKDIR/data (default runs/check-directions; remove it to draw it
again), then benchmarks/results/check_directions_own_data*.json and
docs/figures/eval_check_directions_own_data.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import split_experiment
from tumsyn.metadata import load_protocols
from tumsyn.simulate.bids import CohortSettings, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
TASKS = (("T1w", "T2w"), ("T1w", "PD"), ("T2w", "T1w"), ("PD", "T2w"))
PROTOCOLS = (("T1w", "ffe15"), ("T2w", "tse15"), ("PD", "tse15"))  # (modality, library name)
COHORT = CohortSettings(subjects=2, seed=77, enhancing_fraction=0.0)
COMMAND = "make check-directions"  # this script with the shipped models (Makefile)


def write_dataset(root: Path) -> Path:
    """The simulated data set (kept: a second run reuses it)."""
    if (root / "participants.tsv").is_file():
        return root
    library = {(p.metadata.modality, p.name): p for p in load_protocols("library")}
    protocols = [library[key] for key in PROTOCOLS]
    return simulate_dataset(root, COHORT, protocols, voxel_size=(1.0, 1.0, 1.0), progress=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "check-directions")
    known, rest = parser.parse_known_args(argv)
    bids = write_dataset(known.workdir / "data")
    arguments = [*rest, "--data", str(bids), "--workdir", str(known.workdir)]
    return split_experiment(arguments, split="internal", name="check_directions", doc=__doc__,
                            tasks=TASKS, slices=0, command=COMMAND)  # fmt: skip


if __name__ == "__main__":
    main()
