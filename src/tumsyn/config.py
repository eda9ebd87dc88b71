"""The one base of every validated configuration section, and the one way its errors are told.

Model configurations (``tumsyn.models``) and training configurations (``tumsyn.train``) are both
pydantic classes built on :class:`StrictConfig`, so both refuse unknown keys and wrong types the
same way, and both report the first problem as ``where: what`` through :func:`validation_message`.
Neither side owns this module, so neither has to import the other to share it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Problem", "StrictConfig", "first_problem", "validation_message"]


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Problem(NamedTuple):
    """One problem of a validation: the dotted setting name, the value given, what is wrong
    (pydantic's message, e.g. ``Input should be greater than 0``), and pydantic's error type."""

    where: str
    value: Any
    message: str
    kind: str


def first_problem(error: ValidationError) -> Problem:
    """The first problem of ``error``.

    Only the first problem is told: users fix one setting at a time, and pydantic's full report
    repeats the input and links to its own documentation, which mean nothing to a tumsyn user.
    A problem with the whole mapping (no location) is placed at ``(top level)``.
    """
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
    message = detail["msg"].removeprefix("Value error, ")
    return Problem(where, detail.get("input"), message, detail["type"])


def validation_message(error: ValidationError) -> str:
    """The first problem of ``error`` as ``"where: msg"`` (``where`` a dotted setting name)."""
    problem = first_problem(error)
    return f"{problem.where}: {problem.message}"
