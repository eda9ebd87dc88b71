"""The simulated cohorts of the paper's evaluation: train, internal and zero-shot test sets.

Three BIDS data sets are simulated (:func:`simulate_cohorts`), each from its own subject seed, so
that no virtual subject appears in two of them:

- ``train``: the subjects a model is trained on, scanned with the *seen* protocols;
- ``internal``: held-out subjects scanned with the same seen protocols. It measures how well the
  model generalises to new anatomy when the acquisition is familiar;
- ``zero-shot``: held-out subjects scanned with protocols never seen in training: the *unseen*
  part of the library plus *off-grid* variants of seen protocols. Zero-shot generalisation means
  that neither the subject nor the protocol took part in training; a test that changed only one of
  the two would credit the model for what it memorised.

The split of the packaged library (``load_protocols("library")``, 25 protocols) follows one fixed
rule (:func:`split_protocols`): a protocol is unseen if its field strength is 7 T or more (an
unseen field strength), or if its vendor is GE (an unseen vendor). GE is the vendor chosen because
every modality the tasks need (T1w, T2w, FLAIR, PD, T1CE) keeps a Siemens or Philips protocol at
1.5 T or 3 T without it; holding out Philips would leave PD and T1CE one protocol each, holding
out Siemens would remove the 3 T PD and T1CE protocols altogether. That gives

- 19 seen: T1w hcp, mprage, tfe, mprage15, ffe15; T2w hcp, tse, tse15; FLAIR tse, space, vista;
  PD tse15, tse; T2star gre, gre15; SWI swi, swi15; T1CE mprage, se15;
- 6 unseen: T1w bravo, se15, mprage7; T2w fse; FLAIR fse15; SWI swan.

The off-grid protocols (:func:`off_grid_protocols`) test the third kind of novelty, timings
outside the training grid at a familiar field strength and vendor: for each task modality, the
seen protocol with the largest value of the pushed timing is copied with that timing (and, for
some modalities, a second one) set :data:`OFF_GRID_FACTOR` times the largest value seen for the
modality: T1w and T1CE TR and TI, T2w TE, FLAIR TI, PD TR and TE. With the library's seen set:
T1w ``offgridhcp`` (3 T, TR 3000, TI 1200), T2w ``offgridhcp`` (3 T, TE 675.6), FLAIR
``offgridtse`` (3 T, TI 3000), PD ``offgridtse15`` (1.5 T, TR 6870, TE 14.4), T1CE
``offgridmprage`` (3 T, TR 2760, TI 1080). The names keep to letters and digits because a
protocol's name is its BIDS ``acq-`` label.

A data set already on disk is reused when its ``cohort.json`` stamp records the same simulator
(a digest of ``tumsyn.simulate``'s code and tables), subject count, subject seed, voxel size,
enhancing fraction and protocols (every setting, not only the names); any other folder is removed
and simulated again. ``workers`` and the sizes of the other
data sets do not change a data set's bytes, so they do not invalidate it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field

from tumsyn import __version__
from tumsyn.config import StrictConfig
from tumsyn.errors import MetadataError, TumsynError
from tumsyn.io import save_json
from tumsyn.metadata import Protocol
from tumsyn.simulate import CohortSettings, check_protocols, simulate_dataset

__all__ = [
    "COHORTS",
    "OFF_GRID_FACTOR",
    "TASK_MODALITIES",
    "UNSEEN_FIELD_STRENGTH",
    "UNSEEN_MANUFACTURER",
    "CohortPlan",
    "is_unseen",
    "off_grid_protocols",
    "protocol_key",
    "simulate_cohorts",
    "simulator_fingerprint",
    "split_protocols",
]

#: Modalities the evaluation tasks synthesise; each needs a seen protocol.
TASK_MODALITIES = ("T1w", "T2w", "FLAIR", "PD", "T1CE")
#: Protocols at this field strength (tesla) or above are unseen.
UNSEEN_FIELD_STRENGTH = 7.0
#: Protocols of this vendor are unseen.
UNSEEN_MANUFACTURER = "GE"
#: Off-grid timings are this many times the largest value seen for their modality.
OFF_GRID_FACTOR = 1.2
#: The data sets, in the order written, and the offset of their subject seed from ``plan.seed``.
COHORTS = {"train": 0, "internal": 1000, "zero-shot": 2000}

# Per modality, the timings pushed beyond the seen range; the first chooses the base protocol.
_OFF_GRID_FIELDS = {
    "T1w": ("tr", "ti"),
    "T2w": ("te",),
    "FLAIR": ("ti",),
    "PD": ("tr", "te"),
    "T1CE": ("tr", "ti"),
}
_OFF_GRID_PREFIX = "offgrid"
_DATASET_ENTRIES = {"derivatives", "dataset_description.json", "README", "participants.tsv"}
_DATASET_ENTRIES |= {"participants.json", "cohort.json"}
_STAMP = "cohort.json"


def protocol_key(protocol: Protocol) -> str:
    """``"modality/name"``: names are unique per modality only (``hcp`` is a T1w and a T2w)."""
    return f"{protocol.metadata.modality}/{protocol.name}"


def is_unseen(protocol: Protocol) -> bool:
    """The split rule: 7 T or above, or the held-out vendor."""
    field = protocol.metadata.field_strength
    strong = field is not None and field >= UNSEEN_FIELD_STRENGTH
    return strong or protocol.metadata.manufacturer == UNSEEN_MANUFACTURER


def split_protocols(protocols: Sequence[Protocol]) -> tuple[list[Protocol], list[Protocol]]:
    """``(seen, unseen)``: unseen are protocols at 7 T or above, or by GE (see module docstring).

    Order is kept. With the packaged library: 19 seen, 6 unseen.

    Raises:
        MetadataError: a task modality present in ``protocols`` would have no seen protocol.
    """
    seen = [p for p in protocols if not is_unseen(p)]
    unseen = [p for p in protocols if is_unseen(p)]
    given = {p.metadata.modality for p in protocols}
    kept = {p.metadata.modality for p in seen}
    missing = [m for m in TASK_MODALITIES if m in given and m not in kept]
    if missing:
        raise MetadataError(
            f"no seen protocol left for {', '.join(missing)}: every one is at "
            f">= {UNSEEN_FIELD_STRENGTH:g} T or by {UNSEEN_MANUFACTURER}"
        )
    return seen, unseen


def _beyond(largest: float) -> float:
    return round(largest * OFF_GRID_FACTOR, 2)


def off_grid_protocols(seen: Sequence[Protocol]) -> list[Protocol]:
    """One protocol per task modality with timings beyond every seen one of that modality.

    For each modality of :data:`TASK_MODALITIES` (T1CE only if ``seen`` has one), the seen
    protocol with the largest value of the first pushed timing (T1w/T1CE: TR and TI; T2w: TE;
    FLAIR: TI; PD: TR and TE) is copied with those timings set to :data:`OFF_GRID_FACTOR` times
    the largest seen value, keeping its field strength, vendor and flip angle. The copy is named
    ``offgrid<name>``. Each is checked to be renderable (:func:`tumsyn.simulate.check_protocols`).

    Raises:
        MetadataError: T1w, T2w, FLAIR or PD has no seen protocol with the timings needed.
    """
    result = []
    for modality, fields in _OFF_GRID_FIELDS.items():
        candidates = [
            p
            for p in seen
            if p.metadata.modality == modality
            and all(getattr(p.metadata, field) is not None for field in fields)
        ]
        if not candidates:
            if modality == "T1CE" and not any(p.metadata.modality == "T1CE" for p in seen):
                continue
            raise MetadataError(
                f"no seen {modality} protocol with {' and '.join(f.upper() for f in fields)} "
                "to build an off-grid protocol from"
            )
        of_modality = [p.metadata for p in seen if p.metadata.modality == modality]
        changes = {
            field: _beyond(max(getattr(m, field) for m in of_modality if getattr(m, field)))
            for field in fields
        }
        base = max(candidates, key=lambda p: getattr(p.metadata, fields[0]))
        try:
            metadata = base.metadata.replace(**changes)
        except MetadataError as error:
            raise MetadataError(f"off-grid {modality} from {base.name!r}: {error}") from None
        result.append(Protocol(_OFF_GRID_PREFIX + base.name, metadata))
    check_protocols(result)
    return result


class CohortPlan(StrictConfig):
    """How many subjects each data set has, and how they are simulated.

    Args:
        train_subjects, internal_subjects, zero_shot_subjects: subjects per data set.
        voxel_size: isotropic voxel size in mm replacing every protocol's own.
        seed: subject seeds are ``seed``, ``seed + 1000`` and ``seed + 2000`` (train, internal,
            zero-shot), so the three data sets never share a subject.
        enhancing_fraction: share of subjects with an enhancing lesion.
        workers: processes per data set; the data does not depend on it.
    """

    train_subjects: int = Field(ge=1)
    internal_subjects: int = Field(ge=1)
    zero_shot_subjects: int = Field(ge=1)
    voxel_size: float = Field(default=2.0, gt=0.05, le=10.0)
    seed: int = 0
    enhancing_fraction: float = Field(default=0.3, ge=0.0, le=1.0)
    workers: int = Field(default=1, ge=1)


def _protocol_record(protocol: Protocol) -> dict[str, Any]:
    metadata = {k: v for k, v in asdict(protocol.metadata).items() if v is not None}
    if "voxel_size" in metadata:
        metadata["voxel_size"] = list(metadata["voxel_size"])
    return {"name": protocol.name, **metadata}


def simulator_fingerprint() -> str:
    """A digest of the simulator's code and tables (``tumsyn.simulate``): a cohort made by another
    simulator (recalibrated tissues, a new sequence model) is stale even with the same plan."""
    folder = resources.files("tumsyn") / "simulate"
    digest = hashlib.sha256()
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".py"):
            digest.update(item.name.encode() + b"\0" + item.read_bytes())
    return digest.hexdigest()[:16]


def _stamp(name: str, plan: CohortPlan, settings: CohortSettings, protocols: list[Protocol]):
    return {
        "cohort": name,
        "simulator": simulator_fingerprint(),
        "subjects": settings.subjects,
        "seed": settings.seed,
        "voxel_size": plan.voxel_size,
        "enhancing_fraction": settings.enhancing_fraction,
        "protocols": [_protocol_record(p) for p in protocols],
    }


def _is_current(root: Path, stamp: dict[str, Any]) -> bool:
    stamp_file = root / _STAMP
    if not (root / "participants.tsv").is_file() or not stamp_file.is_file():
        return False
    try:
        recorded = json.loads(stamp_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and {k: recorded.get(k) for k in stamp} == stamp


def _remove_dataset(root: Path) -> None:
    """Delete a stale or partial data set, refusing a folder that holds anything else."""
    if not root.exists():
        return
    if not root.is_dir():
        raise TumsynError(f"{root}: expected a simulated data set folder, found a file")
    for entry in root.iterdir():
        ours = entry.name in _DATASET_ENTRIES or entry.name.startswith(("sub-", "."))
        if not ours:
            raise TumsynError(
                f"{root}: holds {entry.name!r}, which the simulator does not write; "
                "not removing it (choose another folder)"
            )
    shutil.rmtree(root)


def simulate_cohorts(plan: CohortPlan, folder: Path) -> dict[str, Path]:
    """Write ``folder/train``, ``folder/internal`` and ``folder/zero-shot`` (BIDS), if needed.

    Protocols: the packaged library split by :func:`split_protocols`; train and internal use the
    seen ones, zero-shot the unseen ones plus :func:`off_grid_protocols`. Also writes
    ``folder/protocols.json`` (the rule and the ``modality/name`` keys of each set, with the
    off-grid protocols' settings). A data set whose ``cohort.json`` matches is kept untouched.

    Returns:
        ``{"train": path, "internal": path, "zero-shot": path}``.
    """
    from tumsyn.metadata import load_protocols

    seen, unseen = split_protocols(load_protocols("library"))
    off_grid = off_grid_protocols(seen)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_json(
        folder / "protocols.json",
        {
            "rule": (
                f"unseen: field strength >= {UNSEEN_FIELD_STRENGTH:g} T or manufacturer "
                f"{UNSEEN_MANUFACTURER}; off-grid: timings x{OFF_GRID_FACTOR:g} the largest seen"
            ),
            "seen": [protocol_key(p) for p in seen],
            "unseen": [protocol_key(p) for p in unseen],
            "off_grid": [protocol_key(p) for p in off_grid],
            "off_grid_protocols": [_protocol_record(p) for p in off_grid],
        },
    )
    subjects = {
        "train": plan.train_subjects,
        "internal": plan.internal_subjects,
        "zero-shot": plan.zero_shot_subjects,
    }
    protocol_sets = {"train": seen, "internal": seen, "zero-shot": unseen + off_grid}
    paths = {}
    for name, offset in COHORTS.items():
        root = folder / name
        protocols = protocol_sets[name]
        settings = CohortSettings(
            subjects=subjects[name],
            seed=plan.seed + offset,
            enhancing_fraction=plan.enhancing_fraction,
        )
        stamp = _stamp(name, plan, settings, protocols)
        if not _is_current(root, stamp):
            _remove_dataset(root)
            simulate_dataset(
                root,
                settings,
                protocols,
                voxel_size=(plan.voxel_size,) * 3,
                workers=plan.workers,
                progress=False,
            )
            record = {**stamp, "plan": plan.model_dump(), "tumsyn_version": __version__}
            save_json(root / _STAMP, record)
        paths[name] = root
    return paths
