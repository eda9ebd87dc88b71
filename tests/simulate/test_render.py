from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from helpers import block_anatomy
from tumsyn.errors import MetadataError
from tumsyn.io import Grid
from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate import Anatomy, ScanSettings, render, render_on, scan
from tumsyn.simulate.acquisition import bias_field, box_kernel, rician_noise, rotated_grid
from tumsyn.simulate.render import INTENSITY_SCALE
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.tissues import TISSUES

FLAIR = ImagingMetadata(
    modality="FLAIR",
    field_strength=3,
    tr=9000,
    te=81,
    ti=2500,
    flip_angle=150,
    voxel_size=(1, 1, 1),
)
MPRAGE = ImagingMetadata(
    modality="T1CE", field_strength=3, tr=2300, te=2.98, ti=900, flip_angle=9, voxel_size=(1, 1, 1)
)


@pytest.mark.parametrize("metadata", [FLAIR, MPRAGE], ids=["FLAIR", "T1CE"])
def test_pure_tissue_voxel_equals_the_signal_equation(metadata: ImagingMetadata) -> None:
    anatomy = block_anatomy()
    anatomy = replace(anatomy, parameters=replace(anatomy.parameters, gadolinium_mm=0.3))
    image, affine = render(anatomy, metadata)
    np.testing.assert_array_equal(affine, anatomy.grid.affine)
    expected = signal(anatomy.properties(3.0), metadata) * INTENSITY_SCALE
    for k, tissue in enumerate(TISSUES):
        inside = np.argwhere(anatomy.fractions[k] == 1.0)
        voxel = tuple(inside[len(inside) // 2])
        assert image[voxel] == pytest.approx(expected[k], rel=1e-5), tissue
    assert image[0, 0, 0] == 0  # brain-extracted


def test_voxel_size_sets_grid_and_keeps_the_field_of_view(young_subject: Anatomy) -> None:
    fine, fine_affine = render(young_subject, FLAIR)
    thick, thick_affine = render(young_subject, FLAIR.replace(voxel_size=(1.0, 1.0, 3.0)))
    assert fine.shape == young_subject.grid.shape
    assert thick.shape[:2] == fine.shape[:2]
    assert thick.shape[2] == round(fine.shape[2] / 3)
    assert np.allclose(np.linalg.norm(thick_affine[:3, :3], axis=0), [1, 1, 3])

    # Same brain, same place: centres of mass agree in world space within a voxel.
    def centre(image, affine):
        index = np.argwhere(image > 0).mean(axis=0)
        return affine[:3, :3] @ index + affine[:3, 3]

    assert np.linalg.norm(centre(fine, fine_affine) - centre(thick, thick_affine)) < 1.5
    # The thick-slice image is the blurred truth: lower resolution, same mean brightness.
    assert thick[thick > 0].mean() == pytest.approx(fine[fine > 0].mean(), rel=0.05)


def test_render_on_any_grid_and_scan_statistics(young_subject: Anatomy) -> None:
    truth, affine = render(young_subject, FLAIR)
    again = render_on(young_subject, FLAIR, Grid(truth.shape, affine))
    np.testing.assert_array_equal(again, truth)
    clean, _ = scan(young_subject, FLAIR, ScanSettings(snr=1e6))
    np.testing.assert_allclose(clean, truth, rtol=1e-3, atol=1e-2)
    noisy, _ = scan(young_subject, FLAIR, ScanSettings(snr=20.0, noise_seed=1))
    brain = truth > 0
    residual = (noisy - truth)[brain]
    sigma = truth[brain].mean() / 20.0
    assert residual.std() == pytest.approx(sigma, rel=0.1)


def test_oblique_scan_is_rotated_about_the_centre(young_subject: Anatomy) -> None:
    image, affine = scan(young_subject, FLAIR, ScanSettings(rotation_deg=(0.0, 0.0, 15.0)))
    _, straight = render(young_subject, FLAIR)
    assert not np.allclose(affine, straight)
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), 1.0)
    centre = np.append((np.asarray(image.shape) - 1) / 2, 1)
    assert np.allclose(affine @ centre, straight @ centre)
    assert (image > 0).sum() == pytest.approx((young_subject.brain > 0.5).sum(), rel=0.03)


def test_missing_voxel_size_is_refused(young_subject: Anatomy) -> None:
    with pytest.raises(MetadataError, match="voxel size"):
        render(young_subject, ImagingMetadata(modality="T2w", field_strength=3, tr=5000, te=100))


def test_box_kernel_and_bias_field() -> None:
    for width in (1.0, 2.5, 3.0, 4.2):
        kernel = box_kernel(width)
        assert kernel.sum() == pytest.approx(1.0)
        assert np.allclose(kernel, kernel[::-1])
        assert len(kernel) >= np.ceil(width)
    assert np.all(bias_field((4, 5, 6), np.zeros(9)) == 1.0)
    field = bias_field((8, 8, 8), np.r_[0.2, np.zeros(8)])
    assert field[-1, 0, 0] == pytest.approx(np.exp(0.2)) and field[0, 0, 0] < 1


def test_rician_noise_floor() -> None:
    rng = np.random.default_rng(0)
    zeros = np.zeros((64, 64, 64), dtype=np.float32)
    floor = rician_noise(zeros, 2.0, rng)
    assert floor.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)  # Rayleigh mean
    assert np.all(rician_noise(zeros + 5, 0.0, rng) == 5)


def test_rotated_grid_keeps_voxel_sizes() -> None:
    grid = Grid((10, 12, 14), np.diag([1.0, 2.0, 3.0, 1.0]))
    rotated = rotated_grid(grid, (10.0, -5.0, 30.0))
    assert np.allclose(np.linalg.norm(rotated.affine[:3, :3], axis=0), [1, 2, 3])


def test_partial_volume_sums_signed_signals_before_the_magnitude() -> None:
    anatomy = block_anatomy()
    fractions = anatomy.fractions.copy()
    gm, csf = TISSUES.index("GM"), TISSUES.index("CSF")
    fractions[:, 1, 1, 1] = 0.0
    fractions[gm, 1, 1, 1] = fractions[csf, 1, 1, 1] = 0.5
    anatomy = replace(anatomy, fractions=fractions)
    t1_flair = ImagingMetadata(
        modality="T1w",
        field_strength=3,
        tr=2000,
        te=10,
        ti=800,
        flip_angle=150,
        voxel_size=(1,) * 3,
    )
    per_tissue = signal(anatomy.properties(3.0), t1_flair) * INTENSITY_SCALE
    assert per_tissue[gm] * per_tissue[csf] < 0  # on either side of the null at TI 800 ms
    image, _ = render(anatomy, t1_flair)
    expected = abs(0.5 * per_tissue[gm] + 0.5 * per_tissue[csf])
    scale = np.abs(per_tissue).max()
    assert image[1, 1, 1] == pytest.approx(expected, abs=1e-6 * scale)
    assert image[1, 1, 1] < 0.5 * (abs(per_tissue[gm]) + abs(per_tissue[csf]))
