"""Calibration of the MRI simulator against real data: the MNI152 2009a T1 template.

    .venv/bin/python benchmarks/calibrate_simulator.py

The unperturbed template anatomy (``three_tissue_anatomy()``: the template's own GM/WM/CSF maps,
dura and sinuses back in CSF, no deformation, lesions or jitter) is rendered on the template grid
with two T1-weighted protocols and compared, inside the template's brain mask, with the real T1
template that nilearn ships (an average of many registered scans of real subjects):

- ``mprage 3T``: the packaged 3 T Siemens MPRAGE (library protocols: TR 2300, TE 2.98, TI 900,
  FA 9), the typical T1w protocol of today;
- ``gre 1.5T``: an ICBM-like 1.5 T spoiled gradient echo (Philips, TR 18, TE 10, FA 30, 1 mm): the
  ICBM152 source scans were T1-weighted gradient echoes at 1.5 T, so this is the like-for-like one.

Metrics: PSNR and SSIM after the paper's normalisation (``tumsyn.evaluate``: min-max in the mask,
99.5th percentile as the maximum), and the tissue contrast ratios GM/WM and CSF/WM: mean intensity
in voxels whose template fraction of that tissue exceeds 0.9, after the paper's normalisation and
raw (zero signal black, as in magnitude images; the template is 0 outside the brain).

Fits, per protocol; T1 factors are bounded to the published spread (1 +- PUBLISHED_SPREAD):

- ``T1 + blur, paper MSE`` (the issue's fit): factors on the T1 of GM, WM and CSF and the FWHM
  (mm, [0, 3]) of an extra Gaussian blur of the rendered image, minimising the mean squared error
  of the normalised images in the mask (on every other voxel along each axis; the reported numbers
  are at full resolution). The blur stands for the averaging of many registered scans in the
  template; it is part of the comparison, not of the simulator.
- ``T1, tissue ratios``: the T1 factors that match the template's raw GM/WM and CSF/WM ratios
  (no blur, no min-max normalisation).
- ``free signals + blur, paper MSE`` (diagnostic, any protocol): GM/WM and CSF/WM signal ratios
  unconstrained: the best PSNR this three-class anatomy can reach.

Prints three tables (metrics per protocol and stage; fitted parameters; residuals by region),
writes them to benchmarks/results/calibrate_simulator{,_fit,_residuals}.json, and the figures
docs/figures/calibration_slices.png and docs/figures/calibration_histograms.png. About a minute on
two cores.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from icbm import t1w_protocol
from tumsyn.evaluate import normalise, psnr, ssim
from tumsyn.figures import save_montage
from tumsyn.io import atomic_output
from tumsyn.metadata import ImagingMetadata
from tumsyn.metadata.protocols import load_protocols
from tumsyn.simulate.anatomy import Anatomy, template_anatomy
from tumsyn.simulate.render import INTENSITY_SCALE, render_on
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.template import load_template
from tumsyn.simulate.tissues import PUBLISHED_SPREAD, TISSUES, tissue_properties

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
FITTED = ("GM", "WM", "CSF")  # the tissues of the template anatomy
PURE = 0.9  # a voxel is "pure" tissue above this fraction
MAX_BLUR_MM = 3.0
MAX_SIGNAL_RATIO = 1.5  # bound of the unconstrained signal ratios
PRIOR_WEIGHT = 1e-4  # pull of the T1 factors towards 1 (see fit_model)
BINS = np.linspace(0.0, 1.0, 101)
# Deep grey nuclei (MNI mm, both hemispheres): 5 mm spheres for the residual table.
NUCLEI = {"thalamus": (11, -18, 8), "caudate": (13, 12, 10), "putamen": (25, 2, 0)}
NUCLEUS_RADIUS_MM = 5.0
EDGE_MM = 2.0  # voxels this close to the mask boundary form the "mask edge" region
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def protocols() -> dict[str, ImagingMetadata]:
    """The two protocols compared: packaged 3 T MPRAGE, ICBM-like 1.5 T spoiled gradient echo."""
    (mprage,) = (
        p.metadata
        for p in load_protocols("library")
        if p.name == "mprage" and p.metadata.modality == "T1w"
    )
    return {"mprage 3T": mprage, "gre 1.5T": t1w_protocol()}


def _t1_jitter(base: dict[str, np.ndarray], factors) -> dict[str, np.ndarray]:
    jitter = {name: np.array(value, dtype=float) for name, value in base.items()}
    for tissue, factor in zip(FITTED, factors, strict=True):
        jitter["t1"][TISSUES.index(tissue)] = factor
    return jitter


def with_t1_factors(anatomy: Anatomy, factors) -> Anatomy:
    """``anatomy`` whose T1 of GM, WM and CSF is scaled by ``factors`` (via its tissue jitter)."""
    jitter = _t1_jitter(anatomy.parameters.jitter, factors)
    parameters = dataclasses.replace(anatomy.parameters, jitter=jitter)
    return dataclasses.replace(anatomy, parameters=parameters)


def three_tissue_anatomy() -> Anatomy:
    """The template anatomy with the template's own three maps: dura and sinuses back in CSF.

    Why: the dura is unmixed from this very T1 (``tumsyn.simulate.template``), so fitting the
    simulator to the T1 with it would be circular, and its and the sinuses' fixed signals would
    break the fits' model, which is linear in the signals of GM, WM and CSF alone.
    """
    anatomy = template_anatomy()
    fractions = anatomy.fractions.copy()
    csf = TISSUES.index("CSF")
    for tissue in TISSUES:
        if tissue not in FITTED:
            fractions[csf] += fractions[TISSUES.index(tissue)]
            fractions[TISSUES.index(tissue)] = 0.0
    return dataclasses.replace(anatomy, fractions=fractions)


def t1_values(metadata: ImagingMetadata, factors) -> np.ndarray:
    """T1 (ms) of GM, WM and CSF at the protocol's field strength, scaled by ``factors``."""
    t1 = tissue_properties(metadata.field_strength).t1
    return np.array([t1[TISSUES.index(t)] for t in FITTED]) * np.asarray(factors)


def signals(metadata: ImagingMetadata, factors) -> np.ndarray:
    """Signal of pure GM, WM and CSF under a protocol, their T1 scaled by ``factors``."""
    ones = {name: np.ones(len(TISSUES)) for name in ("t1", "t2", "t2star", "pd")}
    properties = tissue_properties(metadata.field_strength, jitter=_t1_jitter(ones, factors))
    per_tissue = signal(properties, metadata)
    return np.array([per_tissue[TISSUES.index(t)] for t in FITTED])


def blurred(image: np.ndarray, fwhm_mm: float, voxel_size, mask: np.ndarray) -> np.ndarray:
    """``image`` convolved with a Gaussian of ``fwhm_mm`` (zero outside the mask), re-masked."""
    if fwhm_mm <= 0.0:
        return image
    sigma = [fwhm_mm * _FWHM_TO_SIGMA / size for size in voxel_size]
    smooth = ndimage.gaussian_filter(image, sigma, mode="constant")
    return np.where(mask, smooth, np.float32(0))


def simulate(anatomy, metadata, factors, fwhm_mm, mask) -> np.ndarray:
    """The rendered image (``render_on``) with T1 factors, plus the extra comparison blur."""
    image = render_on(with_t1_factors(anatomy, factors), metadata, anatomy.grid)
    return blurred(image, fwhm_mm, anatomy.grid.voxel_size, mask)


def linear_image(anatomy, weights, fwhm_mm, mask) -> np.ndarray:
    """``sum_t weights_t f_t``, blurred: the rendered image for any GM, WM, CSF signals."""
    maps = np.stack([anatomy.fraction(t) for t in FITTED])
    image = np.tensordot(np.asarray(weights, dtype=np.float32), maps, axes=1)
    return blurred(np.where(mask, image, np.float32(0)), fwhm_mm, anatomy.grid.voxel_size, mask)


def check_linear(anatomy, metadata, mask, image: np.ndarray) -> None:
    """The fit's linear model must reproduce ``render_on`` on the template grid.

    The render is ``|sum_t S_t f_t|`` with signed signals ``S_t`` (inversion recovery); it is
    linear in them, as the fits assume, only if no tissue signal is negative anywhere in the
    bounds of the T1 factors (each tissue's signal depends only on its own T1).
    """
    spread = np.linspace(1.0 - PUBLISHED_SPREAD, 1.0 + PUBLISHED_SPREAD, 61)
    lowest = min(float(signals(metadata, np.full(len(FITTED), f)).min()) for f in spread)
    if lowest < 0.0:
        raise RuntimeError(f"a tissue signal is negative within the fitted bounds ({lowest:g})")
    weights = signals(metadata, np.ones(len(FITTED))) * INTENSITY_SCALE
    error = float(np.abs(linear_image(anatomy, weights, 0.0, mask) - image).max())
    if error > 1e-3 * float(image.max()):
        raise RuntimeError(f"render_on is no longer linear in the tissue signals ({error:g})")


def ratios(image: np.ndarray, mask: np.ndarray, pure: dict[str, np.ndarray]) -> dict[str, str]:
    """Mean intensity of pure GM and CSF relative to pure WM, normalised and raw.

    Normalised: after the paper's min-max normalisation (the black point is the mask minimum).
    Raw: the image as it is (zero signal is black, as in MR magnitude images).
    """
    values = {}
    for kind, scaled in (("", normalise(image, mask)), ("raw ", image)):
        means = {tissue: float(scaled[where].mean()) for tissue, where in pure.items()}
        values[f"{kind}GM/WM"] = f"{means['GM'] / means['WM']:.3f}"
        values[f"{kind}CSF/WM"] = f"{means['CSF'] / means['WM']:.3f}"
    return values


def metrics(reference, image, mask, pure) -> dict[str, str]:
    return {
        "PSNR": f"{psnr(reference, image, mask):.2f}",
        "SSIM": f"{ssim(reference, image, mask):.4f}",
        **ratios(image, mask, pure),
    }


def _scaled(image: np.ndarray) -> np.ndarray:
    """Mask voxels normalised the paper's way (min to 0, 99.5th percentile to 1, clipped)."""
    low, high = image.min(), np.percentile(image, 99.5)
    return np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)


def fit_model(
    anatomy: Anatomy,
    reference: np.ndarray,
    mask: np.ndarray,
    weights: Callable[[np.ndarray], np.ndarray],
    start: list[float],
    bounds: list[tuple[float, float]],
    prior: Callable[[np.ndarray], float] = lambda x: 0.0,
) -> tuple[np.ndarray, float, float]:
    """Fit parameters (giving GM, WM, CSF signals via ``weights``) and the blur FWHM.

    Objective: MSE after the paper's normalisation. On the template grid the rendered image is
    linear in the tissue signals, ``sum_t S_t f_t`` (``f_t`` the fraction maps; the render's
    magnitude changes nothing while no ``S_t`` is negative), and so is its blur; the fit uses
    that (checked against ``render_on``, signs included, in :func:`main`) on every other voxel
    of the mask along each axis. For each blur the parameters are fitted with L-BFGS-B; the blur
    with a coarse scan, then bounded Brent. The normalisation removes the scale, so three T1
    factors act through two signal ratios: one direction is not fixed by the data, and ``prior``
    (a weak pull towards the tabulated values) picks the smallest change along it. Returns the
    parameters, the FWHM and the MSE.
    """
    voxels = np.zeros_like(mask)
    voxels[::2, ::2, ::2] = True
    voxels &= mask
    target = _scaled(reference[voxels].astype(np.float64))
    fractions = [anatomy.fraction(t) for t in FITTED]

    def cost(image: np.ndarray) -> float:
        return float(np.mean((_scaled(image) - target) ** 2))

    def best(fwhm: float) -> tuple[float, np.ndarray]:
        maps = np.stack(
            [blurred(f, fwhm, anatomy.grid.voxel_size, mask)[voxels] for f in fractions]
        ).astype(np.float64)
        result = optimize.minimize(
            lambda x: cost(weights(x) @ maps) + prior(x), start, method="L-BFGS-B", bounds=bounds
        )
        return cost(weights(result.x) @ maps), result.x

    coarse = np.linspace(0.0, MAX_BLUR_MM, 7)
    costs = [best(fwhm)[0] for fwhm in coarse]
    i = int(np.argmin(costs))
    result = optimize.minimize_scalar(
        lambda fwhm: best(fwhm)[0],
        bounds=(coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]),
        method="bounded",
        options={"xatol": 0.01},
    )
    fwhm = float(result.x) if result.fun < costs[i] else float(coarse[i])
    error, parameters = best(fwhm)
    return parameters, fwhm, error


def _log_prior(x: np.ndarray) -> float:
    return PRIOR_WEIGHT * float(np.sum(np.log(x) ** 2))


def fit_t1(anatomy, metadata, reference, mask):
    """T1 factors of GM, WM, CSF within the published spread, and the blur (paper's MSE)."""
    bounds = [(1.0 - PUBLISHED_SPREAD, 1.0 + PUBLISHED_SPREAD)] * 3
    weights = lambda x: signals(metadata, x)  # noqa: E731
    return fit_model(anatomy, reference, mask, weights, [1.0] * 3, bounds, _log_prior)


def fit_ratios(anatomy, metadata, reference, pure):
    """T1 factors of GM, WM, CSF matching the template's raw pure-tissue ratios (no blur).

    The simulated mean of a pure region is linear in the tissue signals (mean fractions there
    times the signals), so the fit is exact and cheap. Objective: squared log-ratio errors of
    GM/WM and CSF/WM, plus the weak pull towards the tabulated values (two ratios, three
    factors). Returns the factors and the objective.
    """
    means = {t: float(reference[where].mean()) for t, where in pure.items()}
    target = np.log([means["GM"] / means["WM"], means["CSF"] / means["WM"]])
    fractions = np.array(
        [[float(anatomy.fraction(t)[where].mean()) for t in FITTED] for where in pure.values()]
    )  # rows: pure region of GM, WM, CSF; columns: tissue fractions there

    def error(factors: np.ndarray) -> float:
        region = fractions @ signals(metadata, factors)
        return float(np.sum((np.log(region[[0, 2]] / region[1]) - target) ** 2))

    bounds = [(1.0 - PUBLISHED_SPREAD, 1.0 + PUBLISHED_SPREAD)] * 3
    result = optimize.minimize(
        lambda x: error(x) + _log_prior(x), np.ones(3), method="L-BFGS-B", bounds=bounds
    )
    return result.x, error(result.x)


def fit_free(anatomy, reference, mask):
    """GM/WM and CSF/WM signal ratios unconstrained, and the blur, for the paper's MSE."""
    return fit_model(
        anatomy,
        reference,
        mask,
        lambda x: np.array([x[0], 1.0, x[1]]),
        [0.7, 0.3],
        [(0.0, MAX_SIGNAL_RATIO)] * 2,
    )


def regions(anatomy: Anatomy, mask: np.ndarray) -> dict[str, np.ndarray]:
    """A partition of the mask: edge, deep grey nuclei, pure GM/WM/CSF, mixed voxels."""
    depth = ndimage.distance_transform_edt(mask, sampling=anatomy.grid.voxel_size)
    edge = mask & (depth < EDGE_MM)
    ijk = np.indices(mask.shape).reshape(3, -1)
    xyz = (anatomy.grid.affine[:3, :3] @ ijk + anatomy.grid.affine[:3, 3:]).reshape(3, *mask.shape)
    nuclei = np.zeros_like(mask)
    for x, y, z in NUCLEI.values():
        for side in (1, -1):
            distance = (xyz[0] - side * x) ** 2 + (xyz[1] - y) ** 2 + (xyz[2] - z) ** 2
            nuclei |= distance < NUCLEUS_RADIUS_MM**2
    nuclei &= mask & ~edge
    parts = {f"mask edge (< {EDGE_MM:g} mm)": edge, "deep grey nuclei": nuclei}
    rest = mask & ~edge & ~nuclei
    for tissue in FITTED:
        parts[f"pure {tissue} (> {PURE:g})"] = rest & (anatomy.fraction(tissue) > PURE)
    parts["mixed (partial volume)"] = rest & ~np.any([p for p in parts.values()], axis=0)
    return parts


def residual_rows(protocol, reference, images: dict[str, np.ndarray], mask, parts) -> list:
    """Per region: mean normalised intensity of each image, and its share of each image's MSE.

    Also the template's coefficient of variation (raw intensity) in the region.
    """
    ref = normalise(reference, mask)
    scaled = {name: normalise(image, mask) for name, image in images.items()}
    totals = {name: float(np.sum((ref[mask] - sim[mask]) ** 2)) for name, sim in scaled.items()}
    rows = []
    for region, where in parts.items():
        row = {
            "protocol": protocol,
            "region": region,
            "voxels": f"{100.0 * where.sum() / mask.sum():.1f}%",
            "template": f"{ref[where].mean():.3f}",
            "template CV": f"{reference[where].std() / reference[where].mean():.3f}",
        }
        row.update({name: f"{sim[where].mean():.3f}" for name, sim in scaled.items()})
        shares = [
            100.0 * np.sum((ref[where] - sim[where]) ** 2) / totals[name]
            for name, sim in scaled.items()
        ]
        row["share of MSE"] = " / ".join(f"{x:.0f}%" for x in shares)
        rows.append(row)
    return rows


def save_histograms(path: Path, curves: dict[str, dict[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.8), squeeze=False)
    centres = (BINS[:-1] + BINS[1:]) / 2.0
    styles = {
        "MNI152 2009a T1 (real)": ("black", "-"),
        "before": ("tab:blue", ":"),
        "fit (paper MSE)": ("tab:red", "-"),
        "fit (ratios)": ("tab:green", "--"),
    }
    for axis, (protocol, histograms) in zip(axes[0], curves.items(), strict=True):
        for label, density in histograms.items():
            colour, line = styles[label]
            axis.plot(centres, density, color=colour, linestyle=line, label=label, linewidth=1.2)
        axis.set_title(f"{protocol}: intensity in the brain mask", fontsize=10)
        axis.set_xlabel("intensity after the paper's min-max normalisation")
        axis.set_ylabel("density")
        axis.set_xlim(0.0, 1.0)
        axis.set_yscale("log")
        axis.set_ylim(1e-2, None)
        axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def _fit_row(protocol, fit, metadata, factors, fwhm, error) -> dict:
    cells = {}
    for tissue, value, factor in zip(FITTED, t1_values(metadata, factors), factors, strict=True):
        bound = "*" if abs(factor - 1.0) > PUBLISHED_SPREAD - 1e-3 else ""
        cells[f"T1 {tissue}"] = f"{value:.0f} ms ({factor:.3f}{bound})"
    s = signals(metadata, factors)
    return {
        "protocol": protocol,
        "fit": fit,
        **cells,
        "blur FWHM": f"{fwhm:.2f} mm",
        "signal GM/WM": f"{s[0] / s[1]:.3f}",
        "signal CSF/WM": f"{s[2] / s[1]:.3f}",
        "objective": "-" if error is None else f"{error:.5f}",
    }


def main() -> None:
    start = time.perf_counter()
    template = load_template()
    anatomy = three_tissue_anatomy()
    reference = template.t1
    mask = template.brain > 0.5
    affine = template.grid.affine
    pure = {t: (anatomy.fraction(t) > PURE) & mask for t in FITTED}
    parts = regions(anatomy, mask)

    def histogram(image: np.ndarray) -> np.ndarray:
        return np.histogram(normalise(image, mask)[mask], BINS, density=True)[0]

    real = "MNI152 2009a T1 (real)"
    # The template is stored as integers (0-255): dither it by +-0.5 for its histogram, which
    # otherwise shows spikes where a bin holds one more integer level than its neighbours.
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, reference.shape).astype(np.float32)
    integers = np.array_equal(reference, np.round(reference))
    dithered = np.where(mask, reference + noise, 0.0) if integers else reference
    rows = [
        {"protocol": real, "stage": "reference", "PSNR": "-", "SSIM": "-"}
        | ratios(reference, mask, pure)
    ]
    fit_rows, residuals = [], []
    curves: dict[str, dict[str, np.ndarray]] = {}
    montage = [("MNI152 T1 (real)", normalise(reference, mask) * mask, affine)]
    ones = np.ones(len(FITTED))
    for protocol, metadata in protocols().items():
        before = simulate(anatomy, metadata, ones, 0.0, mask)
        check_linear(anatomy, metadata, mask, before)
        fit_rows.append(_fit_row(protocol, "nominal", metadata, ones, 0.0, None))
        images = {"before": before}
        stages = [("before (nominal T1, no blur)", before)]
        factors, fwhm, error = fit_t1(anatomy, metadata, reference, mask)
        fit_rows.append(_fit_row(protocol, "T1 + blur, paper MSE", metadata, factors, fwhm, error))
        images["fit (paper MSE)"] = simulate(anatomy, metadata, factors, fwhm, mask)
        stages += [
            ("nominal T1 + fitted blur", simulate(anatomy, metadata, ones, fwhm, mask)),
            ("fitted T1, no blur", simulate(anatomy, metadata, factors, 0.0, mask)),
            ("after: fitted T1 + blur", images["fit (paper MSE)"]),
        ]
        factors, error = fit_ratios(anatomy, metadata, reference, pure)
        fit_rows.append(_fit_row(protocol, "T1, tissue ratios", metadata, factors, 0.0, error))
        images["fit (ratios)"] = simulate(anatomy, metadata, factors, 0.0, mask)
        stages.append(("T1 fitted to tissue ratios", images["fit (ratios)"]))
        rows += [
            {"protocol": protocol, "stage": stage} | metrics(reference, image, mask, pure)
            for stage, image in stages
        ]
        residuals += residual_rows(protocol, reference, images, mask, parts)
        curves[protocol] = {real: histogram(dithered)} | {
            name: histogram(image) for name, image in images.items()
        }
        montage += [
            (f"{protocol} {name}", normalise(image, mask) * mask, affine)
            for name, image in images.items()
        ]

    (gm_ratio, csf_ratio), fwhm, error = fit_free(anatomy, reference, mask)
    free = linear_image(anatomy, [gm_ratio, 1.0, csf_ratio], fwhm, mask)
    stage = "free signals + blur, paper MSE"
    rows.append({"protocol": "any", "stage": stage} | metrics(reference, free, mask, pure))
    fit_rows.append(
        {
            "protocol": "any",
            "fit": "free signals + blur, paper MSE",
            "T1 GM": "-",
            "T1 WM": "-",
            "T1 CSF": "-",
            "blur FWHM": f"{fwhm:.2f} mm",
            "signal GM/WM": f"{gm_ratio:.3f}",
            "signal CSF/WM": f"{csf_ratio:.3f}",
            "objective": f"{error:.5f}",
        }
    )

    FIGURES.mkdir(parents=True, exist_ok=True)
    save_montage(
        FIGURES / "calibration_slices.png",
        montage,
        title="Real MNI152 2009a T1 template vs the simulated template anatomy (normalised)",
    )
    save_histograms(FIGURES / "calibration_histograms.png", curves)
    report("calibrate_simulator", rows)
    print()
    report("calibrate_simulator_fit", fit_rows)
    print("(T1 factor in brackets; * = at the bound of the published spread)\n")
    report("calibrate_simulator_residuals", residuals)
    print(f"figures in {FIGURES}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
