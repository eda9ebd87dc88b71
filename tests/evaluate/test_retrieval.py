"""Stage-1 retrieval: rankings checked against a direct computation, the candidates, the prompt
file, the refused pipeline checkpoint, ``tumsyn retrieve`` end to end, and the data-set scores.

No trained stage-1 model is in the repository, so nothing here asserts accuracy above chance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_BMLIP_SPEC
from tumsyn.cli import main
from tumsyn.data import ImageRecord, VolumeCache, WholeVolumes, load_index
from tumsyn.errors import ConfigError, MetadataError, PromptParseError
from tumsyn.evaluate.retrieval import (
    DEFAULT_SPACING,
    load_bmlip,
    modality_prompts,
    rank_prompts,
    read_prompts,
    recorded_spacing,
    retrieval_scores,
)
from tumsyn.infer.loading import bundled_checkpoint_path
from tumsyn.io import load_nifti
from tumsyn.metadata import MODALITIES, ImagingMetadata, load_protocols, parse_prompt
from tumsyn.models import build, save_checkpoint
from tumsyn.simulate import CohortSettings, simulate_dataset

SPEC = TINY_BMLIP_SPEC
SPACING = 3.0
PROMPT = (
    "Age: 30; Gender: F; Scanner: 3 Siemens; Modality: {}; Voxel size: (1, 1, 1); "
    "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree): (2300, 3, 900, 9)"
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised stage-1 checkpoint (seeded)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bmlip") / "model.safetensors"
    return save_checkpoint(path, build(SPEC))


@pytest.fixture(scope="module")
def model(checkpoint: Path):
    return load_bmlip(checkpoint)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24^3 textured ball with 2 mm voxels, written with nibabel."""
    grid = np.indices((24, 24, 24)).astype(np.float32)
    inside = ((grid - 11.5) ** 2).sum(axis=0) <= 10**2
    texture = np.random.default_rng(1).random(inside.shape)
    data = np.where(inside, 50 + 5 * grid[0] + 20 * texture, 0).astype(np.float32)
    path = tmp_path_factory.mktemp("image") / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated subjects x the seven default protocols at 8 mm: 14 distinct prompts."""
    root = tmp_path_factory.mktemp("cohort") / "sim"
    settings = CohortSettings(subjects=2, seed=0)
    return simulate_dataset(
        root, settings, load_protocols("default"), voxel_size=(8, 8, 8), progress=False, workers=1
    )


def write_prompts(folder: Path, *lines: str) -> Path:
    path = folder / "prompts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_probabilities_sum_to_one_and_are_sorted(model, image: Path) -> None:
    ranking = rank_prompts(model, image, modality_prompts((2, 2, 2)), spacing=SPACING)
    probabilities = [entry.probability for entry in ranking]
    assert len(ranking) == 7
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)


def test_ranking_equals_a_direct_computation(model, image: Path) -> None:
    from tumsyn.text import tokenize

    prompts = [PROMPT.format(modality) for modality in ("T1w", "T2w", "FLAIR", "PD")]
    ranking = rank_prompts(model, image, prompts, spacing=SPACING)
    # The image as stage-1 training sees it, then CLIP's formula written out here.
    record = ImageRecord(path=image, subject="s", metadata=ImagingMetadata(), prompt="p")
    cache = VolumeCache(image.parent / "cache")
    volume = WholeVolumes([record], cache, {"p": 0}, input_size=16, spacing=SPACING)[0]["image"]
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(volume[None]), dim=-1)
        text_features = F.normalize(model.encode_text(tokenize(prompts)), dim=-1)
        scale = model.logit_scale.clamp(max=math.log(100)).exp()
        expected = torch.softmax(scale * image_features @ text_features.T, dim=1)[0]
    order = torch.argsort(expected, descending=True).tolist()
    assert [entry.prompt for entry in ranking] == [prompts[i] for i in order]
    got = [entry.probability for entry in ranking]
    np.testing.assert_allclose(got, expected[order].numpy(), rtol=1e-5, atol=1e-6)


def test_a_volume_ranks_as_its_file(model, image: Path) -> None:
    prompts = modality_prompts((2, 2, 2))
    from_file = rank_prompts(model, image, prompts, spacing=SPACING)
    from_volume = rank_prompts(model, load_nifti(image), prompts, spacing=SPACING)
    assert [p for p, _ in from_volume] == [p for p, _ in from_file]
    np.testing.assert_allclose([q for _, q in from_volume], [q for _, q in from_file], atol=1e-6)


def test_rank_prompts_rejects_bad_arguments(model, image: Path) -> None:
    with pytest.raises(MetadataError, match="at least 2"):
        rank_prompts(model, image, [PROMPT.format("T1w")])
    with pytest.raises(MetadataError, match="distinct"):
        rank_prompts(model, image, [PROMPT.format("T1w")] * 2)
    with pytest.raises(ConfigError, match="spacing"):
        rank_prompts(model, image, modality_prompts((1, 1, 1)), spacing=0)


def test_modality_candidates_are_the_seven_default_protocols_at_the_voxel_size() -> None:
    prompts = modality_prompts((0.9375, 0.9375, 3.0))
    parsed = [parse_prompt(prompt) for prompt in prompts]
    assert [m.modality for m in parsed] == list(MODALITIES)
    assert all(m.voxel_size == (0.94, 0.94, 3.0) for m in parsed)
    assert len(set(prompts)) == 7
    with pytest.raises(MetadataError, match="3 values"):
        modality_prompts((1.0, 1.0))


def test_prompt_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = write_prompts(tmp_path, "# candidates", "", PROMPT.format("T1w"), "  ",
                         "  " + PROMPT.format("T2w"))  # fmt: skip
    prompts = read_prompts(path)
    assert [parse_prompt(p).modality for p in prompts] == ["T1w", "T2w"]
    assert prompts[0].startswith("Age: 30; Gender: F; Scanner: 3")


def test_prompt_file_errors_name_the_line(tmp_path: Path) -> None:
    path = write_prompts(tmp_path, "# candidates", PROMPT.format("T1w"), "Age: 30; Gender F")
    with pytest.raises(PromptParseError, match=r"prompts\.txt:3: "):
        read_prompts(path)
    path = write_prompts(tmp_path, PROMPT.format("T1w"), PROMPT.format("T1w"))
    with pytest.raises(MetadataError, match=r":2: repeats the prompt of line 1"):
        read_prompts(path)
    with pytest.raises(MetadataError, match="no prompts"):
        read_prompts(write_prompts(tmp_path, "# nothing"))


def test_the_bundled_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"needs a stage-1 checkpoint \(tumsyn train-text"):
        load_bmlip(bundled_checkpoint_path())


def test_cli_ranks_and_writes_json(checkpoint: Path, image: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ranking.json"
    argv = ["retrieve", str(image), "--modalities", "--checkpoint", str(checkpoint),
            "--top", "3", "--spacing", str(SPACING), "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "probability", "prompt"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert lines[4] == f"wrote {out}"
    content = json.loads(out.read_text())
    ranking = content["ranking"]
    assert [row["rank"] for row in ranking] == list(range(1, 8))
    assert math.isclose(sum(row["probability"] for row in ranking), 1.0, abs_tol=1e-5)
    assert {parse_prompt(row["prompt"]).modality for row in ranking} == set(MODALITIES)
    assert content["spacing"] == SPACING
    expected = rank_prompts(load_bmlip(checkpoint), image, modality_prompts((2, 2, 2)),
                            spacing=SPACING)  # fmt: skip
    assert [row["prompt"] for row in ranking] == [p for p, _ in expected]


def test_cli_reads_a_prompt_file(checkpoint: Path, image: Path, tmp_path: Path, capsys) -> None:
    prompts = write_prompts(tmp_path, PROMPT.format("T1w"), PROMPT.format("PD"))
    argv = ["retrieve", str(image), "--prompts", str(prompts), "--checkpoint", str(checkpoint)]
    assert main(argv) == 0
    rows = [line.split(maxsplit=2) for line in capsys.readouterr().out.splitlines()[1:]]
    assert [rank for rank, _, _ in rows] == ["1", "2"]
    assert {prompt for _, _, prompt in rows} == set(read_prompts(prompts))
    assert math.isclose(sum(float(p) for _, p, _ in rows), 1.0, abs_tol=2e-4)
    # No --spacing: stage-1 training's default, as the library's.
    expected = rank_prompts(load_bmlip(checkpoint), image, read_prompts(prompts))
    assert [prompt for _, _, prompt in rows] == [p for p, _ in expected]
    assert DEFAULT_SPACING == 2.0


def test_cli_user_errors_are_one_line(
    checkpoint: Path, image: Path, tmp_path: Path, capsys
) -> None:
    missing = str(tmp_path / "missing.safetensors")
    # Options are checked before any file is read: the checkpoint does not even exist.
    argv = ["retrieve", str(image), "--modalities", "--checkpoint", missing, "--top", "0"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error == "tumsyn retrieve: error: --top must be at least 1, got 0\n"
    argv = ["retrieve", str(image), "--modalities", "--checkpoint", str(checkpoint),
            "--json", str(image)]  # fmt: skip
    assert main(argv) == 2
    assert "never writes over an input" in capsys.readouterr().err
    bundled = str(bundled_checkpoint_path())
    assert main(["retrieve", str(image), "--modalities", "--checkpoint", bundled]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "needs a stage-1 checkpoint" in error
    bad = write_prompts(tmp_path, PROMPT.format("T1w"), "not a prompt")
    argv = ["retrieve", str(image), "--prompts", str(bad), "--checkpoint", str(checkpoint)]
    assert main(argv) == 2
    assert f"{bad}:2: " in capsys.readouterr().err


def test_retrieval_scores_on_a_simulated_cohort(model, cohort: Path, tmp_path: Path) -> None:
    records = load_index(cohort)
    scores = retrieval_scores(model, records, seed=3, spacing=8.0, cache=tmp_path / "cache")
    assert scores.images == scores.modality_images == len(records) == 14
    assert 0.0 <= scores.text_top1 <= 1.0 and 0.0 <= scores.modality_top1 <= 1.0
    assert scores.text_chance == pytest.approx(0.1)
    assert scores.modality_chance == pytest.approx(1 / 7)
    assert scores.text_candidates == 10
    again = retrieval_scores(model, records, seed=3, spacing=8.0, cache=tmp_path / "cache")
    assert again == scores
    rows = scores.rows()
    assert [row["task"] for row in rows] == ["image->text", "image->modality"]
    assert [row["chance"] for row in rows] == [0.1, round(1 / 7, 4)]


def test_retrieval_scores_with_few_prompts_use_them_all(model, cohort: Path) -> None:
    every = load_index(cohort)
    records = [r for r in every if r.subject == every[0].subject][:4]
    scores = retrieval_scores(model, records, spacing=8.0)
    assert scores.text_candidates == 4
    assert scores.text_chance == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="candidates"):
        retrieval_scores(model, records, candidates=1)
    with pytest.raises(ConfigError, match="2 distinct prompts"):
        retrieval_scores(model, records[:1])


def test_the_spacing_comes_from_the_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    assert recorded_spacing(checkpoint) == DEFAULT_SPACING  # saved without a record
    recorded = save_checkpoint(tmp_path / "s1.safetensors", build(SPEC), extra={"spacing": 3.0})
    assert recorded_spacing(recorded) == 3.0
