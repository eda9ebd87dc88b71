"""The project's error types.

Everything derived from :class:`TumsynError` is a *user* error: bad input that the user can fix. The
command line prints such errors as one line and exits with code 2; anything else is a bug and keeps
its traceback. Each error also derives from the matching built-in type so that library users can
catch ``ValueError`` or ``FileNotFoundError`` as they would elsewhere.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ImageError",
    "InputFileError",
    "MetadataError",
    "PromptParseError",
    "PromptTooLongError",
    "TumsynError",
]


class TumsynError(Exception):
    """Base of all user errors; the message says what is wrong and what to do."""


class InputFileError(TumsynError, FileNotFoundError):
    """A named input file does not exist or cannot be read."""


class MetadataError(TumsynError, ValueError):
    """Imaging metadata is missing, inconsistent or out of range."""


class PromptParseError(MetadataError):
    """Prompt text does not follow the TUMSyn prompt format."""


class PromptTooLongError(TumsynError, ValueError):
    """A prompt needs more tokens than the text encoder's context length."""


class ImageError(TumsynError, ValueError):
    """An image file is not a usable 3D NIfTI volume."""


class ConfigError(TumsynError, ValueError):
    """A configuration or protocol file is missing, malformed or holds unknown settings."""
