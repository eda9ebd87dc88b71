from __future__ import annotations

from pathlib import Path

import pytest

from tumsyn.errors import ConfigError
from tumsyn.metadata import MODALITIES, default_protocol, load_protocols


def test_packaged_sets_cover_every_modality() -> None:
    default = load_protocols("default")
    assert sorted(p.metadata.modality for p in default) == sorted(MODALITIES)
    assert all(p.metadata.voxel_size == (1.0, 1.0, 1.0) for p in default)
    library = load_protocols("library")
    assert {p.metadata.modality for p in library} == set(MODALITIES)
    assert {p.metadata.field_strength for p in library} >= {1.5, 3.0}
    assert len({p.metadata.manufacturer for p in library}) >= 3


def test_paper_examples_are_in_the_library() -> None:
    by_key = {(p.name, p.metadata.modality): p.metadata for p in load_protocols("library")}
    hcp_t1 = by_key["hcp", "T1w"]
    assert (hcp_t1.tr, hcp_t1.te, hcp_t1.ti, hcp_t1.flip_angle) == (2500, 2.2, 1000, 8)
    assert hcp_t1.voxel_size == (0.8, 0.8, 0.8)
    hcp_t2 = by_key["hcp", "T2w"]
    assert (hcp_t2.tr, hcp_t2.te, hcp_t2.flip_angle) == (3200, 563, "T2var")


def test_default_protocol_per_modality() -> None:
    assert default_protocol("FLAIR").metadata.ti is not None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocols.yaml"
    path.write_text(text)
    return path


GOOD = "{name: a, modality: T2w, field_strength: 3, tr: 5000, te: 100, voxel_size: [1, 1, 3]}"


def test_a_user_file(tmp_path: Path) -> None:
    (protocol,) = load_protocols(_write(tmp_path, f"protocols:\n  - {GOOD}\n"))
    assert protocol.name == "a"
    assert protocol.metadata.voxel_size == (1.0, 1.0, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("protocols: [", "not valid YAML"),
        ("- a\n- b\n", "top-level 'protocols:' list"),
        ("protocols: []\n", "empty"),
        (f"protocols: [{GOOD}]\nextra: 1\n", "unknown top-level key"),
        ("protocols: [{name: a, modality: T2w, echo: 3}]\n", "unknown setting.*echo"),
        ("protocols: [{name: a_b, modality: T2w}]\n", "letters and digits"),
        ("protocols: [{name: a}]\n", "needs a modality"),
        ("protocols: [{name: a, modality: T3w}]\n", "unknown modality 'T3w'"),
        ("protocols: [{name: a, modality: T2w, tr: 50, te: 100}]\n", "TE.*TR"),
        (f"protocols: [{GOOD}, {GOOD}]\n", "two T2w protocols are named 'a'"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_protocols(_write(tmp_path, text))


def test_missing_file_names_the_packaged_sets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default, library"):
        load_protocols(tmp_path / "nope.yaml")
