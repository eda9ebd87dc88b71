"""The input-modality guess on simulated scans of each contrast, a real T1w, and inputs it must
refuse to guess (a crop, an image with a background)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tumsyn.examples import example_t1w
from tumsyn.infer.modality_guess import guess_input_modality
from tumsyn.metadata import load_protocols
from tumsyn.simulate import ScanSettings, make_subject, scan

VOXEL = (3.0, 3.0, 3.0)
PROTOCOLS = {p.name + " " + str(p.metadata.modality): p for p in load_protocols("library")}


@pytest.fixture(scope="module")
def subject():
    return make_subject(7, age=64, sex="F", enhancing=True)


def _scan(subject, protocol: str, voxel=VOXEL) -> np.ndarray:
    """A noisy, biased scan of a library protocol."""
    settings = ScanSettings(snr=15.0, bias=(0.2, -0.15, 0.1, 0.0, 0.1, 0.0, -0.1, 0.0, 0.05))
    metadata = PROTOCOLS[protocol].metadata.replace(voxel_size=voxel)
    return scan(subject, metadata, settings)[0]


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("tse T2w", "T2w"), ("tse15 T2w", "T2w"), ("hcp T2w", "T2w"), ("tse PD", "PD"),
     ("tse15 PD", "PD"), ("mprage T1w", None), ("se15 T1w", None), ("space FLAIR", None),
     ("mprage T1CE", None)],
)  # fmt: skip
def test_each_contrast_is_read_as_its_network_reads_it(subject, protocol, expected) -> None:
    guess = guess_input_modality(_scan(subject, protocol), VOXEL)
    assert guess.modality == expected, guess
    assert guess.features is not None


def test_a_t2w_with_dimmer_csf_than_the_library_protocols_is_still_a_t2w(subject) -> None:
    """Real T2w CSF is less bright against white matter than the simulator's library protocols
    render it (the ICBM152 T2 template's ventricles: 2.12 x its core); a 1.5 T spin echo at
    TE 70 ms comes close (CSF/WM about 2.4 in pure tissue)."""
    from tumsyn.metadata import ImagingMetadata

    metadata = ImagingMetadata(modality="T2w", field_strength=1.5, manufacturer="Philips",
                               voxel_size=VOXEL, tr=3300.0, te=70.0, flip_angle=90.0)  # fmt: skip
    settings = ScanSettings(snr=15.0, bias=(0.2, -0.15, 0.1, 0.0, 0.1, 0.0, -0.1, 0.0, 0.05))
    guess = guess_input_modality(scan(subject, metadata, settings)[0], VOXEL)
    assert guess.modality == "T2w" and guess.features.ventricles < 2.2, guess


def test_thick_slices_do_not_change_the_guess(subject) -> None:
    for voxel in ((1.0, 1.0, 5.0), (5.0, 1.0, 1.0)):
        assert guess_input_modality(_scan(subject, "tse T2w", voxel), voxel).modality == "T2w"


def test_a_real_t1w_looks_t1_like_and_is_not_modified() -> None:
    image = nib.load(example_t1w())
    data = np.asarray(image.dataobj, dtype=np.float32)
    before = data.copy()
    guess = guess_input_modality(data, image.header.get_zooms()[:3])
    assert guess.modality is None and guess.reason.startswith("T1-like")
    assert guess.features.core_to_shell > 1.4  # white matter brighter than the cortex
    np.testing.assert_array_equal(data, before)


def test_it_refuses_to_guess_without_a_whole_brain_extracted(subject) -> None:
    t2w = _scan(subject, "tse T2w")
    background = np.where(t2w > 0, t2w, np.float32(0.05 * t2w.max()))
    refused = guess_input_modality(background, VOXEL)
    assert refused.modality is None and "not brain-extracted" in refused.reason
    centre = tuple(slice(n // 2 - 4, n // 2 + 4) for n in t2w.shape)
    crop = np.zeros_like(t2w)
    crop[centre] = t2w[centre]  # a small brain-like island: no core 15 mm deep
    small = guess_input_modality(crop, VOXEL)
    assert small.modality is None and small.features is None and "too little" in small.reason
