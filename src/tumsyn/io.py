"""NIfTI input and output, written for the ways real files go wrong.

``load_nifti`` returns a 3D float32 volume with its affine, or raises :class:`ImageError` with a
message a user can act on (wrong format, 4D series, empty or all-zero image, NaN/Inf).
``save_nifti`` writes through a temporary file in the destination folder and renames it, so a crash
or a full disk never leaves a half-written output, and sets both sform and qform so every viewer
places the image where the affine says. ``target_grid`` gives the grid of the same field of view at
another voxel size, the geometry every synthesis output is written on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn.errors import ImageError, InputFileError

__all__ = [
    "Grid",
    "Volume",
    "atomic_output",
    "load_nifti",
    "save_nifti",
    "target_grid",
    "voxel_sizes",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm along the three array axes (the column norms of the affine)."""
    sizes = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return tuple(float(s) for s in sizes)  # type: ignore[return-value]


@dataclass(frozen=True)
class Grid:
    """A voxel grid in world space: array shape and voxel-to-world (RAS+ mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return voxel_sizes(self.affine)


@dataclass(frozen=True)
class Volume:
    """A 3D image: float32 ``data`` of shape ``(I, J, K)`` and its 4x4 voxel-to-world ``affine``."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.data.shape), self.affine)  # type: ignore[arg-type]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return voxel_sizes(self.affine)

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPI"``: where each array axis points."""
        return "".join(nib.aff2axcodes(self.affine))


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def load_nifti(
    path: str | os.PathLike, *, reorient_to_ras: bool = False, nan_to_zero: bool = False
) -> Volume:
    """Read a 3D NIfTI image as float32 (scaling slope/intercept applied).

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        reorient_to_ras: flip/permute the array axes so they point to R, A, S (the closest
            canonical orientation; the world position of every voxel is unchanged).
        nan_to_zero: replace NaN and infinite values with 0 instead of refusing the image.

    Raises:
        InputFileError: the file does not exist.
        ImageError: not a NIfTI image, not 3D (a 4D file with one volume is accepted), empty,
            all zero, or containing NaN/Inf without ``nan_to_zero``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if not _is_nifti_name(path):
        raise ImageError(f"{path}: not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        image = nib.load(path)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise ImageError(f"{path}: not a NIfTI image ({type(image).__name__})")
        if reorient_to_ras:
            image = nib.as_closest_canonical(image)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except ImageError:
        raise
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as error:
        raise ImageError(f"{path}: cannot be read as NIfTI ({error})") from None

    if data.size == 0:
        raise ImageError(f"{path}: the image is empty (shape {data.shape})")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(
            f"{path}: expected a 3D image, got {data.ndim}D with shape {data.shape}; "
            "split a 4D series into volumes first (e.g. fslsplit)"
        )
    finite = np.isfinite(data)
    if not finite.all():
        if not nan_to_zero:
            bad = int(data.size - finite.sum())
            raise ImageError(
                f"{path}: {bad} voxels are NaN or infinite; fix the image or pass --nan-to-zero"
            )
        data = np.where(finite, data, np.float32(0))
    if not data.any():
        raise ImageError(f"{path}: every voxel is zero; is this the right file?")
    return Volume(data=data, affine=np.asarray(image.affine, dtype=np.float64))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix so that libraries choosing a format by extension
    (nibabel: ``.nii.gz`` means gzip) write the right thing. On error the temporary file is removed
    and any existing ``path`` is left untouched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(f"{path.parent}: output folder does not exist")
    suffix = "".join(path.suffixes[-2:]) if _is_nifti_name(path) else path.suffix
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        # mkstemp makes the file private (0600), and some writers replace the file they are given;
        # either way, give the result the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def save_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type = np.float32,
) -> Path:
    """Write a 3D array as NIfTI-1 atomically, with matching sform and qform (code: scanner).

    ``dtype`` is the on-disk type; float data saved as an integer type is scaled by nibabel (the
    header's slope and intercept), so fractions in [0, 1] survive ``uint8``. Returns the path.
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise ImageError(f"{path}: output must end in .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim != 3:
        raise ImageError(f"expected a 3D array to save, got shape {data.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    image = nib.Nifti1Image(data, affine)
    image.set_data_dtype(dtype)
    image.set_sform(affine, code="scanner")
    image.set_qform(affine, code="scanner")
    image.header.set_xyzt_units(xyz="mm", t="sec")
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    return path


def target_grid(grid: Grid, voxel_size: Sequence[float]) -> Grid:
    """The grid covering the same field of view as ``grid`` at a new voxel size.

    Sizes are along ``grid``'s own array axes, so oblique and flipped images keep their
    orientation. The new shape is the old extent divided by the new size, rounded (at least 1);
    the new grid is centred on the old one, so the centre of the field of view stays where it was
    in world space whatever the rounding.

    Example:
        >>> target_grid(Grid((10, 10, 10), np.eye(4)), (2.0, 2.0, 2.0)).shape
        (5, 5, 5)
    """
    new_size = np.asarray(voxel_size, dtype=float)
    if new_size.shape != (3,) or not np.all(np.isfinite(new_size)) or np.any(new_size <= 0):
        raise ImageError(f"voxel size must be three positive numbers in mm, got {voxel_size!r}")
    old_shape = np.asarray(grid.shape, dtype=float)
    scale = new_size / np.asarray(grid.voxel_size)
    new_shape = np.maximum(np.rint(old_shape / scale), 1).astype(int)
    # Index i in the new grid sits at old index c_old + (i - c_new) * scale, c = (n - 1) / 2.
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale)
    index_map[:3, 3] = (old_shape - 1) / 2 - (new_shape - 1) / 2 * scale
    return Grid(tuple(int(n) for n in new_shape), grid.affine @ index_map)  # type: ignore[arg-type]
