"""Prompt format: exact text, round trip (property-based), and errors that name the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ISSUE_FLAIR
from tumsyn.errors import MetadataError, PromptParseError
from tumsyn.metadata import MODALITIES, ImagingMetadata, format_prompt, parse_prompt
from tumsyn.metadata.prompt import prompt_voxel_size

PARAMS = "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree)"
FLAIR = (
    "Age: 70; Gender: F; Scanner: 3.0 Siemens; Modality: FLAIR; Voxel size: (1.0, 1.0, 3.0); "
    f"{PARAMS}: (9000.0, 81.0, 2500.0, 150.0)"
)


def _not_a_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return word.lower() != "none"
    return False


def _positive(high: float) -> st.SearchStrategy[float]:
    # From 0.001 up: sub-denormal values would make "TE < TR" unsatisfiable in `timings`.
    return st.floats(min_value=1e-3, max_value=high, allow_nan=False)


# Voxel edges above the 0.05 mm floor (below it, microns were typed as mm).
_voxel_edge = st.floats(min_value=0.051, max_value=10.0)


words = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,8}", fullmatch=True).filter(_not_a_number)
manufacturers = st.one_of(
    st.sampled_from(["Siemens", "SIEMENS", "Philips Medical Systems", "GE MEDICAL SYSTEMS", "UIH"]),
    st.lists(words, min_size=1, max_size=3).map(" ".join),
)


@st.composite
def timings(draw) -> tuple[float | None, float | None]:
    tr = draw(st.none() | _positive(30000.0))
    if tr is None:
        return None, draw(st.none() | _positive(30000.0))
    te = draw(st.none() | st.floats(min_value=tr / 1000, max_value=tr, exclude_max=True))
    return tr, te


@st.composite
def metadata_records(draw) -> ImagingMetadata:
    tr, te = draw(timings())
    return ImagingMetadata(
        age=draw(st.none() | st.floats(min_value=0.0, max_value=120.0)),
        sex=draw(st.none() | st.sampled_from(["F", "M", "female", "male"])),
        field_strength=draw(st.none() | _positive(12.0)),
        manufacturer=draw(st.none() | manufacturers),
        modality=draw(st.none() | st.sampled_from([*MODALITIES, "PDw", "T2starw", "flair"])),
        voxel_size=draw(st.none() | st.tuples(_voxel_edge, _voxel_edge, _voxel_edge)),
        tr=tr,
        te=te,
        ti=draw(st.none() | _positive(30000.0)),
        flip_angle=draw(st.none() | _positive(180.0) | words),
    )


@given(metadata_records())
def test_parse_inverts_format(metadata: ImagingMetadata) -> None:
    text = format_prompt(metadata)
    assert parse_prompt(text) == metadata
    assert format_prompt(parse_prompt(text)) == text


def test_exact_text_of_the_issue_example() -> None:
    metadata = ISSUE_FLAIR
    assert format_prompt(metadata) == FLAIR


def test_paper_example_with_none_and_flip_angle_word() -> None:
    text = (
        "Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8); "
        f"{PARAMS}: (3200.0, 563.0, None, T2var)"
    )
    metadata = parse_prompt(text)
    assert metadata.ti is None
    assert metadata.flip_angle == "T2var"
    assert format_prompt(metadata) == text


def test_official_file_spacing_and_fractional_age() -> None:
    # Official prompt files put two spaces before the parameter tuple.
    text = (
        "Age: 19.8; Gender: M; Scanner: 1.5 Philips; Modality: PD; Voxel size: (0.9, 0.9, 1.2); "
        f"{PARAMS}:  (3000.0, 15.0, None, 90.0)"
    )
    metadata = parse_prompt(text)
    assert metadata.age == 19.8
    assert format_prompt(metadata) == text.replace(":  (", ": (")


def test_all_unknown() -> None:
    text = format_prompt(ImagingMetadata())
    assert text == (
        "Age: None; Gender: None; Scanner: None None; Modality: None; Voxel size: None; "
        f"{PARAMS}: (None, None, None, None)"
    )
    assert parse_prompt(text) == ImagingMetadata()


def test_field_order_and_label_case_are_tolerated() -> None:
    parts = FLAIR.split("; ")
    shuffled = "; ".join([parts[3].lower().replace("flair", "FLAIR"), *parts[:3], *parts[4:]])
    assert parse_prompt(shuffled) == parse_prompt(FLAIR)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "empty"),
        ("Age: 70; Gender: F", "Scanner"),
        (FLAIR.replace("Age: 70", "Age: seventy"), "'Age'"),
        (FLAIR.replace("3.0 Siemens", "3.0"), "'Scanner'"),
        (FLAIR.replace("(1.0, 1.0, 3.0)", "(1.0, 3.0)"), "'Voxel size'"),
        (FLAIR.replace("(1.0, 1.0, 3.0)", "(1.0, None, 3.0)"), "'Voxel size'"),
        (FLAIR.replace("(9000.0, 81.0, 2500.0, 150.0)", "(9000.0, 81.0)"), "Imaging parameter"),
        (FLAIR.replace("81.0", "eighty"), "'TE'"),
        (FLAIR + "; Age: 12", "more than once"),
        (FLAIR + "; Coil: 32ch", "unknown field 'Coil'"),
        (FLAIR.replace("Gender: F;", "Gender F;"), "Label: value"),
    ],
)
def test_malformed_prompts_name_the_field(text: str, names: str) -> None:
    with pytest.raises(PromptParseError, match=names):
        parse_prompt(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("FLAIR;", "T3w;"), "unknown modality 'T3w'"),
        (("(9000.0, 81.0", "(9000.0, 9500.0"), "TE 9500 ms must be shorter than TR 9000 ms"),
        (("(9000.0,", "(40000.0,"), "tr 40000.0 ms is out of range"),
        (("Age: 70", "Age: 130"), "age 130.0 years is out of range"),
        (("(1.0, 1.0, 3.0)", "(1.0, 1.0, 12.0)"), "voxel_size 12.0 mm is out of range"),
        (("150.0)", "270.0)"), "flip_angle 270.0 degrees is out of range"),
    ],
)
def test_invalid_values_in_prompts(change: tuple[str, str], message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        parse_prompt(FLAIR.replace(*change))


def test_prompt_voxel_size_rounds_header_values() -> None:
    assert prompt_voxel_size((0.46875, 0.46875, 3.0000001)) == (0.47, 0.47, 3.0)
