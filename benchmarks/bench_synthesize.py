"""Speed, memory and work of synthesis: the bundled model on a whole brain, paper-size models on
patches, and the whole-volume scheme against the official one.

    .venv/bin/python benchmarks/bench_synthesize.py [--skip-paper]

Each timed case runs in a fresh process, so its peak RSS is its own:

- the bundled default checkpoint on a whole 1 mm brain: the MNI152 2009a T1 template from
  the nilearn wheel on the 182 x 218 x 182 grid, output at 1 mm and at 0.5 mm (2x upsampling),
  end to end (read, load the model, synthesize, write), with the default patch settings;
- official-synth and tumsyn-base (random weights: speed does not depend on them) on one 32^3 and
  one 64^3 patch decoded at the same resolution, with the FLOPs per output voxel (counted on the
  meta device, for direct convolutions) and the achieved GFLOP/s; official-synth's 32^3 patch
  with PyTorch's direct convolutions only (the official code's arithmetic; tumsyn uses Winograd
  for the wide ones in CPU inference, ``tumsyn.models.winograd``); and under bf16 autocast
  (``--precision bf16``).

The work table counts, on the same whole-brain grid, the voxels each scheme encodes (encoder and
fusion) and the points it decodes: the official demo's (60^3 patches at 50% overlap over the
whole grid, every patch decoded whole) against tumsyn's (foreground box only, evenly spaced
patches, each voxel decoded about once), priced in official-synth FLOPs.

Targets (inference issue): tiny whole brain < 60 s and < 3 GB peak RSS on 2 cores; paper-size 64^3
crop < 8 GB peak RSS; official-synth per patch at least 1.5x faster than the official code (which
runs PyTorch's direct convolutions); whole-volume work at least 4x less than the official scheme.
On a machine with CUDA it also times official-synth and tumsyn-base (random weights, bf16) on the
whole brain (peak RSS there is the host process's, not GPU memory). Prints tables
and writes benchmarks/results/synthesize.json and synthesize_work.json.
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
from common import RESULTS, report

WHOLE_BRAIN = (182, 218, 182)
OFFICIAL_PATCH, OFFICIAL_OVERLAP = 60, 0.5  # the official demo.py's crop_size and overlap ratio


def _whole_brain_source() -> Path:
    """The MNI T1 template cropped to the 182 x 218 x 182 grid, written once."""
    import nibabel as nib
    import numpy as np

    from tumsyn.io import Grid
    from tumsyn.simulate.template import template_path

    source = RESULTS / "tmp" / "t1.nii.gz"
    if source.exists():
        return source
    image = nib.load(template_path("t1"))
    data = np.asarray(image.dataobj, dtype=np.float32)
    start = [(n - m) // 2 for n, m in zip(data.shape, WHOLE_BRAIN, strict=True)]
    crop = data[tuple(slice(s, s + m) for s, m in zip(start, WHOLE_BRAIN, strict=True))]
    affine = Grid(data.shape, image.affine).box(start, WHOLE_BRAIN).affine
    source.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(crop, affine), source)
    return source


def _target(voxel: float):
    from tumsyn.metadata import default_protocol

    return default_protocol("FLAIR").metadata.replace(voxel_size=(voxel,) * 3)


def _whole_brain_case(voxel: float) -> dict:
    from tumsyn.infer import Synthesizer, synthesize_file

    source = _whole_brain_source()
    began = time.perf_counter()
    synthesizer = Synthesizer.from_checkpoint()
    synthesize_file(synthesizer, source, source.parent / f"flair-{voxel}mm.nii.gz", _target(voxel))
    return {"seconds": time.perf_counter() - began}


def _random_text(model):
    """Random prompt features of the shape the network's fusion takes: one pooled vector, or 40
    tokens (the tokenizer's context length is longer; speed hardly depends on it)."""
    import torch

    width = model.spec["args"]["text_dim"]
    return torch.randn(1, width) if model.pooled_text else torch.randn(1, 40, width)


def _paper_whole_brain_case(config: str, device: str) -> dict:
    """A paper-size network (random weights) on the whole brain, bf16 autocast: GPU work (on a
    CPU only as a smoke test of this code, e.g. ``--child gpu-brain:tumsyn-tiny:cpu``)."""
    import torch

    from tumsyn.infer.volume import synthesize_volume
    from tumsyn.io import load_nifti
    from tumsyn.models import build

    kind = torch.device(device).type
    model = build(config).eval().to(device)
    text = _random_text(model).to(device)

    def predict(patches, coord, cell):
        with torch.autocast(kind, dtype=torch.bfloat16):
            batch_text = text.expand(len(patches), *text.shape[1:])
            return model(patches, coord, batch_text, cell=cell)

    def synchronize() -> None:
        if kind == "cuda":
            torch.cuda.synchronize()

    volume = load_nifti(_whole_brain_source())
    synchronize()
    began = time.perf_counter()
    synthesize_volume(predict, volume, (1.0, 1.0, 1.0), patch_size=64, batch=1, device=device)
    synchronize()
    return {"seconds": time.perf_counter() - began}


def _patch_case(config: str, size: int, precision: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tumsyn.models import build, winograd
    from tumsyn.models.liif import cell_centres

    if precision == "fp32-direct":  # PyTorch's own convolutions throughout, as the official code
        winograd.MIN_CHANNELS = sys.maxsize
    model = build(config).eval()
    text = _random_text(model)
    image = torch.rand(1, 1, size, size, size)
    coord = cell_centres((size,) * 3)[None]
    cell = torch.full_like(coord, 2 / size)
    bf16 = precision == "bf16"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        began = time.perf_counter()
        output = model(image, coord, text, cell=cell).float()
        seconds = time.perf_counter() - began
    deviation = {}
    if bf16:  # how far bf16 moves the output from fp32 (same weights and input; not timed)
        with torch.inference_mode():
            reference = model(image, coord, text, cell=cell)
        deviation = {
            "max_deviation": float((output - reference).abs().max()),
            "output_std": float(reference.std()),
        }
    with torch.device("meta"):
        meta = build(config)
        with FlopCounterMode(display=False) as counter:
            meta(image.to("meta"), coord.to("meta"), text.to("meta"), cell=cell.to("meta"))
    flops = counter.get_total_flops()
    return {
        "seconds": seconds,
        "flops_per_voxel": flops / size**3,
        "gflops": flops / 1e9 / seconds,
        **deviation,
    }


def _child(case: str) -> None:
    kind, *rest = case.split(":")
    if kind == "brain":
        result = _whole_brain_case(float(rest[0]))
    elif kind == "gpu-brain":
        result = _paper_whole_brain_case(rest[0], rest[1] if len(rest) > 1 else "cuda")
    else:
        result = _patch_case(rest[0], int(rest[1]), rest[2])
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(result))


def _official_scheme_counts(shape) -> tuple[int, int]:
    """Voxels encoded and points decoded by the official demo's patch loop on ``shape``."""
    gap = int(OFFICIAL_PATCH * (1 - OFFICIAL_OVERLAP))
    patches = 1
    for n in shape:
        starts = [s for s in range(0, n, gap) if s < n - OFFICIAL_PATCH] + [n - OFFICIAL_PATCH]
        patches *= len(starts)
    return patches * OFFICIAL_PATCH**3, patches * OFFICIAL_PATCH**3


def _tumsyn_scheme_counts(source: Path) -> tuple[int, int]:
    """Voxels encoded and points decoded by ``synthesize_volume`` with its default settings."""
    import torch

    from tumsyn.infer.volume import synthesize_volume
    from tumsyn.io import load_nifti

    counts = [0, 0]

    def counting(patches: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        counts[0] += patches[:, 0].numel()
        counts[1] += coord.shape[0] * coord.shape[1]
        return torch.zeros(*coord.shape[:2], 1)

    synthesize_volume(counting, load_nifti(source), (1.0, 1.0, 1.0))
    return counts[0], counts[1]


def _official_flops() -> tuple[float, float]:
    """official-synth FLOPs per encoded voxel (encoder + fusion) and per decoded point."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tumsyn.models import build

    size = 16
    with torch.device("meta"):
        model = build("official-synth")
        image, text = torch.zeros(1, 1, size, size, size), torch.zeros(1, 768)
        coord = torch.zeros(1, size**3, 3)
        with FlopCounterMode(display=False) as encode:
            feat = model.condition(model.gen_feat(image), text)
        with FlopCounterMode(display=False) as decode:
            model.query(feat, coord)
    return encode.get_total_flops() / size**3, decode.get_total_flops() / size**3


def work_rows() -> list[dict]:
    source = _whole_brain_source()
    per_voxel, per_point = _official_flops()
    rows = []
    schemes = (
        ("official demo: 60^3, 50% overlap, whole grid", _official_scheme_counts(WHOLE_BRAIN)),
        ("tumsyn: foreground box, default patches", _tumsyn_scheme_counts(source)),
    )
    totals = [
        (encoded * per_voxel + decoded * per_point) / 1e12 for _, (encoded, decoded) in schemes
    ]
    for (label, (encoded, decoded)), total in zip(schemes, totals, strict=True):
        rows.append({
            "scheme (182x218x182 grid, 1 mm -> 1 mm)": label,
            "voxels encoded (M)": f"{encoded / 1e6:.1f}",
            "points decoded (M)": f"{decoded / 1e6:.1f}",
            "official-synth TFLOP": f"{total:.0f}",
            "work vs official": f"{totals[0] / total:.1f}x less" if total != totals[0] else "1x",
        })  # fmt: skip
    return rows


def main() -> None:
    import torch

    from tumsyn.infer.loading import BUNDLED_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-paper", action="store_true", help="only the tiny whole-brain cases")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    brain = f"{BUNDLED_CHECKPOINT}, whole brain 182x218x182, 1 mm ->"
    cases = [(f"{brain} 1 mm", "brain:1.0"), (f"{brain} 0.5 mm", "brain:0.5")]
    if not args.skip_paper:
        for config in ("official-synth", "tumsyn-base"):
            for size in (32, 64):
                cases.append(
                    (f"{config}, one {size}^3 patch -> {size}^3", f"patch:{config}:{size}:fp32")
                )
        cases += [
            ("official-synth, one 32^3 patch, direct convolutions",
             "patch:official-synth:32:fp32-direct"),
            ("official-synth, one 32^3 patch, bf16 autocast", "patch:official-synth:32:bf16"),
        ]  # fmt: skip
        if torch.cuda.is_available():
            for config in ("official-synth", "tumsyn-base"):
                device = torch.cuda.get_device_name()
                cases.append(
                    (f"{config}, whole brain on {device}, bf16, 64^3", f"gpu-brain:{config}")
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
            "max |bf16 - fp32| (output std)":
                f"{result['max_deviation']:.3g} ({result['output_std']:.3g})"
                if "max_deviation" in result else "-",
        })  # fmt: skip
    report("synthesize", rows)
    print()
    report("synthesize_work", work_rows())


if __name__ == "__main__":
    main()
