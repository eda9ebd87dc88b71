"""End to end in a real browser: Debian's chromium, headless, driven by Playwright, against a real
``tumsyn serve`` on a free localhost port.

Set ``TUMSYN_SCREENSHOT=docs/figures/serve.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import uvicorn
from matplotlib.image import imread

from tumsyn.examples import example_t1w
from tumsyn.serve.app import create_app
from tumsyn.serve.workspace import Workspace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Software WebGL2 (NiiVue needs it) in a headless browser without a GPU.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(synthesizer) -> Iterator[str]:
    workspace = Workspace(synthesizer, max_upload_bytes=64 << 20)
    port = _free_port()
    config = uvicorn.Config(create_app(synthesizer, workspace), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not running.started and time.monotonic() < end:
        time.sleep(0.05)
    assert running.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)
    workspace.close()


def test_example_preview_synthesis_and_download_in_chromium(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    url = server
    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium (make browser)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 900}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_function("document.getElementById('prompt').textContent.includes('FLAIR')")
        # The bundled model ignores age and sex: their inputs are off, with the reason.
        assert page.is_disabled("#age") and page.is_disabled("#sex")
        assert "ignores age" in page.get_attribute("#age", "title")
        # A file that is not an image: one line in the page, no source.
        page.set_input_files("#upload", files=[
            {"name": "notes.nii.gz", "mimeType": "application/gzip", "buffer": b"not an image"}
        ])  # fmt: skip
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "notes.nii.gz" in page.text_content("#error")
        assert page.text_content("#source-info") == "No source."
        page.click("#use-example")
        page.wait_for_function("document.getElementById('preview').dataset.count", timeout=120_000)
        assert "79 × 97 × 81" in page.text_content("#source-info")

        # Moving the TE slider changes the prompt and, a moment later, the preview.
        page.select_option("#modality", "T2w")
        page.wait_for_function("document.getElementById('prompt').textContent.includes('T2w')")
        _settled(page)
        before = page.get_attribute("#preview", "src")
        page.fill("#te", "300")
        page.dispatch_event("#te", "input")
        page.wait_for_function(
            f"document.getElementById('preview').src !== '{before}'", timeout=120_000
        )
        assert "(3200.0, 300.0, None" in page.text_content("#prompt")
        assert page.evaluate("document.getElementById('preview').naturalWidth") > 0

        # A FLAIR volume: queued, shown in the viewer, downloaded with its sidecar.
        page.select_option("#modality", "FLAIR")
        page.click("#synthesize")
        page.wait_for_selector("#jobs a.download-image", timeout=300_000)
        page.wait_for_function("document.getElementById('result-view').dataset.job")
        page.wait_for_timeout(500)  # the viewer draws the loaded volume on its next frame
        for viewer in ("#source-view", "#result-view"):
            drawn = imread(io.BytesIO(page.locator(viewer).screenshot()))[..., :3]
            assert (drawn.mean(axis=-1) > 0.2).mean() > 0.05, f"{viewer} shows no image"
        with page.expect_download() as download:
            page.click("#jobs a.download-image")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        screenshot = os.environ.get("TUMSYN_SCREENSHOT")
        if screenshot:
            page.wait_for_timeout(1000)
            page.screenshot(path=screenshot)
        browser.close()
    assert not errors, errors
    assert saved.name == "sub-icbm152_FLAIR.nii.gz"
    result = nib.Nifti1Image.from_bytes(gzip.decompress(saved.read_bytes()))
    source = nib.load(example_t1w())
    assert result.shape == source.shape
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-5)
    assert np.count_nonzero(np.asarray(result.dataobj)) > 0.1 * np.prod(result.shape)


def _settled(page) -> None:
    """Wait until no preview request is on its way (the page numbers them)."""
    page.wait_for_function(
        "document.getElementById('preview-state').textContent.startsWith('plane')",
        timeout=120_000,
    )
