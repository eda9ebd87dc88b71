"""Official prompt files: read what the official repository ships, write it back the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumsyn.errors import PromptParseError
from tumsyn.metadata import ImagingMetadata, parse_prompt, read_prompt_file, write_prompt_file

# A line exactly as in the official repository's Experimental_data/test_HCPD_T1w_prompt.txt.
OFFICIAL_LINE = (
    '"test_HCPD_T1w.nii.gz": "Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T1w; '
    "Voxel size: (0.8, 0.8, 0.8); Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  "
    '(2500.0, 2.2, 1000.0, 8.0)"'
)


def test_read_official_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text(OFFICIAL_LINE + "\n\n")
    prompts = read_prompt_file(path)
    assert list(prompts) == ["test_HCPD_T1w.nii.gz"]
    metadata = parse_prompt(prompts["test_HCPD_T1w.nii.gz"])
    assert (metadata.tr, metadata.te, metadata.ti, metadata.flip_angle) == (2500, 2.2, 1000, 8)


def test_write_then_read(tmp_path: Path) -> None:
    records = {
        'odd "name".nii.gz': ImagingMetadata(modality="T2w", tr=3200, te=563, flip_angle="T2var"),
        "b.nii.gz": "Age: 3; Gender: M",
    }
    path = write_prompt_file(tmp_path / "out.txt", records)
    back = read_prompt_file(path)
    assert parse_prompt(back['odd "name".nii.gz']) == records['odd "name".nii.gz']
    assert back["b.nii.gz"] == "Age: 3; Gender: M"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("just a prompt without a name\n", ":1: expected a line"),
        ('"a.nii": "x"\n"a.nii": "y"\n', ":2: 'a.nii' appears twice"),
        ('"a.nii": 5\n', "must be a string"),
    ],
)
def test_malformed_prompt_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(PromptParseError, match=message):
        read_prompt_file(path)
