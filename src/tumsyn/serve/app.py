"""The web app of ``tumsyn serve``: a page, NiiVue, and a small JSON API over the Python API.

FastAPI (on Starlette, run by uvicorn) because its request models are pydantic, as every other
settings object of tumsyn is, so a bad request gets the same one-line messages as the command
line. Routes:

- ``GET /``: the page; ``GET /niivue.umd.js``: the viewer; ``GET /static/...``: the page's code.
- ``GET /api/model``: the model's name, modalities with their default protocols, and coverage.
- ``POST /api/prompt``: the prompt text of a target and the model's coverage warnings.
- ``POST /api/sources/upload?name=...`` (the NIfTI as the body), ``POST /api/sources/example``,
  ``POST /api/sources/simulated``: a source; ``GET /api/sources/{id}/image.nii.gz``.
- ``POST /api/preview``: one plane of the output under the crosshair, as a PNG.
- ``POST /api/jobs``: a whole-volume job; ``GET /api/jobs/{id}``: its state and progress;
  ``GET /api/jobs/{id}/view.nii.gz`` (for the viewer), ``.../image.nii.gz`` and
  ``.../sidecar.json`` (the downloads, after which the job's files go).

User errors answer 400 (413 for an upload over the limit, 404 for an unknown or expired id) with
``{"error": "one line"}``; the page shows that line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tumsyn.errors import TumsynError
from tumsyn.examples import example_t1w
from tumsyn.infer.coverage import coverage_warnings
from tumsyn.infer.synthesizer import Synthesizer
from tumsyn.infer.target import checked_prompt
from tumsyn.metadata import ImagingMetadata, default_protocol, load_protocols
from tumsyn.metadata.modalities import MODALITIES
from tumsyn.serve.display import display_plane, plane_index, png_bytes
from tumsyn.serve.viewer import niivue_bundle
from tumsyn.serve.workspace import Source, UnknownItem, UploadTooLarge, Workspace

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
NIFTI = "application/gzip"


class Target(BaseModel):
    """What the page's form says; empty fields take the modality's default protocol."""

    model_config = ConfigDict(extra="forbid")

    modality: str
    tr: float | None = Field(default=None, gt=0)
    te: float | None = Field(default=None, gt=0)
    ti: float | None = Field(default=None, gt=0)
    flip_angle: float | None = Field(default=None, gt=0, le=180)
    field_strength: float | None = Field(default=None, gt=0)
    manufacturer: str | None = None
    voxel_size: tuple[float, float, float] | None = None
    age: float | None = Field(default=None, ge=0, le=130)
    sex: str | None = None


class PromptRequest(BaseModel):
    target: Target
    source: str | None = None


class PreviewRequest(BaseModel):
    source: str
    target: Target
    view: str = "axial"
    mm: tuple[float, float, float]


class JobRequest(BaseModel):
    source: str
    target: Target


def create_app(synthesizer: Synthesizer, workspace: Workspace) -> FastAPI:
    """The app for one loaded model; ``workspace`` holds its files (closed with the app)."""
    viewer = niivue_bundle()
    app = FastAPI(title="tumsyn", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)

    @app.middleware("http")
    async def expire(request: Request, call_next):
        workspace.expire()
        workspace.forget_downloaded()
        return await call_next(request)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/niivue.umd.js")
    def niivue() -> FileResponse:
        return FileResponse(viewer, media_type="text/javascript")

    @app.get("/api/model")
    def model() -> dict[str, Any]:
        return _model_facts(synthesizer)

    @app.post("/api/prompt")
    def prompt(request: PromptRequest) -> dict[str, Any]:
        source = workspace.source(request.source) if request.source else None
        metadata = _metadata(synthesizer, request.target, source)
        coverage = synthesizer.meta["extra"].get("coverage", {})
        told = synthesizer.model_target(metadata)  # without the fields the model ignores
        return {
            "prompt": checked_prompt(told),
            "warnings": coverage_warnings(told, coverage),
        }

    @app.post("/api/sources/upload")
    async def upload(request: Request, name: str) -> dict[str, Any]:
        workspace.check_upload_size(int(request.headers.get("content-length") or 0), name)
        # Written to disk as it arrives, in a worker thread that pulls each chunk from the loop.
        chunks = _blocking_chunks(request.stream())
        return _source_facts(await run_in_threadpool(workspace.add_upload, chunks, name))

    @app.post("/api/sources/example")
    def example() -> dict[str, Any]:
        return _source_facts(workspace.add_copy(example_t1w(), example_t1w().name))

    @app.post("/api/sources/simulated")
    def simulated(seed: int = 0) -> dict[str, Any]:
        return _source_facts(workspace.add_simulated(seed))

    @app.get("/api/sources/{source_id}/image.nii.gz")
    def source_image(source_id: str) -> FileResponse:
        source = workspace.source(source_id)
        return FileResponse(source.path, media_type=NIFTI, filename=source.name)

    @app.post("/api/preview")
    def preview(request: PreviewRequest) -> Response:
        source = workspace.source(request.source)
        metadata = _metadata(synthesizer, request.target, source)
        previewer = source.preview(synthesizer)
        grid = previewer.output_grid(metadata)
        axis, index = plane_index(grid, request.view, request.mm)
        plane = previewer.plane(metadata, axis, index)
        picture = display_plane(plane, grid, axis, request.view)
        headers = {"X-Plane": f"{axis}:{index}", "Cache-Control": "no-store"}
        return Response(png_bytes(picture), media_type="image/png", headers=headers)

    @app.post("/api/jobs")
    def submit(request: JobRequest) -> dict[str, Any]:
        source = workspace.source(request.source)
        job = workspace.submit(source, _metadata(synthesizer, request.target, source))
        return job.as_dict()

    @app.get("/api/jobs/{job_id}")
    def job_state(job_id: str) -> dict[str, Any]:
        return workspace.job(job_id).as_dict()

    @app.get("/api/jobs/{job_id}/view.nii.gz")
    def job_view(job_id: str) -> FileResponse:
        job = workspace.job(job_id)
        if job.state != "done":
            raise UnknownItem(f"job {job_id} has no result ({job.state})")
        return FileResponse(job.image, media_type=NIFTI)

    @app.get("/api/jobs/{job_id}/image.nii.gz")
    def job_image(job_id: str) -> FileResponse:
        job = workspace.job(job_id)
        path = workspace.download(job, "image")
        return FileResponse(path, media_type=NIFTI, filename=path.name)

    @app.get("/api/jobs/{job_id}/sidecar.json")
    def job_sidecar(job_id: str) -> FileResponse:
        job = workspace.job(job_id)
        path = workspace.download(job, "sidecar")
        return FileResponse(path, media_type="application/json", filename=path.name)

    app.router.add_event_handler("shutdown", workspace.close)
    return app


def _metadata(synthesizer: Synthesizer, target: Target, source: Source | None) -> ImagingMetadata:
    """The complete target: the modality's default protocol, the form's fields on top, and the
    source's voxel size (1 mm without a source) unless the form gives one."""
    fields = target.model_dump(exclude={"modality"}, exclude_none=True)
    voxel_size = None if source is None else source.volume.voxel_size
    if voxel_size is None and "voxel_size" not in fields:
        fields["voxel_size"] = (1.0, 1.0, 1.0)
    return synthesizer.target(target.modality, source_voxel_size=voxel_size, **fields)


def _model_facts(synthesizer: Synthesizer) -> dict[str, Any]:
    protocols = load_protocols("library")
    defaults = {}
    for modality in MODALITIES:
        m = default_protocol(modality).metadata
        defaults[modality] = {"tr": m.tr, "te": m.te, "ti": m.ti, "flip_angle": m.flip_angle,
                              "field_strength": m.field_strength,
                              "manufacturer": m.manufacturer}  # fmt: skip
    return {
        "name": synthesizer.name,
        "modalities": defaults,
        "manufacturers": sorted({p.metadata.manufacturer for p in protocols} - {None}),
        "field_strengths": sorted({p.metadata.field_strength for p in protocols} - {None}),
        "coverage": synthesizer.meta["extra"].get("coverage", {}),
        "ignored_fields": list(synthesizer.ignored_fields),
    }


def _source_facts(source: Source) -> dict[str, Any]:
    grid = source.volume.grid
    return {"id": source.id, "name": source.name, "shape": list(grid.shape),
            "voxel_size": [round(v, 3) for v in grid.voxel_size],
            "url": f"/api/sources/{source.id}/image.nii.gz"}  # fmt: skip


def _blocking_chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """An async body stream as a plain iterator, for a worker thread of the event loop's."""
    chunks = stream.__aiter__()
    while True:
        try:
            yield anyio.from_thread.run(chunks.__anext__)
        except StopAsyncIteration:
            return


def _add_error_handlers(app: FastAPI) -> None:
    def answer(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status)

    # The most specific class first: UnknownItem and UploadTooLarge are TumsynErrors too.
    for kind, status in ((UnknownItem, 404), (UploadTooLarge, 413), (TumsynError, 400),
                         (IndexError, 400)):  # fmt: skip
        app.add_exception_handler(
            kind, lambda request, error, status=status: answer(status, str(error))
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        return answer(400, f"{where or 'request'}: {problem.get('msg', 'invalid')}")
