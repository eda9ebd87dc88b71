"""MR properties of brain tissues at 1.5 T, 3 T and 7 T, and their per-subject variation.

Sources (values in ms unless stated; the table below keeps one value per field strength and the
jitter covers the spread between studies and subjects):

- T1 of white matter at 3 T: Stanisz GJ et al., "T1, T2 relaxation and magnetization transfer in
  tissue at 3T", Magn Reson Med 54:507-512 (2005). Grey matter T1 at 3 T: 1550 ms, Stanisz's
  1820 ms moved by the 15 % that published values spread (``PUBLISHED_SPREAD``) towards in vivo
  reports (about 1300-1600 ms); with 1820 ms no 3 T FLAIR renders grey matter brighter than white
  matter, as every real one does (``docs/calibration.md``, contrast table).
- T2 of grey and white matter at 1.5 T and 3 T: the *intra- and extracellular* water's T2 (GM
  90-92, WM 78-80 ms), within the spread of in vivo single-T2 measurements; white matter's
  myelin water (below) decays separately, so its apparent single T2 comes out shorter, as
  measured (about 70 ms).
- T1 at 1.5 T: in vivo values reported at 1.5 T spread widely (WM about 600-900 ms, GM about
  950-1250 ms; tabulated in Deoni SCL, "Quantitative relaxometry of the brain", Top Magn Reson
  Imaging 21:101-113, 2010); the table takes GM 1150, WM 670 and CSF 4580 ms, the values that
  reproduce the tissue contrast of the real MNI152 2009a T1 template (an average of 1.5 T T1w
  gradient echoes) with a 1.5 T gradient echo (``benchmarks/calibrate_simulator.py``,
  ``docs/calibration.md``). Stanisz's 884/1124 ms would give spin-echo T1w images no GM/WM contrast,
  unlike real ones.
- T1 at 7 T and of CSF: Rooney WD et al., "Magnetic field and tissue dependencies of human brain
  longitudinal 1H2O relaxation in vivo", Magn Reson Med 57:308-318 (2007).
- T2 at 7 T: Yacoub E et al., "Spin-echo fMRI in humans using high spatial resolutions and high
  magnetic fields", Magn Reson Med 49:655-664 (2003) (GM 55, WM 46 ms).
- T2*: Peters AM et al., "T2* measurements in human brain at 1.5, 3 and 7 T", Magn Reson Imaging
  25:748-753 (2007).
- Proton density (water content relative to CSF): Neeb H et al., "A new method for fast
  quantitative mapping of absolute water content in vivo", NeuroImage 31:1156-1168 (2006).
- Magnetic susceptibility relative to CSF (ppm): Langkammer C et al., "Quantitative susceptibility
  mapping (QSM) as a means to measure brain iron?", NeuroImage 62:1593-1599 (2012): cortical GM
  slightly paramagnetic, WM diamagnetic (myelin).
- White-matter hyperintensities: longer T1 (about 1.4x) and T2 (about 2x) than normal-appearing WM
  and higher water content, as reported in reviews of WMH relaxometry (e.g. Wardlaw JM et al.,
  Lancet Neurol 12:822-838, 2013, and references there).
- Venous blood (class ``VEIN``, deoxygenated: oxygen saturation about 0.6, haematocrit about
  0.42): T1 from Lu H et al., Magn Reson Med 52:679-682 (2004) at 3 T (1649 ms) and from reports
  of about 1.4 s at 1.5 T and 2.1-2.6 s at 7 T; T2 falls steeply with field (about 100 ms at
  1.5 T; about 50-60 ms at 3 T, Zhao JM et al., Magn Reson Med 58:592-597, 2007 and in vivo
  TRUST; 20 ms at 7 T, Krishnamurthy LC et al., Magn Reson Med 71:2035-2042, 2014); T2* shorter
  still (Zhao 2007 at 3 T; Blockley NP et al., Magn Reson Med 60:1313-1320, 2008, across
  fields). Susceptibility relative to water: haematocrit x (1 - saturation) x 3.39 ppm (SI; the
  0.27 ppm cgs of Spees WM et al., Magn Reson Med 45:533-542, 2001), about 0.45 ppm, as QSM
  measures in veins. Water content 0.87 (Herscovitch P, Raichle ME, J Cereb Blood Flow Metab
  5:65-69, 1985). The agent circulates in blood, so veins carry ``gadolinium_mm`` too.
- Dura (class ``DURA``: the meninges and the bone they border, left inside the brain mask by the
  skull strip, about 10 ml at the mask's rim; ``template.py``): an effective tissue, not a
  measured one. Dense collagen has little mobile water and short T2 (tendon and ligament a few to
  tens of ms; cortical bone below 1 ms), so the class takes water content 0.25, T2 25 ms and T2*
  15 ms at every field, and a T1 near grey matter's; with these a 1.5 T gradient echo renders it
  at about 0.2 of grey matter, where the real 2009a T1 template has its darkest rim
  (``_DURA_T1``). Collagen saturates strongly under magnetisation transfer (taken as white
  matter's), and the dura enhances after gadolinium (it takes ``gadolinium_mm`` like veins).
- Venous sinuses (class ``SINUS``: the straight and transverse sinuses that a skull strip leaves
  inside the brain mask; ``sinuses.py``): venous blood (``VEIN``'s T1, water content and
  susceptibility, and gadolinium), but flowing fast. A spin echo refocuses only spins that stayed
  in the slice between its pulses, so fast flow gives no signal (the flow void of T2w, PD and
  FLAIR images), while a short-TE gradient echo shows the blood by its T1 (intermediate on
  MPRAGE: about 0.8 of grey matter in the real 2009a T1, where the sinuses lie between CSF and
  grey matter). The simulator has no flow, so the void is an effective T2 of 10 ms (T2* the
  same or shorter): dark at every spin-echo echo time in use, nearly unchanged at a 3 ms echo.
- Gadolinium relaxivity in plasma (per mM per s): Rohrer M et al., "Comparison of magnetic
  properties of MRI contrast media solutions at different magnetic field strengths", Invest Radiol
  40:715-724 (2005): gadopentetate r1 4.1 (1.5 T), 3.7 (3 T); r1 at 7 T taken as 3.5.

Between the tabulated field strengths values are interpolated linearly in log(B0); outside 1.5-7 T
the simulator refuses, since nothing here is measured there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tumsyn.errors import MetadataError

__all__ = [
    "FIELD_RANGE",
    "LESIONS",
    "MYELIN_WATER_T2",
    "PUBLISHED_SPREAD",
    "TISSUES",
    "TissueProperties",
    "contrast_enhanced",
    "draw_jitter",
    "tissue_properties",
]

#: Tissue classes of a virtual subject, in the order of its probability maps.
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF", "WMH", "ENH", "VEIN", "DURA", "SINUS")
#: The pathological ones: white-matter hyperintensities and enhancing lesions.
LESIONS: tuple[str, ...] = ("WMH", "ENH")

_FIELDS = np.array([1.5, 3.0, 7.0])
FIELD_RANGE = (float(_FIELDS[0]), float(_FIELDS[-1]))

# (class) -> property -> values at 1.5 T, 3 T, 7 T.
_TABLE: dict[str, dict[str, tuple[float, float, float]]] = {
    "GM": {"t1": (1150, 1550, 2132), "t2": (90, 92, 55), "t2star": (84, 66, 33.2)},
    "WM": {"t1": (670, 1084, 1220), "t2": (80, 78, 46), "t2star": (66.2, 53.2, 26.8)},
    # CSF T2* is limited by flow and field inhomogeneity, not by relaxation; a long value suffices.
    "CSF": {"t1": (4580, 4300, 4425), "t2": (2000, 2000, 1000), "t2star": (800, 600, 300)},
    "WMH": {"t1": (1240, 1520, 1710), "t2": (145, 140, 95), "t2star": (110, 90, 45)},
    # An enhancing lesion before contrast: oedematous, long T1 and T2.
    "ENH": {"t1": (1400, 2100, 2450), "t2": (130, 125, 85), "t2star": (100, 80, 40)},
    "VEIN": {"t1": (1440, 1649, 2300), "t2": (100, 55, 20), "t2star": (50, 25, 9)},
    "DURA": {"t1": (1000, 1300, 1700), "t2": (25, 25, 25), "t2star": (15, 15, 15)},
    # Flowing venous blood: its T1, and an effective T2 that stands for the spin echo's flow void.
    "SINUS": {"t1": (1440, 1649, 2300), "t2": (10, 10, 10), "t2star": (50, 25, 9)},
}
_PROTON_DENSITY = {
    "GM": 0.80,
    "WM": 0.69,
    "CSF": 1.0,
    "WMH": 0.85,
    "ENH": 0.88,
    "VEIN": 0.87,
    "DURA": 0.25,
    "SINUS": 0.87,
}
# Fraction of the water held between myelin layers, with its own short T2 (MYELIN_WATER_T2): it
# is seen at short echo times and gone at long ones, which darkens white matter on T2w and FLAIR
# more than its single-T2 decay says (MacKay A et al., Magn Reson Med 31:673-677, 1994: about
# 10-15 % in white matter, a few % in grey matter; lesions lose myelin).
_MYELIN_WATER = {
    "GM": 0.03,
    "WM": 0.12,
    "CSF": 0.0,
    "WMH": 0.05,
    "ENH": 0.03,
    "VEIN": 0.0,
    "DURA": 0.0,
    "SINUS": 0.0,
}
MYELIN_WATER_T2 = 15.0  # ms
# How much signal a train of saturating pulses takes from a tissue through magnetisation transfer,
# relative to white matter: the ratio of its magnetisation transfer ratio (MTR) to white matter's.
# The saturation does not scale with the bound-pool size (about twice as large in white matter as
# in grey, Stanisz 2005, above) but with the measured MTR, which exchange and T1 bring closer:
# grey matter 28 +/- 2 % against white matter 36 +/- 2 % in a normative study of 68 healthy adults
# at 1.5 T (https://acnpsearch.tweb-dev.unibo.it/singlejournalindex/12718615), hence 0.78.
# Lesions: about half of white matter's, within the MTRs reported for demyelinated and oedematous
# lesions.
_MT_SATURATION = {
    "GM": 0.78,
    "WM": 1.0,
    "CSF": 0.0,
    "WMH": 0.53,
    "ENH": 0.4,
    "VEIN": 0.0,
    "DURA": 1.0,
    "SINUS": 0.0,
}
_SUSCEPTIBILITY_PPM = {
    "GM": 0.01,
    "WM": -0.03,
    "CSF": 0.0,
    "WMH": -0.01,
    "ENH": 0.02,
    "VEIN": 0.45,
    "DURA": 0.0,
    "SINUS": 0.45,
}
_R1_GADOLINIUM = (4.1, 3.7, 3.5)  # per mM per s
_R2_GADOLINIUM = (4.6, 5.2, 5.5)  # per mM per s (Rohrer 2005, gadopentetate)

#: Published values of one property at one field strength differ between studies by roughly this
#: fraction either way (method, region, subject group); calibration may move a value within it.
PUBLISHED_SPREAD = 0.15

# Per-subject spread, as relative standard deviations of log-normal factors: (shared by all
# tissues, per tissue). Relaxation times differ by 5-10 % between studies and subjects at one
# field strength, but mostly together: what moves one tissue's T1 (temperature, field, method)
# moves the others', and real images of one sequence keep their tissue ordering in every subject.
# So most of the spread is shared and a small part is each tissue's own; independent 6 % per
# tissue made a fifth of simulated 3 T FLAIR subjects render grey matter darker than white.
_JITTER = {"t1": (0.05, 0.02), "t2": (0.05, 0.02), "t2star": (0.05, 0.02), "pd": (0.0, 0.02)}
# Classes without a per-subject spread: the last ones of TISSUES.
_UNJITTERED = ("DURA", "SINUS")
assert TISSUES[-len(_UNJITTERED) :] == _UNJITTERED


@dataclass(frozen=True)
class TissueProperties:
    """MR properties of every tissue class, as arrays in the order of :data:`TISSUES`.

    ``pd`` is relative to CSF; ``t1``, ``t2``, ``t2star`` in ms; ``chi`` in ppm relative to CSF;
    ``gadolinium`` is the contrast agent concentration (mM) after injection; ``myelin_water`` the
    fraction of ``pd`` that decays with :data:`MYELIN_WATER_T2` instead of ``t2``; ``mt_saturation``
    the signal that magnetisation transfer saturation takes, relative to white matter's.
    """

    pd: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t2star: np.ndarray
    chi: np.ndarray
    gadolinium: np.ndarray
    field_strength: float
    myelin_water: np.ndarray
    mt_saturation: np.ndarray


def _interpolate(values: tuple[float, float, float], field_strength: float) -> float:
    return float(np.interp(np.log(field_strength), np.log(_FIELDS), values))


def _check_field(field_strength: float | None) -> float:
    if field_strength is None:
        raise MetadataError("the protocol needs a field strength (e.g. 3.0 T) to be simulated")
    low, high = FIELD_RANGE
    if not low <= field_strength <= high:
        raise MetadataError(
            f"field strength {field_strength:g} T is outside the {low:g}-{high:g} T for which "
            "tissue properties are tabulated"
        )
    return float(field_strength)


def tissue_properties(
    field_strength: float | None,
    *,
    jitter: dict[str, np.ndarray] | None = None,
    gadolinium_mm: float = 0.0,
) -> TissueProperties:
    """Tissue properties at a field strength, optionally scaled by a subject's jitter factors.

    Args:
        field_strength: B0 in tesla, within :data:`FIELD_RANGE`.
        jitter: multiplicative factors per property (``t1``, ``t2``, ``t2star``, ``pd``), each an
            array with one value per tissue class, from :func:`draw_jitter`.
        gadolinium_mm: contrast agent concentration in enhancing lesions (class ``ENH``), venous
            blood (``VEIN``, ``SINUS``) and dura (``DURA``).
    """
    field_strength = _check_field(field_strength)
    values = {
        name: np.array([_interpolate(_TABLE[t][name], field_strength) for t in TISSUES])
        for name in ("t1", "t2", "t2star")
    }
    values["pd"] = np.array([_PROTON_DENSITY[t] for t in TISSUES])
    if jitter is not None:
        values = {name: value * jitter[name] for name, value in values.items()}
    gadolinium = np.zeros(len(TISSUES))
    gadolinium[[TISSUES.index(t) for t in ("ENH", "VEIN", "DURA", "SINUS")]] = gadolinium_mm
    return TissueProperties(
        pd=values["pd"],
        t1=values["t1"],
        t2=values["t2"],
        t2star=values["t2star"],
        chi=np.array([_SUSCEPTIBILITY_PPM[t] for t in TISSUES]),
        gadolinium=gadolinium,
        field_strength=field_strength,
        myelin_water=np.array([_MYELIN_WATER[t] for t in TISSUES]),
        mt_saturation=np.array([_MT_SATURATION[t] for t in TISSUES]),
    )


def draw_jitter(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A subject's multiplicative deviations from the tabulated properties (one per class): a
    factor shared by every tissue times each tissue's own (see ``_JITTER``).

    Dura, an effective class (not a measured one), keeps its values: no spread is drawn for it,
    which also keeps the random draws, and so every seed's subject, what they were before the
    class was added."""
    drawn = len(TISSUES) - len(_UNJITTERED)
    return {
        name: np.append(
            np.exp(rng.normal(0.0, shared) + rng.normal(0.0, own, size=drawn)),
            np.ones(len(_UNJITTERED)),
        )
        for name, (shared, own) in _JITTER.items()
    }


def contrast_enhanced(properties: TissueProperties) -> TissueProperties:
    """Properties after contrast injection: relaxation rates grow by relaxivity x concentration.

    1/T1' = 1/T1 + r1 C and 1/T2' = 1/T2 + r2 C (and the same r2 for T2*), C in mM, r in /mM/s.
    """
    b0 = properties.field_strength
    r1 = _interpolate(_R1_GADOLINIUM, b0) / 1000.0  # per mM per ms
    r2 = _interpolate(_R2_GADOLINIUM, b0) / 1000.0
    c = properties.gadolinium
    return replace(
        properties,
        t1=1.0 / (1.0 / properties.t1 + r1 * c),
        t2=1.0 / (1.0 / properties.t2 + r2 * c),
        t2star=1.0 / (1.0 / properties.t2star + r2 * c),
    )
