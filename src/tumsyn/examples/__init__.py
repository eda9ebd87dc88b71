"""The bundled example: a one-subject BIDS folder with a 2 mm MNI152 2009a T1 (see LICENSE here).

Made by ``scripts/make_example.py``; used by ``make demo`` and the tests.
"""

from importlib import resources
from pathlib import Path

__all__ = ["example_root", "example_t1w"]


def example_root() -> Path:
    """The example BIDS folder (``participants.tsv``, ``sub-icbm152/anat/...``)."""
    return Path(str(resources.files(__name__)))


def example_t1w() -> Path:
    """The example T1w image; its JSON sidecar lies beside it."""
    return example_root() / "sub-icbm152" / "anat" / "sub-icbm152_T1w.nii.gz"
