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
import itertools
import json
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tumsyn.errors import ConfigError, ImageError, InputFileError

__all__ = [
    "MAX_VOXELS",
    "Grid",
    "Volume",
    "as_volume",
    "atomic_output",
    "check_affine",
    "check_grid_size",
    "check_output_path",
    "load_nifti",
    "nifti_image",
    "read_grid",
    "refuse_overwriting_inputs",
    "remove_stale_temporaries",
    "save_json",
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

    def box(self, start: Sequence[int], shape: Sequence[int]) -> Grid:
        """The grid of ``shape`` voxels starting at voxel ``start`` of this one (a crop, a
        patch; it may reach outside this grid)."""
        affine = self.affine.copy()
        affine[:3, 3] += self.affine[:3, :3] @ np.asarray(start, dtype=float)
        return Grid(tuple(int(n) for n in shape), affine)

    def extent_in(self, other: Grid) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and highest (continuous) voxel coordinates of ``other`` that this grid's
        field of view reaches: its eight outer corners mapped into ``other``."""
        corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in self.shape]))).T
        to_other = np.linalg.inv(other.affine) @ self.affine
        voxels = to_other[:3, :3] @ corners + to_other[:3, 3:4]
        return voxels.min(axis=1), voxels.max(axis=1)


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


# The largest image tumsyn reads or makes: 2^29 voxels, 2 GiB as float32 (a 0.25 mm whole head
# is about 0.46 x 2^30). Larger grids are refused from their header or shape, before any allocation,
# since synthesis holds several float32 copies of its input and output.
MAX_VOXELS = 2**29
# How far an affine's axes may be from perpendicular (|cos| of the angle between two axes).
_SHEAR_TOLERANCE = 1e-3


def check_grid_size(shape: Sequence[int], what: str) -> None:
    """Refuse a grid of more than :data:`MAX_VOXELS` voxels (named ``what`` in the message)."""
    voxels = math.prod(int(n) for n in shape)
    if voxels > MAX_VOXELS:
        raise ImageError(
            f"{what} would have {voxels:,} voxels ({' x '.join(map(str, shape))}), more than the "
            f"{MAX_VOXELS:,} tumsyn handles; crop the image or choose a larger voxel size"
        )


def check_affine(affine: np.ndarray, what: str) -> np.ndarray:
    """The affine as a float64 4x4 array, refused if it cannot place voxels in world space.

    Synthesis works in the image's voxel grid and writes the output with the voxel size along each
    array axis, which needs perpendicular axes of non-zero length: a singular affine has no voxel
    size, and a sheared one would give the output a different geometry from the input.
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ImageError(f"{what}: the affine must be a finite 4x4 matrix, got {matrix.tolist()}")
    axes = matrix[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if np.any(lengths < 1e-6) or abs(np.linalg.det(axes / lengths)) < 1e-6:
        raise ImageError(
            f"{what}: the affine is singular (voxel sizes {np.round(lengths, 6).tolist()} mm); "
            "fix the image header (sform/qform)"
        )
    cosines = (axes / lengths).T @ (axes / lengths) - np.eye(3)
    if np.abs(cosines).max() > _SHEAR_TOLERANCE:
        raise ImageError(
            f"{what}: the affine is sheared (its voxel axes are not perpendicular); resample the "
            "image onto an unsheared grid first"
        )
    return matrix


def as_volume(
    data: np.ndarray, affine: np.ndarray, *, name: str = "image", nan_to_zero: bool = False
) -> Volume:
    """A :class:`Volume` from an array and its affine, refused if synthesis cannot use it.

    Args:
        name: how messages call the image (its path, or ``image``).
        nan_to_zero: replace NaN and infinite values with 0 instead of refusing the image.

    Raises:
        ImageError: not 3D (a 4D array with one volume is accepted), empty, all zero, NaN/Inf
            without ``nan_to_zero``, or an affine that :func:`check_affine` refuses.
    """
    data = np.asarray(data)
    if data.size == 0:
        raise ImageError(f"{name}: the image is empty (shape {data.shape})")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(
            f"{name}: expected a 3D image, got {data.ndim}D with shape {data.shape}; "
            "split a 4D series into volumes first (e.g. fslsplit)"
        )
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise ImageError(f"{name}: expected a numeric image, got data of type {data.dtype}")
    check_grid_size(data.shape, name)
    data = data.astype(np.float32, copy=False)
    finite = np.isfinite(data)
    if not finite.all():
        if not nan_to_zero:
            bad = int(data.size - finite.sum())
            raise ImageError(
                f"{name}: {bad} voxels are NaN or infinite; fix the image or read them as 0 "
                "(--nan-to-zero, or nan_to_zero=True)"
            )
        data = np.where(finite, data, np.float32(0))
    if not data.any():
        raise ImageError(f"{name}: every voxel is zero; is this the right file?")
    return Volume(data=data, affine=check_affine(affine, name))


def _open_nifti(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """The image object of a NIfTI file, its header checked and its data not yet read."""
    if path.is_dir():
        raise InputFileError(f"{path}: a folder, not an image file; give a .nii or .nii.gz file")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path}: not readable (check its permissions)")
    if not _is_nifti_name(path):
        raise ImageError(f"{path}: not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        image = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as error:
        raise ImageError(f"{path}: cannot be read as NIfTI ({error})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageError(f"{path}: not a NIfTI image ({type(image).__name__})")
    check_grid_size(image.shape[:3], str(path))
    return image


def read_grid(path: str | os.PathLike) -> Grid:
    """The voxel grid of a NIfTI file from its header alone (checked as :func:`load_nifti` does).

    Indexing a data set of thousands of images, checking that a subject's images share one grid,
    or finding an input's voxel size must not decompress every volume: ``nibabel.load`` parses
    the header and leaves the data on disk. A 4D file with one volume counts as 3D.

    Raises:
        InputFileError, ImageError: as :func:`load_nifti`, for what the header shows.
    """
    path = Path(path)
    image = _open_nifti(path)
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageError(f"{path}: expected a 3D image, got {len(shape)}D with shape {shape}")
    return Grid(shape, check_affine(image.affine, str(path)))  # type: ignore[arg-type]


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
        InputFileError: the file does not exist or cannot be opened.
        ImageError: not a NIfTI image, truncated, larger than :data:`MAX_VOXELS` (refused from
            the header, before reading the data), or refused by :func:`as_volume`.
    """
    path = Path(path)
    image = _open_nifti(path)
    try:
        if reorient_to_ras:
            image = nib.as_closest_canonical(image)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as error:
        raise ImageError(f"{path}: cannot be read as NIfTI ({error})") from None
    return as_volume(data, image.affine, name=str(path), nan_to_zero=nan_to_zero)


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output before any work is done: its folder is missing, or it is one of
    ``inputs`` (see :func:`refuse_overwriting_inputs`). Returns the output as a path.

    Raises:
        InputFileError: no such output folder. ConfigError: the output is an input.
    """
    output = Path(output)
    if not output.parent.is_dir():
        raise InputFileError(f"{output.parent}: the output folder does not exist; make it first")
    refuse_overwriting_inputs(output, *inputs)
    return output


def refuse_overwriting_inputs(output: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """Refuse an output path that is one of the inputs: the same path, a symlink to it or a hard
    link of it (anything :func:`os.path.samefile` says is the same file).

    Raises:
        ConfigError: naming both paths.
    """
    output = Path(output)
    for source in inputs:
        source = Path(source)
        same = output.resolve() == source.resolve()
        if not same and output.exists() and source.exists():
            same = os.path.samefile(output, source)
        if same:
            raise ConfigError(
                f"{output}: this output is the input {source}; tumsyn never writes over an "
                "input: choose another output name"
            )


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file has ``path``'s own name, inside a private folder beside it
    (``.<name>.<pid>-XXXX/``), so libraries choosing a format by extension (nibabel: ``.nii.gz``
    means gzip) write the right thing, and temporaries that a writing library makes of its own
    next to the file (safetensors writes ``.tmpXXXXXX`` and renames it) stay in that folder too.
    On error the folder is removed and any existing ``path`` is left untouched; a folder left by
    a killed process is removed by the next write of ``path`` (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(f"{path.parent}: output folder does not exist")
    remove_stale_temporaries(path)
    prefix = f".{path.name}.{os.getpid()}-"  # the writer's PID tells a stale folder from a live one
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    temporary = folder / path.name
    try:
        yield temporary
        # Give the result the permissions a plain open() would, whatever the writer chose.
        os.chmod(temporary, 0o666 & ~_current_umask())
        _flush_to_disk(temporary)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _flush_to_disk(path: str) -> None:
    """Make the file's content durable before it is renamed into place, so that after a power
    loss the final name holds the whole file or the old one, never an empty file."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that killed writers of ``path`` left beside it; return them.

    A process killed outright (SIGKILL, out of memory, power loss) never runs the clean-up of
    :func:`atomic_output`, so its ``.<name>.<pid>-*`` folder (with a half-written file) stays. It
    is stale when its writer's process is gone; a live writer's (another rank, another run writing
    the same name) is left alone. :func:`atomic_output` calls this before every write, so the next
    write of a path clears what an interrupted one left.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    stale = [
        entry
        for entry in path.parent.iterdir()
        if entry.name.startswith(prefix) and not _writer_alive(entry.name[len(prefix) :])
    ]
    for entry in stale:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    return stale


def _writer_alive(rest: str) -> bool:
    """Whether the process whose PID starts ``rest`` (``"1234-abcd.nii.gz"``) still runs."""
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def save_json(path: str | os.PathLike, content: Any) -> Path:
    """Write ``content`` as JSON atomically (UTF-8, indented by two, ending in a newline).

    One format for every JSON file tumsyn writes (sidecars, descriptions, records), so that files
    diff cleanly and a reader never meets a half-written file. Returns the path.
    """
    path = Path(path)
    text = json.dumps(content, indent=2) + "\n"
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def nifti_image(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type = np.float32,
    image_class: type[nib.Nifti1Image] = nib.Nifti1Image,
) -> nib.Nifti1Image:
    """A NIfTI-1 image of a 3D array with matching sform and qform (code: scanner), in mm.

    Both forms are set so that every viewer places the image where the affine says. ``dtype`` is
    the on-disk type; float data saved as an integer type is scaled by nibabel (the header's slope
    and intercept), so fractions in [0, 1] survive ``uint8``.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ImageError(f"expected a 3D array to save, got shape {data.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    image = image_class(data, affine)
    image.set_data_dtype(dtype)
    image.set_sform(affine, code="scanner")
    image.set_qform(affine, code="scanner")
    image.header.set_xyzt_units(xyz="mm", t="sec")
    return image


def save_nifti(
    path: str | os.PathLike,
    data: np.ndarray | nib.Nifti1Image,
    affine: np.ndarray | None = None,
    *,
    dtype: np.dtype | type = np.float32,
) -> Path:
    """Write a 3D array (with its affine, see :func:`nifti_image`) or a NIfTI image atomically.

    Returns the path.
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise ImageError(f"{path}: output must end in .nii or .nii.gz")
    image = data if isinstance(data, nib.Nifti1Image) else nifti_image(data, affine, dtype=dtype)
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
    check_grid_size(new_shape, f"the grid at voxel size {tuple(new_size.tolist())} mm")
    # Index i in the new grid sits at old index c_old + (i - c_new) * scale, c = (n - 1) / 2.
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale)
    index_map[:3, 3] = (old_shape - 1) / 2 - (new_shape - 1) / 2 * scale
    return Grid(tuple(int(n) for n in new_shape), grid.affine @ index_map)  # type: ignore[arg-type]
