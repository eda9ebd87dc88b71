"""Controllability: does the synthesized contrast follow a swept prompt value as the physics does?

    .venv/bin/python benchmarks/exp_controllability.py [--subjects 1] [--slices 32] [--points N]
        [--sweeps t2w-te flair-ti t1w-ti] [--voxel-size MM] [--figure]

One virtual subject (or ``--subjects N``) from the packaged simulator, its T1w rendered with the
default protocol (MPRAGE) at the bundled model's training voxel size (2 mm, from the checkpoint's
coverage) as the source. Three sweeps of one prompt value each, the other values of the packaged
default protocol kept:

- T2w (3D TSE "SPACE", TR 3200 ms, variable flip angle): TE;
- FLAIR (3D "SPACE-FLAIR", TR 5000 ms, TE 388 ms, variable flip angle): TI;
- T1w (MPRAGE, TR 2300 ms, TE 2.98 ms, flip angle 9 degrees): TI. The default T1w protocol is an
  MPRAGE, whose contrast is set by TI; the checkpoint records trained TI ranges but no flip-angle
  ranges, so TI is the T1w value whose training range is known.

For each value the bundled model synthesizes the target from the source (the prompt carries the
value) and the simulator renders the same protocol noise-free (the physics truth). In both images
the pure-tissue contrast ratios CSF/WM and GM/WM are measured: mean intensity over voxels whose
tissue fraction (the anatomy's fractions imaged onto the same grid by the same voxel kernel) is
above 0.95, divided by the white-matter mean. Values outside the checkpoint's trained timing range
are marked as extrapolation. Per sweep and ratio the Pearson and Spearman correlations of the
synthesized against the simulated ratios are reported, over all values and over the trained range.

By default the source is cropped to a central axial slab of 32 slices (64 mm, through the
ventricles; one 32-voxel patch deep, so no slower than a thinner slab): about 3 minutes on 2
cores (the whole brain takes about 30 s per synthesis); ``--slices 0`` keeps the whole brain.
Prints two tables, writes benchmarks/results/controllability_bundled.json (one row per sweep
value) and controllability_bundled_correlation.json (with ``--suite``: controllability.json and
controllability_correlation.json, which the README's suite table reads), and with ``--figure``
docs/figures/controllability.png.
``--suite quick|release|FILE`` uses that evaluation suite's BMLIP-conditioned model instead of
the bundled one (and its training voxel size).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from evaluation import add_suite_arguments, prepared_suite, working_voxel_size, write_results
from tumsyn import Synthesizer
from tumsyn.infer.loading import read_pipeline_metadata
from tumsyn.io import Grid, atomic_output
from tumsyn.metadata import ImagingMetadata, default_protocol
from tumsyn.simulate import Anatomy, make_subject, render_on
from tumsyn.simulate.acquisition import acquire
from tumsyn.simulate.render import scan_grid

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
PURE = 0.95  # a voxel is pure tissue above this fraction
RATIOS = {"CSF/WM": "CSF", "GM/WM": "GM"}  # ratio name -> numerator tissue (denominator WM)


@dataclass(frozen=True)
class Sweep:
    """One prompt value swept over ``values`` on a packaged default protocol."""

    key: str  # what --sweeps names
    name: str
    modality: str
    field: str  # the ImagingMetadata field swept: "te", "ti", ...
    values: tuple[float, ...]


#: The sweeps, values in ms: the trained ranges (checkpoint coverage) plus a few values beyond.
SWEEPS = (
    Sweep("t2w-te", "T2w TE", "T2w", "te", (60, 95, 200, 300, 400, 500, 563, 700)),
    Sweep("flair-ti", "FLAIR TI", "FLAIR", "ti", (1500, 1750, 2000, 2250, 2500, 2750, 3000)),
    Sweep("t1w-ti", "T1w TI", "T1w", "ti", (300, 400, 600, 800, 900, 1100, 1300)),
)


def trained_range(coverage: dict, sweep: Sweep) -> tuple[float, float] | None:
    """The sweep's value range in the training data (``None`` when the checkpoint has none)."""
    timing = coverage.get("timings", {}).get(sweep.modality, {}).get(sweep.field)
    return (float(timing[0]), float(timing[1])) if timing else None


def spread(values: tuple[float, ...], points: int) -> tuple[float, ...]:
    """``points`` of ``values`` evenly spaced by index, ends kept: the small runs of the smoke
    test still span the sweep."""
    if points <= 0 or points >= len(values):
        return values
    indices = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
    return tuple(values[i] for i in indices)


def central_slab(image: np.ndarray, affine: np.ndarray, slices: int) -> tuple[np.ndarray, Grid]:
    """The central ``slices`` slices of the third axis and their grid (all when 0): a slab
    through the ventricles keeps all three tissues at a fraction of the synthesis time."""
    if slices <= 0 or slices >= image.shape[2]:
        return image, Grid(image.shape, affine)
    start = (image.shape[2] - slices) // 2
    moved = affine.copy()
    moved[:3, 3] += affine[:3, :3] @ np.array([0.0, 0.0, start])
    crop = np.ascontiguousarray(image[:, :, start : start + slices])
    return crop, Grid(crop.shape, moved)


def pure_masks(anatomy: Anatomy, grid: Grid) -> dict[str, np.ndarray]:
    """Voxels of ``grid`` holding more than :data:`PURE` of one tissue.

    The fractions go through the simulator's own acquisition (voxel kernel, then resampling), so
    a voxel counts as pure exactly when its rendered intensity is one tissue's signal.
    """
    return {
        tissue: acquire(anatomy.fraction(tissue), anatomy.grid, grid) > PURE
        for tissue in ("WM", *RATIOS.values())
    }


def contrast_ratios(image: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean pure-tissue intensity over the white-matter mean, for each of :data:`RATIOS`; NaN
    where a tissue has no pure voxel (a grid coarser than the tissue)."""

    def mean(tissue: str) -> float:
        values = image[masks[tissue]]
        return float(values.mean()) if values.size else float("nan")

    return {name: mean(tissue) / mean("WM") for name, tissue in RATIOS.items()}


def correlation(synthesized: list[float], simulated: list[float]) -> dict[str, float | None]:
    """Pearson and Spearman of synthesized against simulated ratios; ``None`` where undefined
    (fewer than 3 values, or a constant series), so that the JSON holds no NaN."""
    result: dict[str, float | None] = {"pearson": None, "spearman": None}
    if len(synthesized) < 3 or np.ptp(synthesized) == 0 or np.ptp(simulated) == 0:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result["pearson"] = float(stats.pearsonr(synthesized, simulated).statistic)
        result["spearman"] = float(stats.spearmanr(synthesized, simulated).statistic)
    return result


def measure_subject(
    anatomy: Anatomy,
    synthesizer: Synthesizer,
    sweeps: tuple[Sweep, ...],
    *,
    voxel_size: float,
    slices: int,
) -> dict[str, list[dict[str, dict[str, float]]]]:
    """Synthesized and simulated ratios of one subject: per sweep, one entry per value."""
    voxel = (voxel_size,) * 3
    source_protocol = default_protocol("T1w").metadata.replace(voxel_size=voxel)
    full_grid = scan_grid(anatomy, voxel)
    source = render_on(anatomy, source_protocol, full_grid)
    source, grid = central_slab(source, full_grid.affine, slices)
    masks = pure_masks(anatomy, grid)
    measured = {}
    for sweep in sweeps:
        entries = []
        for value in sweep.values:
            target: ImagingMetadata = default_protocol(sweep.modality).metadata.replace(
                voxel_size=voxel, **{sweep.field: float(value)}
            )
            output = synthesizer(source, target, affine=grid.affine)
            if output.shape != grid.shape or not np.allclose(output.affine, grid.affine):
                raise RuntimeError(f"synthesized grid {output.shape} differs from {grid.shape}")
            synthesized = np.asarray(output.dataobj, dtype=np.float32)
            simulated = render_on(anatomy, target, grid)
            entries.append(
                {
                    "synthesized": contrast_ratios(synthesized, masks),
                    "simulated": contrast_ratios(simulated, masks),
                }
            )
        measured[sweep.name] = entries
    return measured


def mean_over_subjects(per_subject: list[dict], sweep: Sweep, index: int, kind: str) -> dict:
    """A value's ratios averaged over the subjects."""
    return {
        name: float(np.mean([m[sweep.name][index][kind][name] for m in per_subject]))
        for name in RATIOS
    }


def summarise(
    per_subject: list[dict], sweeps: tuple[Sweep, ...], coverage: dict
) -> tuple[list[dict], list[dict]]:
    """The per-value rows and the per-sweep correlation rows of the report."""
    rows, correlations = [], []
    for sweep in sweeps:
        span = trained_range(coverage, sweep)
        trained = [span is not None and span[0] <= v <= span[1] for v in sweep.values]
        means = [
            {kind: mean_over_subjects(per_subject, sweep, i, kind)
             for kind in ("synthesized", "simulated")}
            for i in range(len(sweep.values))
        ]  # fmt: skip
        for value, inside, mean in zip(sweep.values, trained, means, strict=True):
            row = {"sweep": sweep.name, "value (ms)": float(value),
                   "range": "trained" if inside else "extrapolation"}  # fmt: skip
            for name in RATIOS:
                row[f"synth {name}"] = round(mean["synthesized"][name], 4)
                row[f"sim {name}"] = round(mean["simulated"][name], 4)
            rows.append(row)
        for name in RATIOS:
            synth = [m["synthesized"][name] for m in means]
            sim = [m["simulated"][name] for m in means]
            every = correlation(synth, sim)
            kept = [i for i, inside in enumerate(trained) if inside]
            inside = correlation([synth[i] for i in kept], [sim[i] for i in kept])
            correlations.append({
                "sweep": sweep.name, "ratio": name,
                "trained range": f"{span[0]:g}..{span[1]:g}" if span else "unknown",
                "n": len(synth), "pearson": _rounded(every["pearson"]),
                "spearman": _rounded(every["spearman"]), "n trained": len(kept),
                "pearson trained": _rounded(inside["pearson"]),
                "spearman trained": _rounded(inside["spearman"]),
            })  # fmt: skip
    return rows, correlations


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def save_figure(path: Path, rows: list[dict], sweeps: tuple[Sweep, ...], coverage: dict) -> None:
    """Both curves per sweep and ratio, the trained range shaded: where they part is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(RATIOS), len(sweeps), figsize=(4.5 * len(sweeps), 3.4 * len(RATIOS)), squeeze=False
    )
    for column, sweep in enumerate(sweeps):
        chosen = [row for row in rows if row["sweep"] == sweep.name]
        values = [row["value (ms)"] for row in chosen]
        span = trained_range(coverage, sweep)
        for line, name in enumerate(RATIOS):
            axis = axes[line][column]
            if span is not None:
                axis.axvspan(*span, color="0.9", label="trained range")
            axis.plot(values, [r[f"sim {name}"] for r in chosen], "o-", color="black",
                      label="simulator (physics)")  # fmt: skip
            axis.plot(values, [r[f"synth {name}"] for r in chosen], "s--", color="tab:red",
                      label="bundled model")  # fmt: skip
            axis.set_title(f"{sweep.name}: {name}", fontsize=10)
            axis.set_xlabel(f"{sweep.field.upper()} (ms)")
            axis.set_ylabel(f"{name} intensity ratio")
            axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def _model(args: argparse.Namespace) -> tuple[Synthesizer, dict]:
    """The bundled model, or with ``--suite`` that suite's BMLIP-conditioned model; and the
    coverage its checkpoint records."""
    if args.suite is None:
        return Synthesizer.from_checkpoint(), read_pipeline_metadata(None)["extra"]["coverage"]
    suite, models, _ = prepared_suite(args)
    path = models.conditioners["bmlip"]
    synthesizer = Synthesizer.from_checkpoint(path, patch_size=suite.evaluation.patch_size)
    return synthesizer, read_pipeline_metadata(path)["extra"]["coverage"]


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment; returns what was reported (rows and correlations)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1, help="virtual subjects (seeds 0..N-1)")
    parser.add_argument("--sweeps", nargs="+", choices=[s.key for s in SWEEPS],
                        default=[s.key for s in SWEEPS], help="which sweeps to run")  # fmt: skip
    parser.add_argument("--slices", type=int, default=32,
                        help="central axial slices of the source (0: whole brain)")  # fmt: skip
    parser.add_argument("--points", type=int, default=0,
                        help="values per sweep, spread over it (0: all)")  # fmt: skip
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="mm; default: the bundled model's training voxel size")  # fmt: skip
    parser.add_argument(
        "--figure", action="store_true", help="write docs/figures/controllability.png"
    )
    add_suite_arguments(parser)
    parser.set_defaults(suite=None)
    args = parser.parse_args(argv)
    if args.subjects < 1:
        parser.error(f"--subjects must be at least 1, got {args.subjects}")

    began = time.perf_counter()
    synthesizer, coverage = _model(args)
    voxel_size = args.voxel_size or working_voxel_size(coverage)
    sweeps = tuple(
        replace(s, values=spread(s.values, args.points)) for s in SWEEPS if s.key in args.sweeps
    )
    per_subject = [
        measure_subject(
            make_subject(seed), synthesizer, sweeps, voxel_size=voxel_size, slices=args.slices
        )
        for seed in range(args.subjects)
    ]
    rows, correlations = summarise(per_subject, sweeps, coverage)
    if args.suite is None:
        report("controllability_bundled", rows)  # not the suite's names: make eval's tables
        print()
        report("controllability_bundled_correlation", correlations)
    else:
        caption = (f"synthesized vs simulated pure-tissue ratios along each sweep, "
                   f"{args.subjects} subject(s) at {voxel_size:g} mm")  # fmt: skip
        for name, content in (("controllability", rows), ("controllability_correlation",
                                                           correlations)):  # fmt: skip
            write_results(name, content, args, caption, experiment="controllability")
    if args.figure:
        path = FIGURES / "controllability.png"
        save_figure(path, rows, sweeps, coverage)
        print(f"figure written to {path}")
    print(f"{args.subjects} subject(s) at {voxel_size:g} mm, {time.perf_counter() - began:.0f} s")
    return {"rows": rows, "correlations": correlations}


if __name__ == "__main__":
    main()
