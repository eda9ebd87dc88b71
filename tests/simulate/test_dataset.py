"""The BIDS data set that ``tumsyn simulate`` writes, checked by the official BIDS validator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn.cli import main
from tumsyn.io import load_nifti
from tumsyn.metadata import (
    bids_image_name,
    find_participant,
    load_protocols,
    metadata_from_sidecar,
    sidecar_path,
)
from tumsyn.simulate import CohortSettings, cohort_subject, simulate_dataset
from tumsyn.simulate.tissues import TISSUES

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".venv/bids-validator/node_modules/bids-validator/bin/bids-validator"
LOW_RES = (4.0, 4.0, 4.0)
SETTINGS = CohortSettings(subjects=2, seed=3, enhancing_fraction=0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "bids"
    protocols = load_protocols("default")
    return simulate_dataset(root, SETTINGS, protocols, voxel_size=LOW_RES, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_layout_and_names(dataset: Path) -> None:
    for label in ("001", "002"):
        names = sorted(p.name for p in (dataset / f"sub-{label}" / "anat").glob("*.nii.gz"))
        assert names == sorted(
            bids_image_name(label, p.metadata.modality, acq=p.name)
            for p in load_protocols("default")
        )
    assert "sub-002_acq-swi_rec-swi_T2starw.nii.gz" in names
    assert "sub-002_acq-mprage_ce-gadolinium_T1w.nii.gz" in names
    description = json.loads((dataset / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["BIDSVersion"]
    rows = (dataset / "participants.tsv").read_text().splitlines()
    assert rows[0] == "participant_id\tage\tsex" and len(rows) == 3
    derivatives = dataset / "derivatives" / "tumsyn"
    assert json.loads((derivatives / "dataset_description.json").read_text())["DatasetType"] == (
        "derivative"
    )
    assert len(list(derivatives.glob("sub-*/anat/*_probseg.nii.gz"))) == 2 * len(TISSUES)


def test_sidecars_give_back_the_protocols(dataset: Path) -> None:
    protocols = {(p.name, p.metadata.modality): p.metadata for p in load_protocols("default")}
    for image in (dataset / "sub-001" / "anat").glob("*.nii.gz"):
        volume = load_nifti(image)
        assert volume.data.dtype == np.float32 and volume.voxel_size == pytest.approx(LOW_RES)
        metadata = metadata_from_sidecar(
            sidecar_path(image),
            participant=find_participant(image),
            voxel_size=volume.voxel_size,
        )
        acq = image.name.split("_acq-")[1].split("_")[0]
        expected = protocols[acq, metadata.modality].replace(voxel_size=LOW_RES)
        assert dataclasses.replace(metadata, age=None, sex=None) == expected
        assert metadata.age is not None and metadata.sex in ("F", "M")


def test_tissue_maps_are_the_subject(dataset: Path) -> None:
    anatomy = cohort_subject(SETTINGS, 1)
    saved = nib.load(dataset / "derivatives/tumsyn/sub-001/anat/sub-001_label-WM_probseg.nii.gz")
    np.testing.assert_allclose(saved.get_fdata(), anatomy.fraction("WM"), atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(saved.affine, anatomy.grid.affine)
    record = json.loads(
        (dataset / "derivatives/tumsyn/sub-001/anat/sub-001_simulation.json").read_text()
    )
    assert record["anatomy"]["age"] == anatomy.parameters.age


def test_same_seed_same_bytes_whatever_the_workers(dataset: Path, tmp_path: Path) -> None:
    again = simulate_dataset(
        tmp_path / "again", SETTINGS, load_protocols("default"), voxel_size=LOW_RES,
        workers=2, progress=False,
    )  # fmt: skip
    assert _digest(again) == _digest(dataset)


def test_different_seed_different_subjects(dataset: Path) -> None:
    other = cohort_subject(CohortSettings(subjects=2, seed=4), 1)
    assert not np.array_equal(other.fractions, cohort_subject(SETTINGS, 1).fractions)


def test_official_bids_validator_finds_no_error(dataset: Path) -> None:
    validator = Path(os.environ.get("TUMSYN_BIDS_VALIDATOR", VALIDATOR))
    if not validator.is_file():
        pytest.fail(f"{validator} is missing: run 'make bids-validator' (make test does)")
    result = subprocess.run(
        [str(validator), str(dataset), "--json"], capture_output=True, text=True, check=False
    )
    report = json.loads(result.stdout)
    errors = [issue["key"] for issue in report["issues"]["errors"]]
    assert errors == [] and result.returncode == 0
    warnings = {issue["key"] for issue in report["issues"]["warnings"]}
    assert warnings <= {"TOO_FEW_AUTHORS"}  # one author: the simulator


def test_cli_writes_a_data_set_and_a_montage(tmp_path: Path, capsys) -> None:
    out, montage = tmp_path / "cli", tmp_path / "montage.png"
    protocols = tmp_path / "p.yaml"
    protocols.write_text(
        "protocols:\n"
        "  - {name: a, modality: T2w, field_strength: 3, tr: 5000, te: 100,\n"
        "     voxel_size: [6, 6, 6]}\n"
        "  - {name: b, modality: FLAIR, field_strength: 1.5, tr: 9000, te: 120, ti: 2500,\n"
        "     voxel_size: [6, 6, 6]}\n"
    )
    code = main(
        ["simulate", str(out), "--subjects", "1", "--protocols", str(protocols),
         "--montage", str(montage), "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert montage.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(out.glob("sub-001/anat/*.nii.gz"))) == 2
    assert "1 subjects x 2 protocols" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ("{name: a, modality: FLAIR, field_strength: 3, tr: 9000, te: 81, voxel_size: [1, 1, 1]}",
         "needs TI"),
        ("{name: a, modality: T9w, field_strength: 3, tr: 9000, te: 81}", "unknown modality"),
        ("{name: a, modality: T2w, field_strength: 3, tr: 5000, te: 90, voxel_size: [0, 1, 1]}",
         "out of range"),
        ("{name: a, modality: T2w, field_strength: 0.3, tr: 5000, te: 90, voxel_size: [1, 1, 1]}",
         "field strength"),
    ],
)  # fmt: skip
def test_cli_refuses_impossible_protocols(tmp_path: Path, capsys, protocol, message) -> None:
    protocols = tmp_path / "p.yaml"
    protocols.write_text(f"protocols:\n  - {protocol}\n")
    out = tmp_path / "out"
    assert main(["simulate", str(out), "--protocols", str(protocols), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()  # nothing written


def test_cli_refuses_a_non_empty_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["simulate", str(tmp_path), "--subjects", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
