"""MR signal equations, and which one a protocol (an :class:`ImagingMetadata`) calls for.

Each equation gives the signal of a voxel of one pure tissue, proportional to its proton density.
The inversion-recovery signals are *signed* (longitudinal magnetisation not yet through its null is
negative): a partial-volume voxel sums its tissues' signals by fraction and only then takes the
magnitude, so tissues on either side of the null cancel at their boundary, as in real magnitude
inversion-recovery images (the dark "India ink" lines between CSF and tissue). Times are in ms,
angles in degrees. The equations are the textbook steady-state forms (Bernstein, King and Zhou,
*Handbook of MRI Pulse Sequences*, 2004; Haacke et al., *Magnetic Resonance Imaging: Physical
Principles and Sequence Design*, 1999):

- spin echo / turbo spin echo (T2w, PD, spin-echo T1w):
  ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
- inversion recovery (FLAIR, T1-weighted IR), magnitude taken after mixing:
  ``S = PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``
- spoiled gradient echo (FLASH/SPGR T1w, T2star):
  ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2*)``, ``E1 = exp(-TR/T1)``
- MPRAGE-like inversion-prepared gradient echo (T1w with TI and a small flip angle): the steady
  state of inversion, recovery for ``TA``, a train of ``n`` spoiled pulses ``tau`` apart (signal
  read at the k-space centre, ``TI`` after the inversion), recovery for ``TD``, solved exactly
  (Deichmann R et al., Magn Reson Med 2000, 43:223; the same recursion as MP2RAGE, Marques JP et
  al., NeuroImage 2010, 49:1271).
- SWI: the spoiled gradient echo magnitude times a phase mask: phase ``phi = -2 pi gamma chi B0
  TE`` (no background field, so only tissue susceptibility differences), mask ``(pi + phi) / pi``
  for negative phase and 1 otherwise, raised to the 4th power (Haacke EM et al., Magn Reson Med
  2004, 52:612).

A flip angle of ``T2var`` (3D variable-flip-angle TSE: SPACE, CUBE, VISTA) refocuses with a
decaying flip-angle train whose contrast resembles a conventional spin echo at a shorter
echo time; it is modelled with an effective TE, a fraction of the nominal one that depends on the
contrast the train is built for (``VARIABLE_FLIP_TE_FACTORS``; Busse RF et al., Magn Reson Med
2006, 55:1030: contrast-equivalent TE well below the nominal TE).

Two effects beyond the single-compartment equations, both needed for real FLAIR and PD contrast
(grey matter brighter than white matter; ``docs/calibration.md``): spin-echo readouts decay with
two T2s (the myelin water fraction with a short T2, the rest with the tissue's T2,
:func:`transverse_decay`), and 2D multi-slice spin echoes lose bound-pool signal to incidental
magnetisation transfer (``MT_WEIGHT_*``).
"""

from __future__ import annotations

import numpy as np

from tumsyn.errors import MetadataError
from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate.tissues import MYELIN_WATER_T2, TissueProperties, contrast_enhanced

__all__ = [
    "GYROMAGNETIC_MHZ_PER_T",
    "SEQUENCES",
    "inversion_recovery",
    "mprage",
    "sequence_for",
    "signal",
    "spin_echo",
    "spoiled_gradient_echo",
    "swi_phase_mask",
]

GYROMAGNETIC_MHZ_PER_T = 42.577
#: Contrast-equivalent TE of a variable-flip-angle 3D TSE, as a fraction of its nominal TE, per
#: modality. Vendors shape the refocusing train for the contrast wanted, and its
#: contrast-equivalent TE lies well below the nominal one (Busse RF et al., Magn Reson Med
#: 55:1030, 2006; Mugler JP, J Magn Reson Imaging 39:745, 2014). These are effective parameters,
#: not a model of the train, chosen so that the packaged protocols keep the tissue ordering of
#: real images (docs/calibration.md): T2w 0.2 (nominal 563 -> 113 ms), FLAIR 0.4 (388 -> 155 ms).
VARIABLE_FLIP_TE_FACTORS = {"T2w": 0.2, "FLAIR": 0.4}
VARIABLE_FLIP_TE_FACTOR = 0.25  # any other modality
#: Incidental magnetisation transfer: the signal of a tissue is multiplied by ``1 - w * r``, ``w``
#: white matter's fractional signal loss and ``r`` the tissue's saturation relative to white
#: matter's (``TissueProperties.mt_saturation``: the ratio of measured MTRs, grey matter 0.78). In
#: 2D multi-slice spin-echo imaging the pulses of the other slices saturate the bound pool
#: (incidental MT, described by Dixon WT et al., Radiology 1990); an in vivo brain study measured
#: about 20 % less signal in multi-slice than in single-slice multi-echo spin echo
#: (https://pmc.ncbi.nlm.nih.gov/articles/PMC7053148), hence 0.195 for white matter. The 3D
#: variable-flip-angle weight is an effective parameter (its long refocusing trains saturate too;
#: docs/calibration.md). Gradient echoes with small flip angles are free of it.
MT_WEIGHT_2D_SPIN_ECHO = 0.195
MT_WEIGHT_3D_VARIABLE_FLIP = 0.12
MT_FULL_TR = 3000.0  # ms
#: Readout pulses per MPRAGE inversion (one k-space line each).
MPRAGE_READOUTS = 160

SEQUENCES = ("spin_echo", "inversion_recovery", "spoiled_gradient_echo", "mprage", "swi")


def transverse_decay(t2, te: float, myelin_water=0.0):
    """Spin-echo decay at ``te``: ``(1 - m) exp(-TE/T2) + m exp(-TE/T2_myelin)``, ``m`` the myelin
    water fraction (0: the textbook single exponential)."""
    return (1.0 - myelin_water) * np.exp(-te / t2) + myelin_water * np.exp(-te / MYELIN_WATER_T2)


def spin_echo(pd, t1, t2, *, tr: float, te: float, myelin_water=0.0):
    """Spin echo / TSE magnitude."""
    return pd * (1.0 - np.exp(-tr / t1)) * transverse_decay(t2, te, myelin_water)


def inversion_recovery(pd, t1, t2, *, tr: float, te: float, ti: float, myelin_water=0.0):
    """Inversion recovery with a spin-echo readout (signed)."""
    recovery = 1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)
    return pd * recovery * transverse_decay(t2, te, myelin_water)


def spoiled_gradient_echo(pd, t1, t2star, *, tr: float, te: float, flip_angle: float):
    """Spoiled gradient echo (FLASH) steady state."""
    alpha = np.deg2rad(flip_angle)
    e1 = np.exp(-tr / t1)
    return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-te / t2star)


def mprage(
    pd,
    t1,
    t2star,
    *,
    tr: float,
    te: float,
    ti: float,
    flip_angle: float,
    echo_spacing: float,
    readouts: float = MPRAGE_READOUTS,
    centre: float = 0.5,
):
    """Inversion-prepared spoiled gradient echo (MPRAGE), steady state of inversion cycles (signed).

    Args:
        tr: the inversion cycle (shot interval) in ms.
        ti: inversion to the k-space centre of the readout train.
        echo_spacing: time between readout pulses (ms).
        readouts: pulses per train; shortened when TI or TR leave no room for the whole train.
        centre: fraction of the train read before the k-space centre: 0.5 for linear ordering
            (Siemens MPRAGE), 0 for centric ordering (centre first).
    """
    n = float(readouts)
    if centre > 0:
        n = min(n, ti / (centre * echo_spacing))
    n = min(n, (tr - ti) / ((1.0 - centre) * echo_spacing))
    before = ti - centre * n * echo_spacing  # inversion -> first readout
    after = tr - before - n * echo_spacing  # last readout -> next inversion
    alpha = np.deg2rad(flip_angle)
    e1 = np.exp(-echo_spacing / t1)
    q = np.cos(alpha) * e1
    steady = (1.0 - e1) / (1.0 - q)  # the train's own steady state (M0 = 1)
    e_before, e_after, q_n = np.exp(-before / t1), np.exp(-after / t1), q**n
    # Mz before inversion, x, solves x = 1 - (1 - m_end) e_after with
    # m_start = 1 - (1 + x) e_before and m_end = steady + (m_start - steady) q^n.
    end_constant = steady * (1.0 - q_n) + q_n * (1.0 - e_before)
    x = (1.0 - e_after + e_after * end_constant) / (1.0 + e_after * q_n * e_before)
    start = 1.0 - (1.0 + x) * e_before
    at_centre = steady + (start - steady) * q ** (centre * n)
    return pd * np.sin(alpha) * at_centre * np.exp(-te / t2star)


def swi_phase_mask(chi_ppm, *, field_strength: float, te: float, power: int = 4):
    """Haacke's negative-phase mask, raised to ``power``: 1 for diamagnetic tissue."""
    phase = (
        -2.0 * np.pi * GYROMAGNETIC_MHZ_PER_T * 1e6 * chi_ppm * 1e-6 * field_strength * te * 1e-3
    )
    phase = np.clip(phase, -np.pi, np.pi)
    return np.where(phase < 0, (np.pi + phase) / np.pi, 1.0) ** power


def _need(metadata: ImagingMetadata, field: str, why: str):
    value = getattr(metadata, field)
    if value is None:
        raise MetadataError(
            f"{metadata.modality} {why} needs {field.upper()}; add it to the protocol"
        )
    return value


def _numeric_flip_angle(metadata: ImagingMetadata, why: str) -> float:
    angle = _need(metadata, "flip_angle", why)
    if isinstance(angle, str):
        raise MetadataError(
            f"{metadata.modality} {why} needs a flip angle in degrees, got {angle!r}"
        )
    return float(angle)


def sequence_for(metadata: ImagingMetadata) -> str:
    """The sequence (one of :data:`SEQUENCES`) a protocol describes.

    T1w and T1CE: a TI with a small flip angle (<= 30 degrees, or none) is MPRAGE, a TI with a
    large one is inversion recovery (T1-FLAIR); without TI a short TR (< 300 ms) with a flip angle
    below 90 degrees is a spoiled gradient echo, anything else a spin echo. FLAIR is inversion
    recovery, T2w and PD spin echo, T2star a gradient echo, SWI itself.
    """
    modality = metadata.modality
    if modality is None:
        raise MetadataError("the protocol needs a modality to be simulated")
    angle = metadata.flip_angle
    numeric_angle = None if isinstance(angle, str) else angle
    if modality in ("T1w", "T1CE"):
        if metadata.ti is not None:
            small = numeric_angle is None or numeric_angle <= 30
            return "mprage" if small and angle != "T2var" else "inversion_recovery"
        short_tr = metadata.tr is not None and metadata.tr < 300
        if short_tr and numeric_angle is not None and numeric_angle < 90:
            return "spoiled_gradient_echo"
        return "spin_echo"
    return {
        "FLAIR": "inversion_recovery",
        "T2w": "spin_echo",
        "PD": "spin_echo",
        "T2star": "spoiled_gradient_echo",
        "SWI": "swi",
    }[modality]


def _effective_te(metadata: ImagingMetadata, te: float) -> float:
    if metadata.flip_angle != "T2var":
        return te
    return te * VARIABLE_FLIP_TE_FACTORS.get(str(metadata.modality), VARIABLE_FLIP_TE_FACTOR)


def _mt_weight(metadata: ImagingMetadata, tr: float) -> float:
    """How strongly a spin-echo protocol saturates the bound pool (see ``MT_WEIGHT_*``).

    In 2D the saturation grows with the other slices' pulses per TR, so with TR: full from
    :data:`MT_FULL_TR` (long-TR T2w, PD, FLAIR), a sixth of it at a T1w spin echo's 500 ms.
    """
    if metadata.flip_angle == "T2var":
        return MT_WEIGHT_3D_VARIABLE_FLIP
    return MT_WEIGHT_2D_SPIN_ECHO * min(1.0, tr / MT_FULL_TR)


def _spin_echo_family(
    p: TissueProperties, metadata: ImagingMetadata, sequence: str, *, tr: float, te: float, why: str
) -> np.ndarray:
    """Spin-echo readouts: two-compartment T2 decay (myelin water) and incidental MT."""
    te = _effective_te(metadata, te)
    saturation = 1.0 - _mt_weight(metadata, tr) * p.mt_saturation
    if sequence == "spin_echo":
        return saturation * spin_echo(p.pd, p.t1, p.t2, tr=tr, te=te, myelin_water=p.myelin_water)
    ti = float(_need(metadata, "ti", why))
    if ti >= tr:
        raise MetadataError(f"TI {ti:g} ms must be shorter than TR {tr:g} ms for {why[1:-1]}")
    return saturation * inversion_recovery(
        p.pd, p.t1, p.t2, tr=tr, te=te, ti=ti, myelin_water=p.myelin_water
    )


def signal(properties: TissueProperties, metadata: ImagingMetadata) -> np.ndarray:
    """Signed signal of each tissue class (array in the order of ``properties``) under a protocol.

    The magnitude image of a voxel is ``|sum(fraction * signal)|``.

    T1CE uses the post-contrast properties. Raises :class:`MetadataError` when the protocol lacks
    what its sequence needs (e.g. FLAIR without TI) or cannot be honoured (TI beyond TR).
    """
    sequence = sequence_for(metadata)
    if metadata.modality == "T1CE":
        properties = contrast_enhanced(properties)
    p = properties
    why = f"({sequence.replace('_', ' ')})"
    tr = float(_need(metadata, "tr", why))
    te = float(_need(metadata, "te", why))
    if sequence in ("spin_echo", "inversion_recovery"):
        return _spin_echo_family(p, metadata, sequence, tr=tr, te=te, why=why)
    flip_angle = _numeric_flip_angle(metadata, why)
    if sequence == "mprage":
        ti = float(metadata.ti)  # type: ignore[arg-type]  (sequence_for saw a TI)
        if tr < ti:
            # Philips TFE and GE BRAVO report the readout TR (a few ms) and the delay from the
            # inversion to the readout, which starts at the k-space centre; the next inversion
            # follows the readout train directly.
            spacing, shot, centre = tr, ti + MPRAGE_READOUTS * tr, 0.0
        else:
            # Siemens MPRAGE reports the inversion cycle as TR; linear ordering.
            spacing, shot, centre = 2.0 * te + 2.5, tr, 0.5
        return mprage(
            p.pd,
            p.t1,
            p.t2star,
            tr=shot,
            te=te,
            ti=ti,
            flip_angle=flip_angle,
            echo_spacing=spacing,
            centre=centre,
        )
    magnitude = spoiled_gradient_echo(p.pd, p.t1, p.t2star, tr=tr, te=te, flip_angle=flip_angle)
    if sequence == "swi":
        return magnitude * swi_phase_mask(p.chi, field_strength=p.field_strength, te=te)
    return magnitude
