"""Heterogeneous resolution: synthesis from thick-slice FLAIR (the paper's UK Biobank experiment).

    .venv/bin/python benchmarks/exp_heterogeneous_resolution.py [--subjects 1] [--draws 2]
        [--seed 0] [--orientations axial coronal sagittal] [--slices 32] [--voxel-size MM]

One virtual subject (or ``--subjects N``) from the packaged simulator. The *fine grid* is the
subject's field of view at the bundled model's training voxel size (2 mm isotropic, from the
checkpoint's coverage; the model warns outside it), cropped to a central axial slab of
``--slices`` slices (0: whole brain). The FLAIR of the packaged default protocol is rendered
noise-free on it, then degraded into a thick-slice acquisition:

- orientation axial, coronal or sagittal: the thick axis is z, y or x (array axis 2, 1, 0 of
  the simulator's RAS-aligned grid); the two in-plane axes keep the fine voxel size;
- a (factor, FWHM) draw per orientation from a seeded ``numpy.random.Generator``: the thick
  voxel is ``factor`` fine voxels (factor uniform in [1, 3]) and before sampling the image is
  blurred along the thick axis by a Gaussian of FWHM uniform in [1, 3] *fine-grid voxels*
  (2-6 mm at 2 mm);
- the blurred image is sampled (trilinear, tumsyn's ``resample``) at the voxel centres of the
  thick grid, ``tumsyn.io.target_grid`` of the fine grid at the thick voxel size (same field
  of view, same centre). The simulator's own acquisition model (``simulate.acquisition``) is
  not used for this step: its point-spread function is fixed by the voxel size (a box of the
  slice thickness for 2D slices), so it cannot carry the drawn FWHM that this experiment
  varies independently of the factor.

Compared, all on the *comparison grid*, the grid the synthesizer returns (``target_grid`` of the
thick grid at the fine voxel size; it equals the fine grid unless the thick axis length rounds
to one voxel more or less, in which case the truths are rendered by the simulator directly on
it, so no truth is ever interpolated):

- tumsyn FLAIR->T1w (default T1w protocol, fine voxel size) against the true T1w: cross-contrast
  synthesis from a thick-slice input;
- tumsyn FLAIR->FLAIR at the fine voxel size against the true FLAIR: super-resolution, same
  contrast;
- trilinear and cubic B-spline interpolation of the thick FLAIR (``scipy.ndimage
  .map_coordinates``, order 1 and 3, edges extended) against the true FLAIR: the
  resolution-only references. The B-spline output is clipped at 0 (magnitude images, as the
  synthesizer's output is), so that its ringing does not move the metrics' normalisation.

Metrics: the paper's PSNR and SSIM (``tumsyn.evaluate.metrics``) inside the truth's non-zero
mask. The summary gives per method the mean and the paper's bootstrap interval
(``tumsyn.evaluate.report.bootstrap_interval``, seeded by ``--seed``) over subjects, orientations
and draws. Defaults (1 subject, 3 orientations, 2 draws, 32 slices: 12 syntheses) take a few
minutes on 2 cores. Writes benchmarks/results/heterogeneous_resolution_cases.json (one row per
input and method) and heterogeneous_resolution.json (the summary).

With ``--suite quick|release|FILE`` the models are that evaluation suite's (its BMLIP-conditioned
model for the tumsyn rows) and a third synthesis row is added: ``resolution-only FLAIR->FLAIR``,
the suite's task-specific FLAIR->FLAIR model (the paper's ArSSR role: the same network trained
only to change resolution, on the same data).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from evaluation import add_suite_arguments, prepared_suite, working_voxel_size, write_results
from tumsyn import Synthesizer
from tumsyn.evaluate.experiments import summarise
from tumsyn.evaluate.metrics import psnr, ssim
from tumsyn.infer.loading import read_pipeline_metadata
from tumsyn.io import Grid, target_grid
from tumsyn.metadata import ImagingMetadata, default_protocol
from tumsyn.resample import grid_positions, resample
from tumsyn.simulate import Anatomy, make_subject, render_on
from tumsyn.simulate.render import scan_grid

#: Orientation -> the array axis of the simulator's RAS-aligned grid that is acquired thick.
ORIENTATIONS = {"axial": 2, "coronal": 1, "sagittal": 0}
FACTOR_RANGE = (1.0, 3.0)  # thick voxel side, in fine voxels
FWHM_RANGE = (1.0, 3.0)  # slice-profile blur, in fine voxels
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_INTERPOLATION_ORDER = {"trilinear": 1, "B-spline": 3}
#: The paper's SSIM window (Gaussian, sigma 1.5) spans 11 voxels: no thinner slab can be scored.
MIN_SLICES = 11


@dataclass(frozen=True)
class Degradation:
    """One thick-slice acquisition: which axis is thick, by how much, with how much blur."""

    orientation: str
    factor: float  # thick voxel side / fine voxel side
    fwhm: float  # Gaussian blur along the thick axis, in fine voxels (0: none)


def draw_degradations(
    rng: np.random.Generator, orientations: list[str], draws: int
) -> list[Degradation]:
    """``draws`` (factor, FWHM) pairs per orientation, all drawn here from one generator so the
    seed alone fixes every input (the factor first, then the FWHM, orientation by orientation)."""
    drawn = []
    for orientation in orientations:
        for _ in range(draws):
            factor = float(rng.uniform(*FACTOR_RANGE))
            fwhm = float(rng.uniform(*FWHM_RANGE))
            drawn.append(Degradation(orientation, round(factor, 3), round(fwhm, 3)))
    return drawn


def central_slab(grid: Grid, slices: int) -> Grid:
    """The central ``slices`` slices of ``grid``'s third axis (all when 0): a slab through the
    ventricles keeps every tissue at a fraction of the synthesis time."""
    if slices <= 0 or slices >= grid.shape[2]:
        return grid
    start = (grid.shape[2] - slices) // 2
    return grid.box((0, 0, start), (grid.shape[0], grid.shape[1], slices))


def thick_grid(fine: Grid, orientation: str, factor: float) -> Grid:
    """The acquisition grid: ``fine``'s field of view with the orientation's axis ``factor``
    times coarser and the in-plane axes untouched."""
    voxel = list(fine.voxel_size)
    voxel[ORIENTATIONS[orientation]] *= factor
    return target_grid(fine, voxel)


def degrade(image: np.ndarray, fine: Grid, degradation: Degradation) -> tuple[np.ndarray, Grid]:
    """The thick-slice input: Gaussian slice profile along the thick axis, then sampling at the
    thick voxel centres. Factor 1 without blur returns ``image`` itself, on ``fine``."""
    axis = ORIENTATIONS[degradation.orientation]
    blurred = np.asarray(image, dtype=np.float32)
    if degradation.fwhm > 0:
        sigma = degradation.fwhm * FWHM_TO_SIGMA
        blurred = ndimage.gaussian_filter1d(blurred, sigma, axis=axis, mode="constant")
    grid = thick_grid(fine, degradation.orientation, degradation.factor)
    return resample(blurred, fine, grid), grid


def interpolate(image: np.ndarray, source: Grid, target: Grid, order: int) -> np.ndarray:
    """``image`` (on ``source``) at ``target``'s voxel centres by a B-spline of ``order``; edges
    extended, since the thick grid's outer centres lie inside the target's field of view."""
    positions = grid_positions(source, target)
    values = ndimage.map_coordinates(image, positions, order=order, mode="nearest")
    return np.clip(values, 0.0, None).astype(np.float32)


def scores(truth: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """The paper's PSNR and SSIM inside the truth's non-zero mask."""
    mask = truth > 0
    return {"psnr": psnr(truth, image, mask), "ssim": ssim(truth, image, mask)}


#: Synthesis method -> (which model, the target modality asked for); ``resolution-only`` only
#: with ``--suite`` (that suite's FLAIR->FLAIR task-specific model, the paper's ArSSR role).
SYNTHESIS = {
    "tumsyn FLAIR->T1w": ("tumsyn", "T1w"),
    "tumsyn FLAIR->FLAIR": ("tumsyn", "FLAIR"),
    "resolution-only FLAIR->FLAIR": ("resolution-only", "FLAIR"),
}


def evaluate_input(
    anatomy: Anatomy,
    synthesizers: dict[str, Synthesizer],
    degradation: Degradation,
    *,
    fine: Grid,
    protocols: dict[str, ImagingMetadata],
) -> tuple[dict[str, dict[str, float]], Grid, Grid]:
    """Scores of every method for one thick-slice input; also its grid and the comparison grid.

    The FLAIR truth is rendered on ``fine`` and degraded; each method's output and each truth
    then share the synthesizer's output grid (see the module docstring). ``synthesizers`` maps
    ``tumsyn`` (and optionally ``resolution-only``) to a model.
    """
    flair = render_on(anatomy, protocols["FLAIR"], fine)
    thick, input_grid = degrade(flair, fine, degradation)
    outputs: dict[str, np.ndarray] = {}
    compared: Grid | None = None
    for method, (model, modality) in SYNTHESIS.items():
        if model not in synthesizers:
            continue
        output = synthesizers[model](thick, protocols[modality], affine=input_grid.affine)
        compared = Grid(output.shape, output.affine)
        outputs[method] = np.asarray(output.dataobj, dtype=np.float32)
    expected = target_grid(input_grid, fine.voxel_size)
    if compared.shape != expected.shape or not np.allclose(compared.affine, expected.affine):
        raise RuntimeError(f"synthesized grid {compared.shape} is not the target grid")
    for method, order in _INTERPOLATION_ORDER.items():
        outputs[method] = interpolate(thick, input_grid, compared, order)
    truths = {modality: render_on(anatomy, protocols[modality], compared) for modality in protocols}
    return (
        {method: scores(truths[truth_of(method)], output) for method, output in outputs.items()},
        input_grid,
        compared,
    )


def truth_of(method: str) -> str:
    """The contrast a method's output is compared with."""
    return SYNTHESIS[method][1] if method in SYNTHESIS else "FLAIR"


def _finite(value: float, digits: int) -> float | None:
    """``value`` rounded; ``None`` for an infinite PSNR (identical images), so JSON stays JSON."""
    return round(value, digits) if math.isfinite(value) else None


def _models(args: argparse.Namespace) -> tuple[dict[str, Synthesizer], dict]:
    """The bundled model, or with ``--suite`` that suite's tumsyn and resolution-only models."""
    if args.suite is None:
        return {"tumsyn": Synthesizer.from_checkpoint()}, read_pipeline_metadata(None)["extra"]
    suite, models, _ = prepared_suite(args)
    paths = {"tumsyn": models.conditioners["bmlip"]}
    if "FLAIR->FLAIR" in models.task_specific:
        paths["resolution-only"] = models.task_specific["FLAIR->FLAIR"]
    synthesizers = {
        name: Synthesizer.from_checkpoint(path, patch_size=suite.evaluation.patch_size)
        for name, path in paths.items()
    }
    return synthesizers, read_pipeline_metadata(paths["tumsyn"])["extra"]


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment; returns what was reported (rows and summary)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1, help="virtual subjects (seeds 0..N-1)")
    parser.add_argument("--draws", type=int, default=2, help="(factor, FWHM) draws per orientation")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draws and the bootstrap")
    parser.add_argument("--orientations", nargs="+", choices=list(ORIENTATIONS),
                        default=list(ORIENTATIONS), help="thick axis z, y or x")  # fmt: skip
    parser.add_argument("--slices", type=int, default=32,
                        help="central axial slices of the fine grid (0: whole brain)")  # fmt: skip
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="fine grid, mm (default: the trained voxel size)")  # fmt: skip
    add_suite_arguments(parser)
    parser.set_defaults(suite=None)
    args = parser.parse_args(argv)
    for name in ("subjects", "draws"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if 0 < args.slices < MIN_SLICES:
        parser.error(f"--slices must be 0 or at least {MIN_SLICES} (SSIM), got {args.slices}")

    began = time.perf_counter()
    synthesizers, extra = _models(args)
    voxel_size = args.voxel_size or working_voxel_size(extra["coverage"])
    voxel = (voxel_size,) * 3
    protocols = {
        m: default_protocol(m).metadata.replace(voxel_size=voxel) for m in ("T1w", "FLAIR")
    }
    degradations = draw_degradations(
        np.random.default_rng(args.seed), args.orientations, args.draws
    )
    rows = []
    for subject in range(args.subjects):
        anatomy = make_subject(subject)
        fine = central_slab(scan_grid(anatomy, voxel), args.slices)
        for degradation in degradations:
            result, input_grid, compared = evaluate_input(
                anatomy, synthesizers, degradation, fine=fine, protocols=protocols
            )
            for method, values in result.items():
                rows.append({
                    "subject": subject, "orientation": degradation.orientation,
                    "factor": degradation.factor, "fwhm (vox)": degradation.fwhm,
                    "input voxel (mm)": [round(v, 3) for v in input_grid.voxel_size],
                    "grid": list(compared.shape), "method": method, "truth": truth_of(method),
                    "psnr": _finite(values["psnr"], 2), "ssim": _finite(values["ssim"], 4),
                })  # fmt: skip
    summary = summarise(rows, by=("method", "truth"), metrics=("psnr", "ssim"), seed=args.seed,
                        overall=None)  # fmt: skip
    caption = (f"thick-slice FLAIR inputs (factor {FACTOR_RANGE}, FWHM {FWHM_RANGE} voxels, "
               f"{', '.join(args.orientations)}), {args.subjects} subject(s), fine grid "
               f"{voxel_size:g} mm; mean [bootstrap 95 % interval]")  # fmt: skip
    if args.suite is None:
        report("heterogeneous_resolution_cases", rows)
        report("heterogeneous_resolution", summary, {"caption": caption})
    else:
        write_results(
            "heterogeneous_resolution_cases",
            rows,
            args,
            caption,
            experiment="heterogeneous_resolution",
        )
        write_results(
            "heterogeneous_resolution",
            summary,
            args,
            caption,
            experiment="heterogeneous_resolution",
        )
    elapsed = time.perf_counter() - began
    print(f"{args.subjects} subject(s), {len(degradations)} input(s) each, fine grid "
          f"{voxel_size:g} mm, {elapsed:.0f} s")  # fmt: skip
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
