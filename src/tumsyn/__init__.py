"""tumsyn: text-guided universal brain MRI synthesis.

Importing this package does no work; the submodules are loaded when used:
``tumsyn.metadata`` (imaging metadata and prompts), ``tumsyn.text`` (tokenizer), ``tumsyn.io``
(NIfTI input/output and grids).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tumsyn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
