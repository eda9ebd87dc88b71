"""The seven target contrasts of TUMSyn and the many names they go by.

The paper trains on T1w, T2w, FLAIR, SWI, T2star, PD and T1CE; prompts must use exactly these
spellings, because the text encoder learned them. Users, BIDS and scanners spell them otherwise
(``PDw``, ``T2starw``, ``ce-gadolinium T1w``, ``flair``), so every entry point maps names here.
"""

from __future__ import annotations

import re

from tumsyn.errors import MetadataError

__all__ = ["MODALITIES", "canonical_modality"]

MODALITIES: tuple[str, ...] = ("T1w", "T2w", "FLAIR", "SWI", "T2star", "PD", "T1CE")

# Keys are names with case, spaces, '-', '_' and '*' removed ("T2*-weighted" -> "t2weighted" would
# clash with T2w, so '*' becomes "star" before that).
_ALIASES: dict[str, str] = {
    **dict.fromkeys(["t1w", "t1", "t1weighted", "mprage", "t1mprage"], "T1w"),
    **dict.fromkeys(["t2w", "t2", "t2weighted", "t2tse", "t2spc", "t2space"], "T2w"),
    **dict.fromkeys(["flair", "t2flair", "t2wflair", "flairw"], "FLAIR"),
    **dict.fromkeys(["swi", "susceptibilityweighted", "susceptibilityweightedimaging"], "SWI"),
    **dict.fromkeys(["t2star", "t2starw", "t2starweighted", "gret2star"], "T2star"),
    **dict.fromkeys(["pd", "pdw", "pdweighted", "protondensity", "protondensityweighted"], "PD"),
    **dict.fromkeys(
        [
            "t1ce",
            "t1c",
            "t1gd",
            "t1wce",
            "cet1w",
            "t1post",
            "t1wpost",
            "postcontrastt1w",
            "contrastenhancedt1w",
            "cegadoliniumt1w",
            "t1wcegadolinium",
        ],
        "T1CE",
    ),
}


def _key(name: str) -> str:
    return re.sub(r"[\s\-_]", "", name.replace("*", "star").lower())


def canonical_modality(name: str) -> str:
    """The paper's spelling of a modality name.

    Example:
        >>> canonical_modality("ce-gadolinium T1w")
        'T1CE'

    Raises:
        MetadataError: the name is not one of the seven modalities or a known alias.
    """
    if not isinstance(name, str):
        raise MetadataError(f"modality must be a name such as 'T2w', got {name!r}")
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise MetadataError(
            f"unknown modality {name!r}: use one of {', '.join(MODALITIES)} "
            "(aliases such as PDw, T2starw, flair or 'ce-gadolinium T1w' are accepted)"
        )
    return canonical
