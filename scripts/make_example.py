"""Write the bundled example: a 2 mm, brain-cropped MNI152 2009 T1 as a one-subject BIDS folder.

The image is real-derived (an average of 152 T1-weighted scans; Fonov et al. 2009/2011) and ships in
the nilearn wheel, so it can be regenerated offline:

    .venv/bin/python scripts/make_example.py [--out src/tumsyn/examples]

Resampling: 2x2x2 block means (an exact box anti-aliasing filter for an integer factor), then a crop
to the brain's bounding box plus a margin, so the file stays small and every voxel is meaningful.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn.io import atomic_output, save_json, save_nifti
from tumsyn.metadata import sidecar_path

TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
SUBJECT = "sub-icbm152"
FACTOR = 2
MARGIN_VOXELS = 3  # at the output resolution

# Nominal acquisition of the ICBM152 source scans (Mazziotta et al. 2001: 1.5 T Philips Gyroscan,
# T1-weighted 3D spoiled gradient echo, TR 18 ms, TE 10 ms, flip angle 30 degrees). The template
# is an average of such scans, not a scan itself: these values describe its contrast, nothing more.
SIDECAR = {
    "MagneticFieldStrength": 1.5,
    "Manufacturer": "Philips",
    "RepetitionTime": 0.018,
    "EchoTime": 0.010,
    "FlipAngle": 30,
    "ScanningSequence": "GR",
    "MRAcquisitionType": "3D",
    "TemplateSource": "MNI ICBM152 2009a nonlinear symmetric T1 template, nilearn file " + TEMPLATE,
}


def downsample_and_crop(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block-mean by FACTOR, crop to the non-zero bounding box plus MARGIN_VOXELS."""
    shape = np.array(data.shape) // FACTOR * FACTOR
    blocks = data[: shape[0], : shape[1], : shape[2]].reshape(
        shape[0] // FACTOR, FACTOR, shape[1] // FACTOR, FACTOR, shape[2] // FACTOR, FACTOR
    )
    small = blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    # Block (0,0,0) covers input voxels 0..FACTOR-1, so its centre is at input index (FACTOR-1)/2.
    scaling = np.diag([FACTOR, FACTOR, FACTOR, 1.0])
    scaling[:3, 3] = (FACTOR - 1) / 2
    small_affine = affine @ scaling

    nonzero = np.argwhere(small > 0)
    low = np.maximum(nonzero.min(axis=0) - MARGIN_VOXELS, 0)
    high = np.minimum(nonzero.max(axis=0) + MARGIN_VOXELS + 1, small.shape)
    cropped = small[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    shift = np.eye(4)
    shift[:3, 3] = low
    return cropped, small_affine @ shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("src/tumsyn/examples"))
    args = parser.parse_args()

    template = nib.load(resources.files("nilearn.datasets.data") / TEMPLATE)
    data, affine = downsample_and_crop(
        np.asarray(template.dataobj, dtype=np.float32), template.affine
    )
    anat = args.out / SUBJECT / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    image = save_nifti(anat / f"{SUBJECT}_T1w.nii.gz", data, affine)
    save_json(sidecar_path(image), SIDECAR)
    # The template has no single age or sex: BIDS "n/a".
    with atomic_output(args.out / "participants.tsv") as temporary:
        temporary.write_text("participant_id\tage\tsex\n" + SUBJECT + "\tn/a\tn/a\n")
    description = {
        "Name": "tumsyn bundled example (MNI152 2009 T1 template at 2 mm)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "see LICENSE in this folder (MNI ICBM152 template licence)",
    }
    save_json(args.out / "dataset_description.json", description)
    print(f"wrote {image}: shape {data.shape}, {image.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
