"""Official TUMSyn prompt files: one ``"image name": "prompt"`` pair per line.

Each line is a JSON object's member without the braces, so we read and write it with ``json``
(which handles quotes and escapes) instead of the official code's string stripping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from tumsyn.errors import InputFileError, PromptParseError
from tumsyn.io import atomic_output
from tumsyn.metadata.prompt import format_prompt
from tumsyn.metadata.record import ImagingMetadata

__all__ = ["read_prompt_file", "write_prompt_file"]


def read_prompt_file(path: str | os.PathLike) -> dict[str, str]:
    """Image name -> prompt text, in file order. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such prompt file")
    prompts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads("{" + line.strip().rstrip(",") + "}")
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or len(entry) != 1:
            raise PromptParseError(
                f'{path}:{number}: expected a line of the form "image.nii.gz": "Age: ...", '
                f"got {line.strip()[:80]!r}"
            )
        ((name, prompt),) = entry.items()
        if not isinstance(prompt, str):
            raise PromptParseError(f"{path}:{number}: the prompt of {name!r} must be a string")
        if name in prompts:
            raise PromptParseError(f"{path}:{number}: {name!r} appears twice")
        prompts[name] = " ".join(prompt.split())
    return prompts


def write_prompt_file(
    path: str | os.PathLike, prompts: Mapping[str, str | ImagingMetadata]
) -> Path:
    """Write image name -> prompt (text or ``ImagingMetadata``), official format, atomically."""
    lines = []
    for name, prompt in prompts.items():
        text = format_prompt(prompt) if isinstance(prompt, ImagingMetadata) else prompt
        lines.append(f"{json.dumps(name)}: {json.dumps(text)}\n")
    with atomic_output(path) as temporary:
        temporary.write_text("".join(lines), encoding="utf-8")
    return Path(path)
