"""Virtual subjects shared by the simulator tests (each takes about a second to build)."""

from __future__ import annotations

import pytest

from tumsyn.simulate import Anatomy, make_subject
from tumsyn.simulate.anatomy import template_anatomy


@pytest.fixture(scope="session")
def old_subject() -> Anatomy:
    return make_subject(11, age=80, sex="F", enhancing=True)


@pytest.fixture(scope="session")
def young_subject() -> Anatomy:
    return make_subject(11, age=22, sex="F")


@pytest.fixture(scope="session")
def template_subject() -> Anatomy:
    return template_anatomy()
