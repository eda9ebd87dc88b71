"""NIfTI loading refuses what synthesis cannot use; saving is atomic and keeps world geometry."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from helpers import oblique_affine
from tumsyn.errors import ImageError, InputFileError
from tumsyn.io import (
    Grid,
    atomic_output,
    load_nifti,
    remove_stale_temporaries,
    save_json,
    save_nifti,
    target_grid,
    voxel_sizes,
)


def test_load_returns_float32_with_affine(write_nifti, brain_like) -> None:
    affine = oblique_affine()
    path = write_nifti(brain_like, affine=affine, dtype=np.int16)
    volume = load_nifti(path)
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, brain_like.astype(np.int16))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    np.testing.assert_allclose(volume.voxel_size, (1.0, 1.5, 2.0), atol=1e-6)


def test_scaling_slope_is_applied(tmp_path: Path, brain_like) -> None:
    image = nib.Nifti1Image(brain_like.astype(np.int16), np.eye(4))
    image.header.set_slope_inter(0.5, 10.0)
    nib.save(image, tmp_path / "scaled.nii")
    volume = load_nifti(tmp_path / "scaled.nii")
    expected = np.round(brain_like).astype(np.int16) * 0.5 + 10.0
    np.testing.assert_allclose(volume.data, expected)


def test_single_volume_4d_is_accepted(write_nifti, brain_like) -> None:
    assert load_nifti(write_nifti(brain_like[..., None])).data.shape == brain_like.shape


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: np.stack([v, v], axis=-1), "expected a 3D image, got 4D"),
        (lambda v: v[:, :, 0], "expected a 3D image, got 2D"),
        (lambda v: np.zeros((0, 4, 4), np.float32), "empty"),
        (lambda v: np.zeros_like(v), "every voxel is zero"),
    ],
)
def test_unusable_images_are_refused(write_nifti, brain_like, make, message) -> None:
    with pytest.raises(ImageError, match=message):
        load_nifti(write_nifti(make(brain_like)))


def test_nan_is_refused_unless_asked(write_nifti, brain_like) -> None:
    data = brain_like.copy()
    data[0, 0, 0] = np.nan
    data[1, 0, 0] = np.inf
    path = write_nifti(data)
    with pytest.raises(ImageError, match="2 voxels are NaN or infinite.*--nan-to-zero"):
        load_nifti(path)
    cleaned = load_nifti(path, nan_to_zero=True).data
    assert np.isfinite(cleaned).all() and cleaned[0, 0, 0] == 0 and cleaned[1, 0, 0] == 0


def test_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        load_nifti(tmp_path / "missing.nii.gz")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageError, match="not a NIfTI file"):
        load_nifti(text)
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(ImageError, match="cannot be read as NIfTI"):
        load_nifti(fake)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ImageError, match="cannot be read as NIfTI"):
        load_nifti(truncated)


def test_reorient_to_ras_keeps_world_positions(write_nifti, brain_like) -> None:
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    lps[:3, 3] = [30.0, 40.0, -10.0]
    path = write_nifti(brain_like, affine=lps)
    original = load_nifti(path)
    ras = load_nifti(path, reorient_to_ras=True)
    assert original.orientation == "LPS" and ras.orientation == "RAS"

    def world_centre_of_mass(volume):
        index = np.array(np.nonzero(volume.data), dtype=float)
        weights = volume.data[volume.data != 0]
        centre = (index * weights).sum(axis=1) / weights.sum()
        return volume.affine[:3, :3] @ centre + volume.affine[:3, 3]

    np.testing.assert_allclose(world_centre_of_mass(ras), world_centre_of_mass(original), atol=1e-4)


def test_save_round_trip_sets_sform_and_qform(tmp_path: Path, brain_like) -> None:
    affine = oblique_affine()
    path = save_nifti(tmp_path / "out.nii.gz", brain_like, affine)
    image = nib.load(path)
    assert image.get_data_dtype() == np.float32
    sform, sform_code = image.header.get_sform(coded=True)
    qform, qform_code = image.header.get_qform(coded=True)
    assert int(sform_code) == 1 and int(qform_code) == 1
    np.testing.assert_allclose(sform, affine, atol=1e-5)
    np.testing.assert_allclose(qform, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(image.dataobj), brain_like)
    assert image.header.get_xyzt_units()[0] == "mm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_dtype_and_bad_arguments(tmp_path: Path, brain_like) -> None:
    path = save_nifti(tmp_path / "out.nii", brain_like, np.eye(4), dtype=np.int16)
    assert nib.load(path).get_data_dtype() == np.int16
    with pytest.raises(ImageError, match="must end in .nii"):
        save_nifti(tmp_path / "out.mgz", brain_like, np.eye(4))
    with pytest.raises(ImageError, match="3D array"):
        save_nifti(tmp_path / "x.nii", brain_like[0], np.eye(4))
    with pytest.raises(InputFileError, match="output folder does not exist"):
        save_nifti(tmp_path / "missing" / "x.nii", brain_like, np.eye(4))


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.nii.gz"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        assert temporary.parent.parent == tmp_path and temporary.name == "result.nii.gz"
        temporary.write_bytes(b"half written")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.nii.gz"]


def test_save_json_is_indented_utf8_with_a_final_newline(tmp_path: Path) -> None:
    path = save_json(tmp_path / "sidecar.json", {"EchoTime": 0.081, "Manufacturer": "Siemens"})
    assert path.read_text(encoding="utf-8") == (
        '{\n  "EchoTime": 0.081,\n  "Manufacturer": "Siemens"\n}\n'
    )
    assert [p.name for p in tmp_path.iterdir()] == ["sidecar.json"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    target.write_bytes(b"finished")
    dead = tmp_path / f".state.pt.{_dead_pid()}-x1y2"  # a killed writer's folder, as named
    dead.mkdir()
    (dead / "state.pt").write_bytes(b"half")
    (dead / ".tmpAbC123").write_bytes(b"half")  # a library's own temporary inside it
    (tmp_path / ".state.pt.k1ll3d.pt").write_bytes(b"half")  # no PID: an older tumsyn's file
    live = tmp_path / f".state.pt.{os.getpid()}-a1b2"  # a writer that still runs
    live.mkdir()
    (tmp_path / "state.pt.notes").write_bytes(b"someone else's")
    removed = remove_stale_temporaries(target)
    assert sorted(p.name for p in removed) == sorted([dead.name, ".state.pt.k1ll3d.pt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, "state.pt", "state.pt.notes"]
    )
    assert remove_stale_temporaries(tmp_path / "missing" / "state.pt") == []


def test_a_writers_own_temporaries_stay_in_the_private_folder(tmp_path: Path) -> None:
    # safetensors writes ".tmpXXXXXX" beside the file it is given and renames it: killed in
    # between, that file would be left where no PID names its writer.
    import torch
    from safetensors.torch import save_file

    with atomic_output(tmp_path / "model.safetensors") as temporary:
        save_file({"w": torch.zeros(4)}, str(temporary))
        assert temporary.parent != tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_load_does_not_modify_the_input(write_nifti, brain_like) -> None:
    path = write_nifti(brain_like)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_nifti(path, reorient_to_ras=True, nan_to_zero=True).data[:] = 0
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def _world(grid: Grid, index) -> np.ndarray:
    return grid.affine[:3, :3] @ np.asarray(index, dtype=float) + grid.affine[:3, 3]


@pytest.mark.parametrize("new_size", [(0.5, 0.5, 0.5), (2.0, 2.0, 2.0), (1.0, 0.75, 5.0)])
def test_target_grid_keeps_centre_and_field_of_view(new_size) -> None:
    grid = Grid((40, 33, 20), oblique_affine((1.0, 1.5, 2.0)))
    new = target_grid(grid, new_size)
    np.testing.assert_allclose(new.voxel_size, new_size, atol=1e-9)
    old_centre = _world(grid, (np.array(grid.shape) - 1) / 2)
    new_centre = _world(new, (np.array(new.shape) - 1) / 2)
    np.testing.assert_allclose(new_centre, old_centre, atol=1e-9)
    extent_old = np.array(grid.shape) * np.array(grid.voxel_size)
    extent_new = np.array(new.shape) * np.array(new_size)
    assert np.all(np.abs(extent_new - extent_old) <= np.array(new_size) / 2 + 1e-9)
    # Same axis directions: the orientation of the grid is unchanged.
    directions = grid.affine[:3, :3] / np.array(grid.voxel_size)
    np.testing.assert_allclose(new.affine[:3, :3] / np.array(new_size), directions, atol=1e-9)


def test_target_grid_exact_for_integer_factor() -> None:
    new = target_grid(Grid((10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0])), (1.0, 1.0, 4.0))
    assert new.shape == (20, 20, 5)
    # Voxel faces line up: the first 1 mm voxel centre is 0.5 mm inside the old grid's edge.
    np.testing.assert_allclose(new.affine[:3, 3], [-0.5, -0.5, 1.0])


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0), (1.0, np.nan, 1.0)])
def test_target_grid_bad_voxel_size(bad) -> None:
    with pytest.raises(ImageError, match="voxel size must be three positive numbers"):
        target_grid(Grid((4, 4, 4), np.eye(4)), bad)


def test_voxel_sizes_of_oblique_affine() -> None:
    np.testing.assert_allclose(voxel_sizes(oblique_affine((0.7, 0.8, 3.0))), (0.7, 0.8, 3.0))


def test_a_box_of_a_grid_lies_where_its_voxels_say() -> None:
    from tumsyn.io import Grid

    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (10.0, -5.0, 7.0)
    parent = Grid((20, 30, 40), affine)
    child = parent.box((2, -1, 5), (4, 6, 8))
    assert child.shape == (4, 6, 8) and child.voxel_size == parent.voxel_size
    np.testing.assert_allclose(child.affine[:3, 3], (14.0, -8.0, 27.0))
    low, high = child.extent_in(parent)
    np.testing.assert_allclose(low, (1.5, -1.5, 4.5))
    np.testing.assert_allclose(high, (5.5, 4.5, 12.5))
