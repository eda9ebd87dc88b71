"""Speed and memory of synthesis: the tiny model on a whole brain, paper-size models on patches.

    .venv/bin/python benchmarks/bench_synthesize.py [--skip-paper]

Each case runs in a fresh process, so its peak RSS is its own:

- tumsyn-tiny (the bundled checkpoint) on a whole 1 mm brain: the MNI152 2009a T1 template from
  the nilearn wheel on the 182 x 218 x 182 grid, output at 1 mm and at 0.5 mm (2x upsampling);
- official-synth and tumsyn-base (random weights: speed does not depend on them) on one 32^3 and
  one 64^3 patch decoded at the same resolution, with the FLOPs per output voxel (counted on the
  meta device) and the achieved GFLOP/s.

Targets (inference issue): tiny whole brain < 60 s and < 3 GB peak RSS on 2 cores; paper-size 64^3
crop < 8 GB peak RSS. Prints a table and writes benchmarks/results/synthesize.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report

WHOLE_BRAIN = (182, 218, 182)


def _whole_brain_case(voxel: float) -> dict:
    import nibabel as nib
    import numpy as np

    from tumsyn.infer.run import synthesize_file
    from tumsyn.metadata import default_protocol
    from tumsyn.simulate.template import template_path

    image = nib.load(template_path("t1"))
    data = np.asarray(image.dataobj, dtype=np.float32)
    start = [(n - m) // 2 for n, m in zip(data.shape, WHOLE_BRAIN, strict=True)]
    crop = data[tuple(slice(s, s + m) for s, m in zip(start, WHOLE_BRAIN, strict=True))]
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.asarray(start)
    folder = Path("benchmarks/results/tmp")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "t1.nii.gz"
    nib.save(nib.Nifti1Image(crop, affine), source)
    target = default_protocol("FLAIR").metadata.replace(voxel_size=(voxel,) * 3)
    began = time.perf_counter()
    synthesize_file(source, folder / "flair.nii.gz", target)
    return {"seconds": time.perf_counter() - began}


def _patch_case(config: str, size: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tumsyn.models import build
    from tumsyn.models.liif import cell_centres

    model = build(config).eval()
    args = model.spec["args"]
    text = (torch.randn(1, args["text_dim"]) if args["fusion"]["kind"] == "global"
            else torch.randn(1, 40, args["text_dim"]))  # fmt: skip
    image = torch.rand(1, 1, size, size, size)
    coord = cell_centres((size,) * 3)[None]
    cell = torch.full_like(coord, 2 / size)
    with torch.no_grad():
        began = time.perf_counter()
        model(image, coord, text, cell=cell)
        seconds = time.perf_counter() - began
    with torch.device("meta"):
        meta = build(config)
        with FlopCounterMode(display=False) as counter:
            meta(image.to("meta"), coord.to("meta"), text.to("meta"), cell=cell.to("meta"))
    flops = counter.get_total_flops()
    return {"seconds": seconds, "flops_per_voxel": flops / size**3, "gflops": flops / 1e9 / seconds}


def _child(case: str) -> None:
    kind, *rest = case.split(":")
    result = (
        _whole_brain_case(float(rest[0])) if kind == "brain" else _patch_case(rest[0], int(rest[1]))
    )
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-paper", action="store_true", help="only the tiny whole-brain cases")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    cases = [("tumsyn-tiny, whole brain 182x218x182, 1 mm -> 1 mm", "brain:1.0"),
             ("tumsyn-tiny, whole brain 182x218x182, 1 mm -> 0.5 mm", "brain:0.5")]  # fmt: skip
    if not args.skip_paper:
        for config in ("official-synth", "tumsyn-base"):
            for size in (32, 64):
                cases.append(
                    (f"{config}, one {size}^3 patch -> {size}^3", f"patch:{config}:{size}")
                )
    rows = []
    for label, case in cases:
        output = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True,
                                text=True, check=True).stdout  # fmt: skip
        result = json.loads(output.strip().splitlines()[-1])
        rows.append({
            "case": label,
            "seconds": f"{result['seconds']:.1f}",
            "peak RSS (GB)": f"{result['peak_rss_gb']:.2f}",
            "MFLOP / output voxel": f"{result['flops_per_voxel'] / 1e6:.0f}"
            if "flops_per_voxel" in result else "-",
            "GFLOP/s": f"{result['gflops']:.0f}" if "gflops" in result else "-",
        })  # fmt: skip
    report("synthesize", rows)


if __name__ == "__main__":
    main()
