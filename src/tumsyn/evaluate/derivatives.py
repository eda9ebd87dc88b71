"""A subject's brain mask and tissue maps from a BIDS data set's derivatives.

Evaluation inside the brain, and contrast errors per tissue, need masks that a lab's pipelines
(or tumsyn's simulator) already wrote as BIDS derivatives: ``derivatives/<pipeline>/sub-X[/ses-Y]
/anat/`` with ``*_desc-brain_mask.nii[.gz]`` and ``*_label-{GM,WM,CSF}_probseg.nii[.gz]`` (the
BIDS derivatives names for a brain mask and tissue probability maps). This finds them; what to
do when they lie on another grid is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TISSUE_LABELS", "SubjectMaps", "find_subject_maps"]

TISSUE_LABELS = ("GM", "WM", "CSF")


@dataclass(frozen=True)
class SubjectMaps:
    """What the derivatives hold for one subject. A name found in more than one file (two
    pipelines) is left out: it would have to be chosen between."""

    mask: Path | None
    labels: dict[str, Path]  # label -> its probseg map (GM, WM, CSF, lesions...)

    @property
    def tissues(self) -> dict[str, Path] | None:
        """GM, WM and CSF maps, when all three are there."""
        if not all(name in self.labels for name in TISSUE_LABELS):
            return None
        return {name: self.labels[name] for name in TISSUE_LABELS}


def find_subject_maps(root: str | Path, subject: str) -> SubjectMaps:
    """The brain mask and probability maps of ``subject`` (``"sub-01"`` or ``"sub-01/ses-1"``)."""
    parts = subject.split("/")
    folders = [
        folder for folder in Path(root).glob(f"derivatives/*/{'/'.join(parts)}/anat")
        if folder.is_dir()
    ]  # fmt: skip
    prefix = "_".join(parts)
    masks = sorted(p for f in folders for p in f.glob(f"{prefix}*_desc-brain_mask.nii*"))
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for path in folder.glob(f"{prefix}*_label-*_probseg.nii*"):
            label = path.name.split("_label-")[1].split("_")[0]
            found.setdefault(label, []).append(path)
    labels = {label: paths[0] for label, paths in sorted(found.items()) if len(paths) == 1}
    return SubjectMaps(mask=masks[0] if len(masks) == 1 else None, labels=labels)
