"""Config sections refuse unknown keys and wrong types; the first problem is told in one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tumsyn.config import StrictConfig, validation_message


class _Optimizer(StrictConfig):
    lr: float = 1e-4


class _Run(StrictConfig):
    steps: int
    optimizer: _Optimizer = _Optimizer()


def _message(**settings: object) -> str:
    with pytest.raises(ValidationError) as caught:
        _Run(**settings)
    return validation_message(caught.value)


def test_the_first_problem_names_its_dotted_setting() -> None:
    assert _message(steps=3, optimizer={"lr": "fast"}).startswith("optimizer.lr: ")
    assert _message(steps=3, learning_rate=1.0) == "learning_rate: Extra inputs are not permitted"
    assert _message().startswith("steps: Field required")


def test_a_problem_with_the_whole_input_is_at_the_top_level() -> None:
    with pytest.raises(ValidationError) as caught:
        _Run.model_validate(5)
    assert validation_message(caught.value).startswith("(top level): ")


def test_sections_are_immutable() -> None:
    run = _Run(steps=3)
    with pytest.raises(ValidationError):
        run.steps = 4  # type: ignore[misc]
