"""A real single-subject check: every contrast synthesized from Colin27's real 1 mm T1w.

    make colin27    # once: Colin27 from Debian's mricron-data package into data/colin27/
    .venv/bin/python benchmarks/exp_colin27.py [--checkpoint CKPT] [--sizes 1 2] [--montage]
    .venv/bin/python benchmarks/exp_colin27.py --input example    # the bundled 2 mm MNI152 T1w
    .venv/bin/python benchmarks/exp_colin27.py --input example --modalities FLAIR --sizes 2

Colin27 (``ch2bet.nii.gz``: one subject scanned 27 times and averaged, brain-extracted, 1 mm;
Holmes CJ et al., J Comput Assist Tomogr 22:324, 1998) is a real T1w that no tumsyn model was
trained or tuned on; the repository does not ship it (``make colin27`` extracts it from the
Debian package, licence in data/colin27/copyright). The script:

1. segments it into CSF, GM and WM with Atropos (``tumsyn.evaluate.morphometry``, T1w ordering);
2. keeps *pure* voxels: each class eroded by one voxel and at least 2 mm inside the brain's edge;
3. synthesizes each of the seven modalities (packaged default protocol, 3 T) at each output voxel
   size (default 1 and 2 mm) with the model (default: the bundled one);
4. measures pure-tissue GM/WM and CSF/WM ratios of each output (on a 2 mm output, voxels whose
   pure-class fraction is above 0.95) and checks them against real images of the protocol's
   family (``tumsyn.simulate.contrast``: the textbook ordering, and the range).

Writes benchmarks/results/colin27.json and, with ``--montage``, docs/figures/colin27_montage.png.
``--input example`` runs the same check on the bundled example (the real-derived MNI152 2009a T1w,
brain-extracted, 2 mm; segmented the same way) into benchmarks/results/example_contrast.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn import Synthesizer
from tumsyn.evaluate.metrics import tissue_means
from tumsyn.evaluate.morphometry import LABELS, segment_tissues
from tumsyn.examples import example_t1w
from tumsyn.io import Grid, load_nifti
from tumsyn.metadata import MODALITIES, default_protocol
from tumsyn.simulate.acquisition import acquire
from tumsyn.simulate.contrast import expected_contrast, ratio_problems

ROOT = Path(__file__).resolve().parents[1]
COLIN = ROOT / "data" / "colin27" / "ch2bet.nii.gz"
MONTAGE = ROOT / "docs" / "figures" / "colin27_montage.png"
EDGE_MM = 2.0
PURE = 0.95


def pure_classes(labels: np.ndarray, brain: np.ndarray, voxel_mm: float) -> dict[str, np.ndarray]:
    """Each tissue class eroded by one voxel, and at least ``EDGE_MM`` inside the brain."""
    inside = ndimage.binary_erosion(brain, iterations=max(1, round(EDGE_MM / voxel_mm)))
    return {
        name: ndimage.binary_erosion(labels == label) & inside for name, label in LABELS.items()
    }


def ratios_on(image, grid: Grid, pure: dict[str, np.ndarray], colin: Grid) -> dict[str, float]:
    """Pure-tissue GM/WM and CSF/WM of ``image`` (on ``grid``): the pure maps carried to the grid
    by the simulator's acquisition model, voxels above ``PURE`` of one class."""
    maps = {
        name: (acquire(mask.astype(np.float32), colin, grid) > PURE).astype(np.float32)
        for name, mask in pure.items()
    }
    means = tissue_means(np.asarray(image, dtype=np.float64), maps)
    return {"GM/WM": means["GM"] / means["WM"], "CSF/WM": means["CSF"] / means["WM"]}


def check(modality: str, ratios: dict[str, float]) -> tuple[str, str, str]:
    """(real range of GM/WM, of CSF/WM, verdict) for the default protocol's family at 3 T."""
    expected = expected_contrast(default_protocol(modality).metadata)
    problems = ratio_problems(expected, ratios)
    ordered = not any(problem.startswith("order") for problem in problems)
    verdict = "ordering ok" if ordered else "ORDERING WRONG"
    if len(problems) > (0 if ordered else 1):
        verdict += ", outside range"
    return "{:g}-{:g}".format(*expected.gm_wm), "{:g}-{:g}".format(*expected.csf_wm), verdict


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="pipeline (default: bundled)")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1.0, 2.0], help="output mm")
    parser.add_argument(
        "--input", default=str(COLIN), help="a brain-extracted T1w, or `example` (bundled)"
    )
    parser.add_argument(
        "--modalities",
        nargs="+",
        default=list(MODALITIES),
        choices=MODALITIES,
        help="contrasts to synthesize (default: every one)",
    )
    parser.add_argument("--montage", action="store_true", help=f"write {MONTAGE.name}")
    args = parser.parse_args(argv)
    is_example = args.input == "example"
    if is_example and args.montage:
        parser.error(f"--montage draws {MONTAGE.name}, of Colin27 only")
    args.input = example_t1w() if is_example else Path(args.input)
    if not args.input.is_file():
        sys.exit(f"exp_colin27: {args.input} is missing; run `make colin27` first")
    volume = load_nifti(args.input)
    colin = Grid(volume.data.shape, volume.affine)
    brain = volume.data > 0
    labels = segment_tissues(volume.data, brain, "T1w", spacing=volume.voxel_size)
    pure = pure_classes(labels, brain, min(volume.voxel_size))
    synthesizer = Synthesizer.from_checkpoint(args.checkpoint)
    rows, shown = [], [("T1w (real)", volume.data, volume.affine)]
    source = {"T1w (real)": ratios_on(volume.data, colin, pure, colin)}
    for modality in args.modalities:
        for size in args.sizes:
            output = synthesizer(args.input, modality, voxel_size=(size,) * 3, input_modality="T1w")
            grid = Grid(output.shape, output.affine)
            ratios = ratios_on(np.asarray(output.dataobj), grid, pure, colin)
            gm_range, csf_range, verdict = check(modality, ratios)
            rows.append({
                "modality": modality, "output (mm)": size,
                "GM/WM": round(ratios["GM/WM"], 3), "real GM/WM": gm_range,
                "CSF/WM": round(ratios["CSF/WM"], 3), "real CSF/WM": csf_range,
                "check": verdict,
            })  # fmt: skip
            if size == args.sizes[0]:
                shown.append((modality, np.asarray(output.dataobj), output.affine))
    name = args.checkpoint or "the bundled model"
    subject = ("The bundled example (MNI152 2009a T1w, 2 mm)" if is_example
               else "Colin27 real T1w" if args.input == COLIN else args.input.name)  # fmt: skip
    caption = (f"{subject} (pure-tissue GM/WM {source['T1w (real)']['GM/WM']:.2f}, CSF/WM "
               f"{source['T1w (real)']['CSF/WM']:.2f}) -> every contrast with {name}")  # fmt: skip
    command = (
        "python benchmarks/exp_colin27.py"
        + (" --input example" if is_example else "")
        + (f" --checkpoint {args.checkpoint}" if args.checkpoint else "")
        + (
            f" --modalities {' '.join(args.modalities)}"
            if args.modalities != list(MODALITIES)
            else ""
        )
    )
    report("example_contrast" if is_example else "colin27", rows,
           {"command": command, "caption": caption})  # fmt: skip
    failures = sum(not row["check"].startswith("ordering ok") for row in rows)
    print(f"{len(rows) - failures} of {len(rows)} outputs have the textbook ordering")
    if args.montage:
        from tumsyn.figures import save_montage

        save_montage(MONTAGE, shown, title=f"Colin27 (real T1w) -> synthesized, {name}")
        print(f"montage: {MONTAGE}")
    return rows


if __name__ == "__main__":
    main()
