"""How well the input-modality guess (``tumsyn.infer.modality_guess``) reads real and simulated
scans.

    .venv/bin/python benchmarks/exp_modality_guess.py

Every packaged protocol (``--protocols library``: 25, all seven contrasts, 1.5/3/7 T) is scanned
from three virtual subjects (the MNI152 template's anatomy, a 75-year-old with lesions and a
30-year-old) at five voxel sizes (1, 2 and 3 mm isotropic, 1 x 1 x 4 and 4 x 1 x 1 mm slabs) with a
seeded random SNR (8-60) and bias field (coefficients' standard deviation 0.2, the stage-2 input
randomiser's). Each scan is guessed as a T2w, a PD, or T1-like (``none``: read with the fallback
network); the table counts the guesses per true modality beside the range of each feature. The
real-derived images at hand (the bundled MNI152 2009a example; Colin27 after ``make colin27``; the
ICBM152 2009c T1 and T2 templates after ``make icbm-t2``) are rows of their own. The thresholds in
``tumsyn.infer.modality_guess`` were set from these ranges.

Writes benchmarks/results/modality_guess.json.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import icbm
from common import report
from tumsyn.examples import example_t1w
from tumsyn.infer.modality_guess import ModalityGuess, guess_input_modality
from tumsyn.metadata import load_protocols
from tumsyn.simulate import draw_scan_settings, make_subject, scan
from tumsyn.simulate.anatomy import template_anatomy

ROOT = Path(__file__).resolve().parents[1]
COLIN = ROOT / "data" / "colin27" / "ch2bet.nii.gz"
VOXEL_SIZES = ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (3.0, 3.0, 3.0), (1.0, 1.0, 4.0), (4.0, 1.0, 1.0))
FEATURES = ("core_to_shell", "ventricles", "darkest")


def simulated_guesses() -> dict[str, list[ModalityGuess]]:
    """The guesses of every protocol's scans, by the protocol's modality."""
    subjects = (template_anatomy(), make_subject(3, age=75, sex="M", enhancing=True),
                make_subject(5, age=30, sex="F"))  # fmt: skip
    rng = np.random.default_rng(0)
    guesses = defaultdict(list)
    for protocol in load_protocols("library"):
        for anatomy in subjects:
            for voxel_size in VOXEL_SIZES:
                settings = draw_scan_settings(rng, snr=(8.0, 60.0), bias=0.2)
                metadata = protocol.metadata.replace(voxel_size=voxel_size)
                image, _ = scan(anatomy, metadata, settings)
                guesses[str(metadata.modality)].append(guess_input_modality(image, voxel_size))
    return guesses


def real_guesses() -> dict[str, list[ModalityGuess]]:
    """The guesses of the real-derived images at hand (each brain-extracted)."""
    images = {"real T1w: MNI152 example (2 mm)": nib.load(example_t1w())}
    if COLIN.is_file():
        images["real T1w: Colin27 (1 mm)"] = nib.load(COLIN)
    if icbm.available():
        images["real T1w: ICBM152 2009c (1 mm)"] = icbm.brain_extracted(icbm.T1_FILE)
        images["real T2w: ICBM152 2009c (1 mm)"] = icbm.brain_extracted(icbm.T2_FILE)
    guesses = {}
    for label, image in images.items():
        data = np.asarray(image.dataobj, dtype=np.float32)
        guesses[label] = [guess_input_modality(data, image.header.get_zooms()[:3])]
    return guesses


def row(label: str, guesses: list[ModalityGuess]) -> dict:
    """Counts of each guess and each feature's range."""
    counts = {name: sum(g.modality == name for g in guesses) for name in ("T2w", "PD", None)}
    measured = [g.features for g in guesses if g.features is not None]
    ranges = {}
    for feature in FEATURES:
        values = [getattr(f, feature) for f in measured]
        low, high = (min(values), max(values)) if values else (np.nan, np.nan)
        ranges[feature] = f"{low:.2f}" if low == high else f"{low:.2f}-{high:.2f}"
    return {"input": label, "scans": len(guesses), "guessed T2w": counts["T2w"],
            "guessed PD": counts["PD"], "T1-like (fallback)": counts[None], **ranges}  # fmt: skip


def main() -> list[dict]:
    guesses = {**simulated_guesses(), **real_guesses()}
    rows = [row(label, found) for label, found in guesses.items()]
    command = "python benchmarks/exp_modality_guess.py"
    report("modality_guess", rows, {"command": command})
    return rows


if __name__ == "__main__":
    main()
