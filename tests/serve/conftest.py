"""The app of ``tumsyn serve`` on the bundled model, and a small source to upload."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

import tumsyn
from tumsyn.examples import example_t1w
from tumsyn.serve.app import create_app
from tumsyn.serve.workspace import Workspace


@pytest.fixture(scope="session")
def synthesizer() -> tumsyn.Synthesizer:
    return tumsyn.Synthesizer.from_checkpoint(device="cpu")


@pytest.fixture(scope="session")
def small_t1w() -> bytes:
    """A 28 x 32 x 24 crop (2 mm) of the bundled T1w as .nii.gz bytes: a few patches."""
    image = nib.load(example_t1w())
    crop = image.slicer[25:53, 30:62, 30:54]
    data = np.asarray(crop.dataobj, dtype=np.float32)
    buffer = io.BytesIO()
    nifti = nib.Nifti1Image(data, crop.affine)
    buffer.write(nifti.to_bytes())
    return gzip.compress(buffer.getvalue())


@pytest.fixture
def workspace(synthesizer) -> Iterator[Workspace]:
    space = Workspace(synthesizer, max_upload_bytes=4 << 20)
    yield space
    space.close()


@pytest.fixture
def client(synthesizer, workspace) -> Iterator[TestClient]:
    with TestClient(create_app(synthesizer, workspace)) as test_client:
        yield test_client
