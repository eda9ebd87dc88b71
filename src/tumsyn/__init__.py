"""tumsyn: text-guided universal brain MRI synthesis.

    >>> import tumsyn
    >>> synth = tumsyn.Synthesizer.from_checkpoint()           # doctest: +SKIP
    >>> flair = synth("sub-01_T1w.nii.gz", "FLAIR")              # doctest: +SKIP

Importing this package does no work: the names below are loaded on first use, so ``import tumsyn``
stays cheap for scripts that need only the metadata tools.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("tumsyn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_EXPORTS = {
    "Synthesizer": "tumsyn.infer.synthesizer",
    "SynthesizedImage": "tumsyn.infer.synthesizer",
    "SynthesisOptions": "tumsyn.infer.options",
    "SynthesizedFile": "tumsyn.infer.files",
    "synthesize_file": "tumsyn.infer.files",
    "synthesize_bids": "tumsyn.infer.bids",
    "ImagingMetadata": "tumsyn.metadata.record",
    "format_prompt": "tumsyn.metadata.prompt",
    "parse_prompt": "tumsyn.metadata.prompt",
    "TumsynError": "tumsyn.errors",
    "TumsynWarning": "tumsyn.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tumsyn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
