"""Data set indexes: BIDS folders, CSV manifests, official prompt files; subject splits."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tumsyn.data import (
    ImageRecord,
    index_bids,
    index_manifest,
    index_prompt_files,
    load_index,
    split_subjects,
)
from tumsyn.errors import ConfigError, InputFileError, MetadataError, MetadataWarning
from tumsyn.metadata import (
    MODALITIES,
    ImagingMetadata,
    format_prompt,
    parse_prompt,
    read_participants,
    write_prompt_file,
)


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _by_modality(records: list[ImageRecord], subject: str) -> dict[str, ImageRecord]:
    return {r.metadata.modality: r for r in records if r.subject == subject}


def test_bids_index_finds_every_modality_of_every_subject(bids_root, records):
    assert [r.path for r in records] == sorted(r.path for r in records)
    assert {r.subject for r in records} == {"sub-001", "sub-002"}
    participants = read_participants(bids_root / "participants.tsv")
    for subject in ("sub-001", "sub-002"):
        images = _by_modality(records, subject)
        assert sorted(images) == sorted(MODALITIES)
        for record in images.values():
            assert record.prompt == format_prompt(record.metadata)
            assert record.path.name.startswith(subject + "_")
            assert record.metadata.voxel_size == (4.0, 4.0, 4.0)
            assert record.metadata.age == float(participants[subject]["age"])
            assert record.metadata.sex == participants[subject]["sex"]
        # Sidecar values (seconds in BIDS) arrive in ms; the ce- entity makes a T1CE.
        t1 = images["T1w"].metadata
        assert (t1.tr, t1.te, t1.ti, t1.flip_angle) == (2300.0, 2.98, 900.0, 9.0)
        assert images["T1CE"].path.name.endswith("ce-gadolinium_T1w.nii.gz")
        assert images["SWI"].path.name.endswith("rec-swi_T2starw.nii.gz")
        assert images["T2w"].metadata.flip_angle == "T2var"
    # The tissue maps under derivatives/ are not training images.
    assert not any("derivatives" in r.path.parts for r in records)


def test_bids_sessions_and_images_without_sidecar(tmp_path, records):
    source = _by_modality(records, "sub-001")["FLAIR"].path
    anat = tmp_path / "sub-07" / "ses-2" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(source, anat / "sub-07_ses-2_FLAIR.nii.gz")  # no sidecar
    shutil.copy(source, anat / "sub-07_ses-2_dwi.nii.gz")  # not one of the modalities
    shutil.copy(source, anat / "._sub-07_ses-2_T1w.nii.gz")  # a macOS resource fork
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-07\t31\tM\n")
    (indexed,) = index_bids(tmp_path)
    assert indexed.subject == "sub-07/ses-2"
    assert indexed.metadata == ImagingMetadata(
        age=31, sex="M", modality="FLAIR", voxel_size=(4.0, 4.0, 4.0)
    )
    assert "Modality: FLAIR" in indexed.prompt and "TR" in indexed.prompt


def test_bids_sidecar_in_wrong_units_is_read_as_ms_with_a_warning(tmp_path, records):
    source = _by_modality(records, "sub-001")["T1w"].path
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(source, anat / "sub-01_T1w.nii.gz")
    (anat / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2300}))
    with pytest.warns(MetadataWarning, match=r"sub-01_T1w\.json.*milliseconds"):
        (record,) = index_bids(tmp_path)
    assert record.metadata.tr == 2300


def test_manifest_with_metadata_columns(tmp_path, records):
    image = _by_modality(records, "sub-002")["PD"].path
    row = {
        "path": str(image),
        "subject": "s2",
        "modality": "PDw",
        "age": "40",
        "sex": "female",
        "field_strength": "1.5",
        "manufacturer": "PHILIPS",
        "tr": "3000",
        "te": "12",
        "ti": "n/a",
        "flip_angle": "90",
    }
    (record,) = index_manifest(_write_csv(tmp_path / "list.csv", [row]))
    assert record.subject == "s2"
    assert record.path == image
    assert record.metadata == ImagingMetadata(
        age=40,
        sex="F",
        field_strength=1.5,
        manufacturer="Philips",
        modality="PD",
        voxel_size=(4.0, 4.0, 4.0),
        tr=3000,
        te=12,
        flip_angle=90,
    )
    assert record.prompt == format_prompt(record.metadata)


def test_manifest_with_prompts_and_relative_paths(tmp_path, records):
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for record in records[:3]:
        shutil.copy(record.path, folder / record.path.name)
        rows.append(
            {
                "path": f"images/{record.path.name}",
                "subject": record.subject,
                "prompt": record.prompt,
            }
        )
    indexed = index_manifest(_write_csv(tmp_path / "manifest.csv", rows))
    assert [r.prompt for r in indexed] == [r.prompt for r in records[:3]]
    assert [r.path for r in indexed] == [folder / r.path.name for r in records[:3]]
    assert load_index(tmp_path / "manifest.csv") == indexed


def test_manifest_voxel_size_column_and_unknown_voxel_size_in_prompt(tmp_path, records):
    image = records[0].path
    prompt = format_prompt(ImagingMetadata(modality="T1w", tr=2000, te=3))  # voxel size None
    with_prompt = index_manifest(
        _write_csv(tmp_path / "a.csv", [{"path": str(image), "subject": "x", "prompt": prompt}])
    )
    assert with_prompt[0].metadata.voxel_size == (4.0, 4.0, 4.0)  # from the header
    columns = index_manifest(
        _write_csv(
            tmp_path / "b.csv",
            [{"path": str(image), "subject": "x", "modality": "T1w", "voxel_size": "1x1x3"}],
        )
    )
    assert columns[0].metadata.voxel_size == (1.0, 1.0, 3.0)


@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        ({"path": "{image}", "modality": "T1w"}, ConfigError, "lacks the column.*subject"),
        ({"path": "{image}", "subject": "a"}, ConfigError, "lacks the column.*prompt"),
        (
            {"path": "{image}", "subject": "a", "modality": "T1w", "colour": "red"},
            ConfigError,
            "unknown column.*colour",
        ),
        (
            {"path": "{image}", "subject": "a", "prompt": "{prompt}", "modality": "T1w"},
            ConfigError,
            "either a prompt column or metadata columns",
        ),
        (
            {"path": "missing.nii.gz", "subject": "a", "modality": "T1w"},
            InputFileError,
            r"csv:2: image .*missing\.nii\.gz does not exist",
        ),
        (
            {"path": "{image}", "subject": "a", "modality": "T1w", "tr": "2.3", "te": "3"},
            MetadataError,
            r"csv:2: TE 3 ms must be shorter than TR 2\.3 ms",
        ),
        (
            {"path": "{image}", "subject": "a", "modality": "X-ray"},
            MetadataError,
            r"csv:2: unknown modality 'X-ray'",
        ),
    ],
)
def test_bad_manifests_are_refused_with_a_clear_message(tmp_path, records, row, error, message):
    values = {"image": str(records[0].path), "prompt": records[0].prompt}
    row = {key: value.format(**values) for key, value in row.items()}
    path = _write_csv(tmp_path / "bad.csv", [row])
    with pytest.raises(error, match=message):
        index_manifest(path)


def test_official_prompt_files(tmp_path, records):
    folder = tmp_path / "data"
    folder.mkdir()
    chosen = records[:2] + records[-1:]
    names = ["sub-001_T1w.nii.gz", "patient7_t2_axial.nii.gz", "sub-9_ses-b_FLAIR.nii.gz"]
    for record, name in zip(chosen, names, strict=True):
        shutil.copy(record.path, folder / name)
    image_list = tmp_path / "train.txt"
    image_list.write_text("# training images\n" + "".join(f"data/{n}\n" for n in names) + "\n")
    prompt_file = write_prompt_file(
        tmp_path / "prompts.txt",
        {name: record.prompt for record, name in zip(chosen, names, strict=True)},
    )
    indexed = index_prompt_files(image_list, prompt_file)
    assert [r.subject for r in indexed] == ["sub-001", "patient7", "sub-9/ses-b"]
    assert [r.prompt for r in indexed] == [r.prompt for r in chosen]
    assert [r.metadata for r in indexed] == [parse_prompt(r.prompt) for r in chosen]
    assert load_index(image_list, prompt_file=prompt_file) == indexed

    write_prompt_file(prompt_file, {names[0]: chosen[0].prompt})
    with pytest.raises(MetadataError, match=r"train\.txt:3: .* has no prompt for 'patient7"):
        index_prompt_files(image_list, prompt_file)
    with pytest.raises(InputFileError, match="no such image list"):
        index_prompt_files(tmp_path / "absent.txt", prompt_file)


def test_load_index_accepts_folders_and_csv_only(tmp_path, bids_root, records):
    assert load_index(bids_root) == records
    other = tmp_path / "images.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match=r"images\.json: not a data set; give a BIDS folder"):
        load_index(other)
    with pytest.raises(InputFileError, match=r"absent: no such file or folder"):
        load_index(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images found"):
        load_index(tmp_path / "empty")


def _fake_records(subjects: int, images: int = 2) -> list[ImageRecord]:
    metadata = ImagingMetadata(modality="T1w")
    return [
        ImageRecord(Path(f"s{s}_{i}.nii.gz"), f"sub-{s:02d}", metadata, format_prompt(metadata))
        for s in range(subjects)
        for i in range(images)
    ]


def test_split_by_subject_is_deterministic_and_disjoint():
    records = _fake_records(10)
    train, validation = split_subjects(records, 0.3, seed=4)
    assert {r.subject for r in train}.isdisjoint({r.subject for r in validation})
    assert len({r.subject for r in validation}) == 3
    assert sorted(train + validation, key=records.index) == records
    assert split_subjects(records, 0.3, seed=4) == (train, validation)
    assert split_subjects(records[::-1], 0.3, seed=4)[1] == validation[::-1]
    other_seeds = {
        frozenset(r.subject for r in split_subjects(records, 0.3, seed=s)[1]) for s in range(8)
    }
    assert len(other_seeds) > 1


def test_split_keeps_one_subject_on_each_side():
    assert len({r.subject for r in split_subjects(_fake_records(3), 0.01, seed=0)[1]}) == 1
    assert len({r.subject for r in split_subjects(_fake_records(3), 0.99, seed=0)[0]}) == 1
    assert split_subjects(_fake_records(1), 0.5, seed=0) == (_fake_records(1), [])
    assert split_subjects(_fake_records(4), 0.0, seed=0) == (_fake_records(4), [])
    with pytest.raises(ConfigError, match=r"validation_fraction must be in \[0, 1\), got 1"):
        split_subjects(_fake_records(4), 1, seed=0)
