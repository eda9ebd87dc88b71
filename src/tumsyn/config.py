"""The one base of every validated configuration section, and the one way its errors are told.

Model configurations (``tumsyn.models``) and training configurations (``tumsyn.train``) are both
pydantic classes built on :class:`StrictConfig`, so both refuse unknown keys and wrong types the
same way, and both report the first problem as ``where: what`` through :func:`validation_message`.
Neither side owns this module, so neither has to import the other to share it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["StrictConfig", "validation_message"]


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def validation_message(error: ValidationError) -> str:
    """The first problem of ``error`` as ``"where: msg"`` (``where`` a dotted setting name).

    Only the first problem is told: users fix one setting at a time, and pydantic's full report
    repeats the input and links to its own documentation, which mean nothing to a tumsyn user.
    A problem with the whole mapping (no location) is placed at ``(top level)``.
    """
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
    return f"{where}: {detail['msg']}"
