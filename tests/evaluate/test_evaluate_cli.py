"""``tumsyn evaluate`` end to end on NIfTI files written with nibabel, checked independently."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tumsyn.cli import main
from tumsyn.evaluate.report import PairingError, pair_folders

SHAPE = (16, 16, 16)


def write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save with nibabel directly, making the folders on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine),
             path)  # fmt: skip
    return path


def head(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 16^3 bright ball with texture (the truth) and a noisy, rescaled copy (the prediction)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    inside = ((grid - 7.5) ** 2).sum(axis=0) <= 6.5**2
    truth = np.where(inside, 100 + 10 * grid[0] + rng.normal(0, 5, SHAPE), 0).astype(np.float32)
    pred = np.where(inside, 2 * truth + rng.normal(0, 20, SHAPE), 0).astype(np.float32)
    return truth, pred


def paper_metrics(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM as the paper defines them, written out again here with numpy and skimage."""
    mask = truth > 0

    def scaled(image: np.ndarray) -> np.ndarray:
        low, high = image[mask].min(), np.percentile(image[mask], 99.5)
        return np.clip((image - low) / (high - low), 0, 1)

    a, b = scaled(truth.astype(np.float64)), scaled(pred.astype(np.float64))
    psnr = 10 * np.log10(1 / np.mean((a[mask] - b[mask]) ** 2))
    _, local = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        full=True,
    )  # fmt: skip
    return float(psnr), float(local[mask].mean())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_one_pair_matches_an_independent_computation(capsys, tmp_path: Path) -> None:
    truth, pred = head()
    truth_path = write(tmp_path / "truth.nii.gz", truth)
    pred_path = write(tmp_path / "pred.nii.gz", pred)
    out, rows = tmp_path / "results.json", tmp_path / "rows.csv"
    code, stdout, err = run(
        capsys, "evaluate", "--pred", str(pred_path), "--truth", str(truth_path),
        "--out", str(out), "--csv", str(rows), "--seed", "0",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "pred.nii.gz" in stdout and "ci 97.5%" in stdout
    result = json.loads(out.read_text())
    expected_psnr, expected_ssim = paper_metrics(truth, pred)
    (row,) = result["rows"]
    assert row["psnr"] == pytest.approx(expected_psnr, abs=0.01)
    assert row["ssim"] == pytest.approx(expected_ssim, abs=0.001)
    assert result["summary"]["psnr"]["mean"] == row["psnr"]
    # One image has no interval: nothing to resample.
    assert result["summary"]["psnr"]["ci_low"] is None is result["summary"]["psnr"]["ci_high"]
    assert result["bootstrap"] == {
        "resamples": 100, "fraction": 0.7, "replacement": True, "percentiles": [2.5, 97.5],
        "seed": 0,
    }  # fmt: skip
    assert result["unevaluated_truths"] == []
    with rows.open() as handle:
        lines = list(csv.DictReader(handle))
    assert lines[0]["pred"] == str(pred_path) and lines[0]["truth"] == str(truth_path)
    assert float(lines[0]["mae"]) == pytest.approx(row["mae"])


def test_tissue_maps_add_contrast_errors(capsys, tmp_path: Path) -> None:
    truth, pred = head()
    third = np.array_split(np.arange(SHAPE[0]), 3)
    maps = []
    for name, rows in zip(("gm", "wm", "csf"), third, strict=True):
        tissue = np.zeros(SHAPE, dtype=np.float32)
        tissue[rows] = 0.8  # a probability map
        maps.append(str(write(tmp_path / f"{name}.nii.gz", tissue * (truth > 0))))
    args = ["--pred", str(write(tmp_path / "p.nii.gz", pred))]
    args += ["--truth", str(write(tmp_path / "t.nii.gz", truth))]
    out = tmp_path / "r.json"
    code, stdout, _ = run(capsys, "evaluate", *args, "--tissues", *maps, "--out", str(out))
    assert code == 0 and "gm_wm_error" in stdout
    row = json.loads(out.read_text())["rows"][0]
    assert abs(row["gm_wm_error"]) < 0.2 and abs(row["csf_wm_error"]) < 0.2


def bids_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A BIDS truth folder with three images and a derivatives folder predicting two of them."""
    truth, pred = head()
    bids, derivatives = tmp_path / "bids", tmp_path / "derivatives"
    for name in ("sub-01/ses-1/anat/sub-01_ses-1_FLAIR", "sub-01/ses-1/anat/sub-01_ses-1_T1w",
                 "sub-02/anat/sub-02_FLAIR"):  # fmt: skip
        write(bids / f"{name}.nii.gz", truth)
    write(derivatives / "sub-01/ses-1/anat/sub-01_ses-1_desc-tumsyn_FLAIR.nii.gz", pred)
    write(derivatives / "sub-02/anat/sub-02_desc-tumsyn_FLAIR.nii.gz", truth)
    return derivatives, bids


def test_folders_pair_by_entities_ignoring_desc(tmp_path: Path) -> None:
    derivatives, bids = bids_folders(tmp_path)
    pairs, rest = pair_folders(derivatives, bids)
    assert [(p.pred.name, p.truth.name) for p in pairs] == [
        ("sub-01_ses-1_desc-tumsyn_FLAIR.nii.gz", "sub-01_ses-1_FLAIR.nii.gz"),
        ("sub-02_desc-tumsyn_FLAIR.nii.gz", "sub-02_FLAIR.nii.gz"),
    ]
    assert [path.name for path in rest] == ["sub-01_ses-1_T1w.nii.gz"]


def test_a_synthesized_name_keeps_its_sources_acq_and_still_pairs(tmp_path: Path) -> None:
    # synthesize-bids names a FLAIR made from sub-01_acq-mprage_T1w
    # "sub-01_acq-mprage_desc-tumsyn_FLAIR": the source's acq label, not the truth's.
    truth = write(tmp_path / "bids/sub-01/anat/sub-01_acq-spaceflair_FLAIR.nii.gz", np.ones(SHAPE))
    write(tmp_path / "bids/sub-01/anat/sub-01_acq-mprage_T1w.nii.gz", np.ones(SHAPE))
    pred = "deriv/sub-01/anat/sub-01_acq-mprage_desc-tumsyn_FLAIR.nii.gz"
    write(tmp_path / pred, np.ones(SHAPE))
    pairs, rest = pair_folders(tmp_path / "deriv", tmp_path / "bids")
    assert [(p.pred.name, p.truth) for p in pairs] == [(Path(pred).name, truth)]
    assert [path.name for path in rest] == ["sub-01_acq-mprage_T1w.nii.gz"]
    write(tmp_path / "bids/sub-01/anat/sub-01_acq-tse_FLAIR.nii.gz", np.ones(SHAPE))
    with pytest.raises(PairingError, match="several truths differ only in their acq- label"):
        pair_folders(tmp_path / "deriv", tmp_path / "bids")


def test_plain_folders_pair_by_name(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        for name in ("x.nii.gz", "y.nii"):
            write(tmp_path / folder / name, np.ones((2, 2, 2)))
    pairs, rest = pair_folders(tmp_path / "a", tmp_path / "b")
    assert [(p.pred.name, p.truth.parent.name) for p in pairs] == [
        ("x.nii.gz", "b"),
        ("y.nii", "b"),
    ]
    assert rest == []


def test_ambiguous_predictions_are_refused(tmp_path: Path) -> None:
    derivatives, bids = bids_folders(tmp_path)
    write(derivatives / "sub-02/anat/sub-02_desc-other_FLAIR.nii.gz", np.ones(SHAPE))
    with pytest.raises(PairingError, match="both predictions for the same image"):
        pair_folders(derivatives, bids)


def test_folder_mode_end_to_end(capsys, tmp_path: Path) -> None:
    derivatives, bids = bids_folders(tmp_path)
    out = tmp_path / "results.json"
    code, stdout, _ = run(
        capsys, "evaluate", "--pred", str(derivatives), "--truth", str(bids), "--out", str(out)
    )
    assert code == 0 and "2 evaluated, 1 truths without a prediction" in stdout
    result = json.loads(out.read_text())
    assert result["evaluated"] == 2 and len(result["unevaluated_truths"]) == 1
    assert result["rows"][1]["psnr"] is None  # identical images: infinite PSNR, null in JSON
    assert result["summary"]["psnr"]["ci_low"] is None
    low, high = result["summary"]["ssim"]["ci_low"], result["summary"]["ssim"]["ci_high"]
    assert low <= result["summary"]["ssim"]["mean"] <= high


def bad_case(tmp_path: Path, case: str) -> list[str]:
    truth, pred = head()
    truth_path = str(write(tmp_path / "truth.nii.gz", truth))
    if case == "shape":
        return ["--pred", str(write(tmp_path / "p.nii.gz", pred[:-1])), "--truth", truth_path]
    if case == "affine":
        shifted = np.eye(4)
        shifted[0, 3] = 0.5
        return ["--pred", str(write(tmp_path / "p.nii.gz", pred, shifted)), "--truth", truth_path]
    if case == "missing":
        return ["--pred", str(tmp_path / "nothing.nii.gz"), "--truth", truth_path]
    if case == "unpaired":
        derivatives, bids = bids_folders(tmp_path)
        write(derivatives / "sub-03/anat/sub-03_desc-tumsyn_FLAIR.nii.gz", pred)
        return ["--pred", str(derivatives), "--truth", str(bids)]
    if case == "overwrite":
        return ["--pred", str(write(tmp_path / "p.nii.gz", pred)), "--truth", truth_path,
                "--csv", truth_path]  # fmt: skip
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("shape", "not on the same grid"),
        ("affine", "resample one onto the other"),
        ("missing", "nothing.nii.gz"),
        ("unpaired", "sub-03_desc-tumsyn_FLAIR.nii.gz: no truth"),
        ("overwrite", "never writes over an input"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(
    capsys, tmp_path: Path, case: str, message: str
) -> None:
    args = bad_case(tmp_path, case)
    out = tmp_path / "results.json"
    if case != "overwrite":
        args += ["--out", str(out), "--csv", str(tmp_path / "rows.csv")]
    code, stdout, err = run(capsys, "evaluate", *args)
    assert code == 2 and stdout == ""
    assert err.startswith("tumsyn evaluate: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists() and not (tmp_path / "rows.csv").exists()


def test_a_mask_file_replaces_the_default_mask(capsys, tmp_path: Path) -> None:
    from tumsyn.evaluate.metrics import psnr

    truth, pred = head()
    mask = np.zeros(SHAPE, dtype=bool)
    mask[4:12, 4:12, 4:12] = True
    args = ["--pred", str(write(tmp_path / "p.nii.gz", pred))]
    args += ["--truth", str(write(tmp_path / "t.nii.gz", truth))]
    args += ["--mask", str(write(tmp_path / "m.nii.gz", mask)), "--out", str(tmp_path / "r.json")]
    assert run(capsys, "evaluate", *args)[0] == 0
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["psnr"] == pytest.approx(psnr(truth, pred, mask), abs=1e-9)
    assert row["psnr"] != pytest.approx(psnr(truth, pred), abs=0.01)


def test_erode_scores_the_mask_shrunk_by_n_voxels(capsys, tmp_path: Path) -> None:
    """A prediction with a zero rim (clipped negatives at the brain's edge) loses its zeros'
    pull on the normalisation once the rim is eroded away."""
    from scipy import ndimage

    from tumsyn.evaluate.metrics import psnr

    truth, pred = head()
    inside = truth > 0
    pred = np.where(ndimage.binary_erosion(inside), pred, 0.0)  # a one-voxel rim of zeros
    args = ["--pred", str(write(tmp_path / "p.nii.gz", pred)),
            "--truth", str(write(tmp_path / "t.nii.gz", truth))]  # fmt: skip
    scores = {}
    for erode in (0, 1, 2):
        out = tmp_path / f"r{erode}.json"
        assert run(capsys, "evaluate", *args, "--erode", str(erode), "--out", str(out))[0] == 0
        scores[erode] = json.loads(out.read_text())["rows"][0]["psnr"]
    assert scores[0] == pytest.approx(psnr(truth, pred, inside), abs=1e-9)
    for erode in (1, 2):
        mask = ndimage.binary_erosion(inside, iterations=erode)
        assert scores[erode] == pytest.approx(psnr(truth, pred, mask), abs=1e-9)
    assert scores[1] > scores[0] + 1.0  # the rim's zeros no longer set the prediction's minimum


def test_eroding_the_whole_mask_away_is_a_clear_error(capsys, tmp_path: Path) -> None:
    truth, pred = head()
    args = ["--pred", str(write(tmp_path / "p.nii.gz", pred)),
            "--truth", str(write(tmp_path / "t.nii.gz", truth)), "--erode", "9"]  # fmt: skip
    code, stdout, err = run(capsys, "evaluate", *args)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "the brain mask is empty after eroding it by 9 voxels" in err
    code, _, err = run(capsys, "evaluate", *args[:-1], "-1")
    assert code == 2 and "--erode -1: give 0 or more voxels" in err


def subject_derivatives(bids: Path, subject: str, prefix: str, affine=None) -> np.ndarray:
    """A brain mask (a half ball) and GM/WM/CSF maps for one subject in bids/derivatives/seg."""
    truth, _ = head()
    folder = bids / "derivatives" / "seg" / subject / "anat"
    mask = (truth > 0) & (np.indices(SHAPE)[0] < 8)
    write(folder / f"{prefix}_desc-brain_mask.nii.gz", mask.astype(np.float32), affine)
    thirds = np.indices(SHAPE)[1] // 6
    for label, index in (("GM", 0), ("WM", 1), ("CSF", 2)):
        write(folder / f"{prefix}_label-{label}_probseg.nii.gz",
              ((thirds == index) & (truth > 0)).astype(np.float32), affine)  # fmt: skip
    return mask


def test_folder_mode_takes_each_subjects_mask_and_tissues(capsys, tmp_path: Path) -> None:
    derivatives, bids = bids_folders(tmp_path)
    mask = subject_derivatives(bids, "sub-01/ses-1", "sub-01_ses-1")
    out = tmp_path / "results.json"
    code, _, _ = run(capsys, "evaluate", "--pred", str(derivatives), "--truth", str(bids),
                     "--out", str(out))  # fmt: skip
    assert code == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["truth"].endswith("sub-01_ses-1_FLAIR.nii.gz")
    truth, pred = head()
    from tumsyn.evaluate.metrics import psnr

    assert row["psnr"] == pytest.approx(psnr(truth, pred, mask), abs=1e-6)  # the subject's mask
    assert row["psnr"] != pytest.approx(psnr(truth, pred, truth > 0), abs=1e-3)
    assert row["gm_wm_error"] is not None and row["csf_wm_error"] is not None
    second = json.loads(out.read_text())["rows"][1]  # sub-02 has no derivatives
    assert second["gm_wm_error"] is None


def test_maps_on_another_grid_are_left_out_with_a_warning(capsys, tmp_path: Path) -> None:
    derivatives, bids = bids_folders(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    subject_derivatives(bids, "sub-02", "sub-02", affine=shifted)
    out = tmp_path / "results.json"
    code, _, err = run(capsys, "evaluate", "--pred", str(derivatives), "--truth", str(bids),
                       "--out", str(out))  # fmt: skip
    assert code == 0 and "not on the grid of sub-02_FLAIR.nii.gz" in err
    assert "gm_wm_error" not in json.loads(out.read_text())["rows"][1]  # no maps were used
