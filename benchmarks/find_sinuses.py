"""Where the real T2w is darkest inside the brain mask: the evidence for tumsyn.simulate.sinuses.

Resamples the ICBM152 2009c T2 template (``make icbm-t2``) onto the simulator's 2009a template
and prints (1) the connected bodies of voxels darker than 0.6 of white matter at least 1.5 mm
inside the mask (the rim's darkness is the dura's, ``tumsyn.simulate.template``): their size,
MNI centre and extent; and (2) for each sinus tube of the simulator, its volume and the real T2
inside it, weighted by the tube's fractions, relative to white matter.

Usage: .venv/bin/python benchmarks/find_sinuses.py
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from icbm import T2_FILE, on_template_grid
from tumsyn.simulate.sinuses import SINUSES, sinus_fraction
from tumsyn.simulate.template import load_template


def main() -> None:
    template = load_template()
    t2 = on_template_grid(T2_FILE)
    white = float(t2[template.wm > 0.95].mean())
    brain = template.brain > 0.5
    depth = ndimage.distance_transform_edt(brain)
    labels, count = ndimage.label(brain & (t2 < 0.6 * white) & (depth > 1.5))
    print("dark bodies (real T2 < 0.6 x WM, > 1.5 mm inside the mask), largest first:")
    print("voxels | MNI centre | MNI min | MNI max")
    sizes = ndimage.sum_labels(brain, labels, range(1, count + 1))
    for label in 1 + np.argsort(sizes)[::-1][:8]:
        voxels = np.argwhere(labels == label).T
        world = template.grid.affine[:3, :3] @ voxels + template.grid.affine[:3, 3:4]
        print(voxels.shape[1], world.mean(1).round(0), world.min(1), world.max(1), sep=" | ")
    print("\nsinus tubes (fractions of what the maps call CSF): ml | real T2 / WM inside")
    fluid = template.csf + template.sinus
    for name, tube in SINUSES.items():
        share = fluid * sinus_fraction(template.grid, {name: tube})
        volume = float(share.sum())
        print(f"{name} | {volume / 1000:.2f} | {float((t2 * share).sum()) / volume / white:.2f}")


if __name__ == "__main__":
    main()
