"""The JSON API of ``tumsyn serve`` without a browser: sources, prompt, preview, jobs, errors, and
the files the server keeps (only its own, removed when done)."""

from __future__ import annotations

import gzip
import io
import json
import time

import nibabel as nib
import numpy as np
import pytest
from matplotlib.image import imread

from tumsyn.cli import main as tumsyn_main

FLAIR = {"modality": "FLAIR"}


def _upload(client, body: bytes, name: str = "sub-01_T1w.nii.gz"):
    return client.post("/api/sources/upload", params={"name": name}, content=body)


def _files(workspace) -> list[str]:
    return sorted(
        str(p.relative_to(workspace.root)) for p in workspace.root.rglob("*") if p.is_file()
    )


def _wait(client, job_id: str, timeout: float = 120.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {state['state']} after {timeout} s")


def test_the_page_the_viewer_and_the_model(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "niivue.umd.js" in page.text
    viewer = client.get("/niivue.umd.js")
    assert viewer.status_code == 200 and "Niivue" in viewer.text
    model = client.get("/api/model").json()
    assert model["name"] == "tumsyn-v2"
    assert set(model["modalities"]) == {"T1w", "T2w", "FLAIR", "SWI", "T2star", "PD", "T1CE"}
    assert model["modalities"]["FLAIR"]["ti"] > 0 and "Siemens" in model["manufacturers"]


def test_the_prompt_leaves_out_what_the_model_ignores(client) -> None:
    assert client.get("/api/model").json()["ignored_fields"] == ["age", "sex"]
    answer = client.post("/api/prompt", json={"target": {**FLAIR, "age": 70, "sex": "F"}}).json()
    assert answer["prompt"].startswith("Age: None; Gender: None; Scanner:")


def test_the_prompt_follows_the_form_and_tells_coverage(client) -> None:
    answer = client.post("/api/prompt", json={"target": {**FLAIR, "te": 120}}).json()
    assert "Modality: FLAIR" in answer["prompt"] and "(5000.0, 120.0, 1800.0" in answer["prompt"]
    far = client.post("/api/prompt", json={"target": {**FLAIR, "field_strength": 0.5}}).json()
    assert any("field" in warning for warning in far["warnings"])
    bad = client.post("/api/prompt", json={"target": {"modality": "DWI"}})
    assert bad.status_code == 400 and "DWI" in bad.json()["error"]
    assert "\n" not in bad.json()["error"]
    negative = client.post("/api/prompt", json={"target": {**FLAIR, "te": -1}})
    assert negative.status_code == 400 and negative.json()["error"].startswith("target.te:")


def test_an_upload_is_checked_and_kept_only_inside_the_workspace(client, workspace, small_t1w):
    source = _upload(client, small_t1w, name="../../etc/sub-01_T1w.nii.gz").json()
    assert source["shape"] == [28, 32, 24] and source["name"] == "sub-01_T1w.nii.gz"
    assert _files(workspace) == [f"sources/{source['id']}.nii.gz"]  # no client name as a path
    image = client.get(source["url"])
    assert nib.Nifti1Image.from_bytes(gzip.decompress(image.content)).shape == (28, 32, 24)


@pytest.mark.parametrize(
    ("body", "name", "status", "message"),
    [
        (b"not an image", "notes.txt", 400, "expected a NIfTI image"),
        (b"\x1f\x8b garbage", "sub-01_T1w.nii.gz", 400, "sub-01_T1w.nii.gz"),
        (bytes(5 << 20), "big_T1w.nii", 413, "upload limit of 4 MiB"),
    ],
)
def test_a_bad_upload_gets_one_line_and_leaves_nothing(client, workspace, body, name, status,
                                                       message) -> None:  # fmt: skip
    answer = _upload(client, body, name)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error
    assert _files(workspace) == []


def test_an_upload_without_a_declared_size_is_stopped_at_the_limit(client, workspace) -> None:
    chunks = (bytes(1 << 20) for _ in range(6))  # sent chunked: no Content-Length to refuse early
    answer = client.post("/api/sources/upload", params={"name": "big_T1w.nii"}, content=chunks)
    assert answer.status_code == 413 and "upload limit of 4 MiB" in answer.json()["error"]
    assert _files(workspace) == []


def test_the_example_and_a_simulated_subject_are_sources(client) -> None:
    example = client.post("/api/sources/example").json()
    assert example["name"] == "sub-icbm152_T1w.nii.gz" and example["shape"] == [79, 97, 81]
    simulated = client.post("/api/sources/simulated", params={"seed": 3}).json()
    assert simulated["name"] == "sim-seed3_T1w.nii.gz" and simulated["voxel_size"] == [2.0] * 3
    image = client.get(simulated["url"])
    data = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(image.content)).dataobj)
    assert data.ndim == 3 and data.max() > 0


def test_unknown_ids_answer_404(client) -> None:
    for path in ("/api/jobs/nope", "/api/jobs/nope/image.nii.gz", "/api/sources/nope/image.nii.gz"):
        answer = client.get(path)
        assert answer.status_code == 404 and "nope" in answer.json()["error"]
    preview = client.post("/api/preview", json={"source": "x", "target": FLAIR, "mm": [0, 0, 0]})
    assert preview.status_code == 404


def test_the_preview_is_a_plane_that_follows_the_prompt(client, small_t1w) -> None:
    source = _upload(client, small_t1w).json()
    request = {"source": source["id"], "view": "axial", "mm": [0.0, -10.0, 10.0]}
    planes = []
    for te in (80, 300):
        answer = client.post(
            "/api/preview", json={**request, "target": {"modality": "T2w", "te": te}}
        )
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        picture = imread(io.BytesIO(answer.content))
        assert picture.shape[:2] == (32, 28)  # axial of a RAS grid: rows y, columns x
        planes.append(picture[..., 0])
    assert not np.array_equal(*planes)
    coronal = client.post("/api/preview", json={**request, "view": "coronal", "target": FLAIR})
    assert imread(io.BytesIO(coronal.content)).shape[:2] == (24, 28)
    bad = client.post("/api/preview", json={**request, "view": "oblique", "target": FLAIR})
    assert bad.status_code == 400 and "oblique" in bad.json()["error"]


def test_jobs_queue_run_and_go_once_downloaded(client, workspace, small_t1w) -> None:
    source = _upload(client, small_t1w).json()
    jobs = [
        client.post("/api/jobs", json={"source": source["id"], "target": target}).json()
        for target in (FLAIR, {"modality": "T2w", "voxel_size": [3.0, 3.0, 3.0]})
    ]
    assert [job["state"] for job in jobs] in (["queued", "queued"], ["running", "queued"])
    finished = [_wait(client, job["id"]) for job in jobs]
    assert [job["state"] for job in finished] == ["done", "done"]
    assert [job["name"] for job in finished] == ["sub-01_FLAIR", "sub-01_T2w"]
    image = client.get(f"/api/jobs/{jobs[1]['id']}/image.nii.gz")
    result = nib.Nifti1Image.from_bytes(gzip.decompress(image.content))
    assert result.shape == (19, 21, 16) and np.asarray(result.dataobj).max() > 0
    np.testing.assert_allclose(result.header.get_zooms(), (3.0, 3.0, 3.0))
    sidecar = json.loads(client.get(f"/api/jobs/{jobs[1]['id']}/sidecar.json").content)
    assert "Modality: T2w" in sidecar["SynthesisPrompt"]
    client.get("/api/model")  # the next request clears downloaded jobs
    assert client.get(f"/api/jobs/{jobs[1]['id']}").status_code == 404
    assert not (workspace.root / "jobs" / jobs[1]["id"]).exists()
    assert (workspace.root / "jobs" / jobs[0]["id"]).exists()  # not downloaded yet


def test_unused_sources_and_jobs_expire(client, workspace, small_t1w) -> None:
    source = _upload(client, small_t1w).json()
    job = client.post("/api/jobs", json={"source": source["id"], "target": FLAIR}).json()
    _wait(client, job["id"])
    workspace.keep_seconds = 0.0
    client.get("/api/model")
    assert _files(workspace) == []
    assert client.get(source["url"]).status_code == 404


def test_serve_without_the_viewer_says_how_to_install_it(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("TUMSYN_NIIVUE", str(tmp_path / "missing.js"))
    assert tumsyn_main(["serve", "--port", "8999"]) == 2
    error = capsys.readouterr().err.strip()
    assert "NiiVue is not installed" in error and "make setup" in error and "\n" not in error
