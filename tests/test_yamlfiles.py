"""A packaged YAML file and a user's YAML file are read, and refused, the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumsyn.errors import ConfigError
from tumsyn.yamlfiles import packaged_yaml_names, read_packaged_or_path_yaml


@pytest.fixture
def package_folder(tmp_path: Path) -> Path:
    """A stand-in for a package folder (a Path is a Traversable) with two named files."""
    folder = tmp_path / "package"
    folder.mkdir()
    (folder / "small.yaml").write_text("steps: 3\n")
    (folder / "broken.yaml").write_text("steps: [\n")
    (folder / "notes.txt").write_text("not a configuration\n")
    return folder


def test_names_are_the_yaml_files(package_folder: Path) -> None:
    assert packaged_yaml_names(package_folder) == ["broken", "small"]


def test_a_name_and_a_path_give_the_same_content(package_folder: Path) -> None:
    by_name = read_packaged_or_path_yaml("small", package_folder, kind="setting")
    by_path = read_packaged_or_path_yaml(
        package_folder / "small.yaml", package_folder, kind="setting"
    )
    assert by_name == ({"steps": 3}, "setting 'small'")
    assert by_path == ({"steps": 3}, str(package_folder / "small.yaml"))


def test_bad_yaml_is_refused_alike_by_name_and_by_path(package_folder: Path) -> None:
    path = package_folder / "broken.yaml"
    with pytest.raises(ConfigError) as by_name:
        read_packaged_or_path_yaml("broken", package_folder, kind="setting")
    with pytest.raises(ConfigError) as by_path:
        read_packaged_or_path_yaml(path, package_folder, kind="setting")
    assert str(by_name.value).startswith("setting 'broken': not valid YAML (")
    assert str(by_path.value) == str(by_name.value).replace("setting 'broken'", str(path))


def test_an_unknown_name_lists_the_packaged_ones(package_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such setting file .*\(packaged: broken, small\)"):
        read_packaged_or_path_yaml("large", package_folder, kind="setting")
    # A Path is always a path, even when its text is a packaged name.
    with pytest.raises(ConfigError, match="no such setting file"):
        read_packaged_or_path_yaml(Path("small"), package_folder, kind="setting")
