from __future__ import annotations

import numpy as np
import pytest

from tumsyn.errors import MetadataError
from tumsyn.metadata import ImagingMetadata, load_protocols
from tumsyn.simulate.sequences import (
    inversion_recovery,
    mprage,
    sequence_for,
    signal,
    spin_echo,
    spoiled_gradient_echo,
    swi_phase_mask,
)
from tumsyn.simulate.tissues import TISSUES, tissue_properties

GM, WM, CSF, WMH, ENH = (TISSUES.index(t) for t in ("GM", "WM", "CSF", "WMH", "ENH"))


def _protocol(modality: str, **settings) -> ImagingMetadata:
    return ImagingMetadata(modality=modality, field_strength=3.0, **settings)


def _signals(metadata: ImagingMetadata) -> np.ndarray:
    """Magnitude signal of each pure tissue."""
    return np.abs(signal(tissue_properties(metadata.field_strength, gadolinium_mm=0.4), metadata))


@pytest.mark.parametrize(
    "protocol",
    [p for p in load_protocols("library") if p.metadata.modality in ("T1w", "T1CE")],
    ids=lambda p: f"{p.metadata.modality}-{p.name}",
)
def test_t1_weighted_white_matter_brightest(protocol) -> None:
    s = _signals(protocol.metadata)
    assert s[WM] > s[GM] > s[CSF], protocol


@pytest.mark.parametrize(
    "protocol",
    [p for p in load_protocols("library") if p.metadata.modality == "T2w"],
    ids=lambda p: p.name,
)
def test_t2_weighted_csf_brightest(protocol) -> None:
    s = _signals(protocol.metadata)
    assert s[CSF] > s[GM] > s[WM]
    assert s[WMH] > s[WM]


@pytest.mark.parametrize(
    "protocol",
    [p for p in load_protocols("library") if p.metadata.modality == "FLAIR"],
    ids=lambda p: p.name,
)
def test_flair_dark_csf_bright_lesions(protocol) -> None:
    s = _signals(protocol.metadata)
    assert s[CSF] < 0.2 * s[WM]
    assert s[WMH] > 1.3 * max(s[WM], s[GM])


def test_pd_t2star_swi_and_t1ce_contrasts() -> None:
    pd = _signals(_protocol("PD", tr=3000, te=12, flip_angle=150))
    assert pd[GM] > pd[WM]
    assert max(pd[:3]) / min(pd[:3]) < 1.3  # proton density weighting: little contrast
    t2star = _signals(_protocol("T2star", tr=650, te=20, flip_angle=20))
    assert t2star[CSF] > t2star[GM] > t2star[WM]
    swi_protocol = _protocol("SWI", tr=28, te=20, flip_angle=15)
    gre = _signals(_protocol("T2star", tr=28, te=20, flip_angle=15))
    swi = _signals(swi_protocol)
    assert swi[GM] < gre[GM]  # paramagnetic grey matter darkened by the phase mask
    assert swi[WM] == pytest.approx(gre[WM])  # diamagnetic: mask is 1
    mprage_settings = {"tr": 2300, "te": 2.98, "ti": 900, "flip_angle": 9}
    t1w, t1ce = (
        _signals(_protocol("T1w", **mprage_settings)),
        _signals(_protocol("T1CE", **mprage_settings)),
    )
    assert t1ce[ENH] > 2 * t1w[ENH]
    np.testing.assert_array_equal(t1ce[:ENH], t1w[:ENH])


def test_equations_against_hand_computed_values() -> None:
    # Spin echo, PD 0.8, T1 1000, T2 100, TR 1000, TE 100: 0.8 (1 - e^-1) e^-1.
    assert spin_echo(0.8, 1000.0, 100.0, tr=1000, te=100) == pytest.approx(
        0.8 * (1 - np.exp(-1)) * np.exp(-1)
    )
    # Inversion recovery nulls a tissue at TI = T1 ln 2 when TR >> T1; negative before the null.
    assert abs(inversion_recovery(1.0, 1000.0, 100.0, tr=1e7, te=10, ti=1000 * np.log(2))) < 1e-9
    assert inversion_recovery(1.0, 1000.0, 100.0, tr=1e7, te=0, ti=0) == pytest.approx(-1.0)
    # Spoiled gradient echo at the Ernst angle: sqrt((1 - E1) / (1 + E1)).
    e1 = np.exp(-20 / 1000)
    ernst = np.rad2deg(np.arccos(e1))
    value = spoiled_gradient_echo(1.0, 1000.0, 1e12, tr=20, te=0, flip_angle=ernst)
    assert value == pytest.approx(np.sqrt((1 - e1) / (1 + e1)))
    assert swi_phase_mask(-0.05, field_strength=3, te=20) == 1.0  # diamagnetic


def _mprage_by_simulation(t1: float, *, tr, ti, flip_angle, echo_spacing, readouts, centre):
    """Step the longitudinal magnetisation through many inversion cycles (M0 = 1)."""
    alpha = np.deg2rad(flip_angle)
    before = ti - centre * readouts * echo_spacing
    after = tr - before - readouts * echo_spacing

    def relax(m: float, t: float) -> float:
        return 1 - (1 - m) * np.exp(-t / t1)

    m, at_centre = 1.0, 0.0
    for _ in range(60):
        m = relax(-m, before)
        for k in range(readouts):
            if k == round(centre * readouts):
                at_centre = m
            m = relax(m * np.cos(alpha), echo_spacing)
        m = relax(m, after)
    return float(np.sin(alpha) * at_centre)


@pytest.mark.parametrize("t1", [800.0, 1400.0, 4000.0, 9000.0])
@pytest.mark.parametrize("centre", [0.5, 0.0])
def test_mprage_closed_form_equals_stepwise_simulation(t1: float, centre: float) -> None:
    settings = {"tr": 2300.0, "ti": 900.0, "flip_angle": 9.0, "echo_spacing": 7.0}
    closed = mprage(1.0, t1, 1e12, te=0.0, readouts=160, centre=centre, **settings)
    stepped = _mprage_by_simulation(t1, readouts=160, centre=centre, **settings)
    assert closed == pytest.approx(stepped, rel=1e-6)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"modality": "T1w", "tr": 2300, "te": 3, "ti": 900, "flip_angle": 9}, "mprage"),
        (
            {"modality": "T1w", "tr": 2000, "te": 10, "ti": 800, "flip_angle": 150},
            "inversion_recovery",
        ),
        ({"modality": "T1w", "tr": 25, "te": 4.6, "flip_angle": 30}, "spoiled_gradient_echo"),
        ({"modality": "T1w", "tr": 500, "te": 12, "flip_angle": 90}, "spin_echo"),
        ({"modality": "T2w", "tr": 3200, "te": 563, "flip_angle": "T2var"}, "spin_echo"),
        ({"modality": "FLAIR", "tr": 9000, "te": 81, "ti": 2500}, "inversion_recovery"),
        ({"modality": "SWI", "tr": 28, "te": 20, "flip_angle": 15}, "swi"),
    ],
)
def test_sequence_choice(settings, expected) -> None:
    assert sequence_for(ImagingMetadata(**settings)) == expected


def test_variable_flip_angle_uses_a_shorter_effective_te() -> None:
    nominal = _signals(_protocol("T2w", tr=3200, te=563, flip_angle=150))
    variable = _signals(_protocol("T2w", tr=3200, te=563, flip_angle="T2var"))
    assert variable[WM] > 5 * nominal[WM]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"modality": "FLAIR", "tr": 9000, "te": 81}, "needs TI"),
        ({"modality": "FLAIR", "tr": 2000, "te": 81, "ti": 2500}, "shorter than TR"),
        ({"modality": "T2star", "tr": 600, "te": 20}, "needs FLIP_ANGLE"),
        ({"modality": "SWI", "tr": 28, "te": 20, "flip_angle": "T2var"}, "in degrees"),
        ({"modality": "T2w", "te": 100}, "needs TR"),
    ],
)
def test_protocols_the_equations_cannot_honour(settings, message) -> None:
    with pytest.raises(MetadataError, match=message):
        _signals(_protocol(**settings))


def test_protocol_without_modality_or_field() -> None:
    with pytest.raises(MetadataError, match="modality"):
        sequence_for(ImagingMetadata(tr=100, te=10))
    with pytest.raises(MetadataError, match="field strength"):
        tissue_properties(ImagingMetadata(modality="T2w").field_strength)
