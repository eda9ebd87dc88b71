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
    "MetadataWarning",
    "OptionError",
    "PromptParseError",
    "PromptTooLongError",
    "TumsynError",
    "TumsynWarning",
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


class OptionError(ConfigError):
    """A synthesis option has a value it cannot take.

    Args:
        option: the option's Python name (``patch_size``); the command line shows its flag.
        value: the value given.
        allowed: what the option accepts, as a phrase (``"an integer of at least 1"``).
    """

    def __init__(self, option: str, value: object, allowed: str) -> None:
        super().__init__(f"{option} {value!r}: expected {allowed}")
        self.option, self.value, self.allowed = option, value, allowed


class TumsynWarning(UserWarning):
    """Base of the project's warnings: the work goes on, but the user should know.

    Library code raises them with :func:`warnings.warn`, so notebooks show them as usual and
    callers can filter or escalate them; the command line prints each as one line on stderr.
    """


class MetadataWarning(TumsynWarning):
    """An optional metadata field (sidecar, DICOM, participants.tsv) was missing or unreadable
    and was left out or read as best it could be."""
