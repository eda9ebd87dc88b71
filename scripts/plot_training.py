"""Plot the training curves of the two stages from their metrics.csv files.

    .venv/bin/python scripts/plot_training.py STAGE1.csv STAGE2.csv OUT.png

Left: stage-1 contrastive loss (training, smoothed, and validation) and validation top-1
retrieval. Right: stage-2 L1 loss (smoothed) and validation PSNR against the copy-source baseline.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from tumsyn.io import atomic_output


def _read(path: str) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {key for row in rows for key in row}
    return {
        key: np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
        for key in columns
    }


def _smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    kernel = np.ones(window) / window
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def main(stage1: str, stage2: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, second = _read(stage1), _read(stage2)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(first["step"], _smooth(first["loss"]), label="train loss (smoothed)")
    if "val_loss" in first:
        valid = ~np.isnan(first["val_loss"])
        left.plot(first["step"][valid], first["val_loss"][valid], "o-", label="validation loss")
    left.set_xlabel("step")
    left.set_title("stage 1: bmlip-tiny (contrastive)")
    left.legend(loc="upper right")
    if "val_top1" in first:
        twin = left.twinx()
        valid = ~np.isnan(first["val_top1"])
        twin.plot(first["step"][valid], first["val_top1"][valid], "s--", color="C2",
                  label="validation top-1")  # fmt: skip
        twin.set_ylabel("image-to-text top-1")
        twin.set_ylim(0, 1)
        twin.legend(loc="center right")
    right.plot(second["step"], _smooth(second["loss"]), label="train L1 (smoothed)")
    right.set_xlabel("step")
    right.set_ylabel("L1 on [0, 1] intensities")
    right.set_title("stage 2: tumsyn-tiny (synthesis)")
    right.legend(loc="upper left")
    if "val_psnr" in second:
        twin = right.twinx()
        valid = ~np.isnan(second["val_psnr"])
        twin.plot(second["step"][valid], second["val_psnr"][valid], "o-", color="C1",
                  label="validation PSNR")  # fmt: skip
        twin.plot(second["step"][valid], second["val_psnr_copy_source"][valid], "--",
                  color="C3", label="copy-source baseline")  # fmt: skip
        twin.set_ylabel("PSNR (dB)")
        twin.legend(loc="center right")
    figure.tight_layout()
    path = Path(out)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
