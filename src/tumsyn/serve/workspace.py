"""The server's own files and work: sources, previews and a queue of whole-volume jobs.

Everything lives in one temporary folder that the server creates and removes when it stops. The
client names things only by the random ids handed out here; no name or path it sends is ever
used as a path (an upload's name is only shown, and tells ``.nii`` from ``.nii.gz``). A job's
files go when both of them (the image and its sidecar) have been downloaded; sources and jobs
unused for ``keep_seconds`` go too.
"""

from __future__ import annotations

import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tumsyn.errors import TumsynError
from tumsyn.infer.files import synthesize_file
from tumsyn.infer.preview import PlanePreview
from tumsyn.infer.synthesizer import Synthesizer
from tumsyn.io import Volume, load_nifti
from tumsyn.metadata import ImagingMetadata, modality_from_file_name

__all__ = ["Job", "Source", "UnknownItem", "UploadTooLarge", "Workspace"]

DOWNLOADS = ("image", "sidecar")


class UnknownItem(TumsynError, KeyError):
    """A source or job id that the server does not hold (never made, or expired)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UploadTooLarge(TumsynError, ValueError):
    """An upload over the server's limit."""


@dataclass
class Source:
    """An image to synthesize from, as the server holds it."""

    id: str
    name: str
    path: Path
    volume: Volume
    used: float = field(default_factory=time.monotonic)
    _preview: PlanePreview | None = None

    @property
    def modality(self) -> str | None:
        """The modality its file name tells (``sub-01_T2w.nii.gz``, ``IXI002-Guys-0828-T2.nii.gz``),
        if any."""
        return modality_from_file_name(self.name)

    def preview(self, synthesizer: Synthesizer) -> PlanePreview:
        """The source's plane previewer (its patch features are kept between requests)."""
        if self._preview is None:
            self._preview = PlanePreview(synthesizer, self.volume, input_modality=self.modality,
                                         max_cache_bytes=512 << 20)  # fmt: skip
        return self._preview


@dataclass
class Job:
    """One whole-volume synthesis, queued, running, done or failed."""

    id: str
    source: Source
    metadata: ImagingMetadata
    folder: Path
    name: str
    state: str = "queued"
    progress: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    used: float = field(default_factory=time.monotonic)
    downloaded: set[str] = field(default_factory=set)

    @property
    def image(self) -> Path:
        return self.folder / f"{self.name}.nii.gz"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.name}.json"

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(self.progress, 3),
            "error": self.error,
            "warnings": list(self.warnings),
            "name": self.name,
        }


def _display_name(name: str) -> str:
    """The last part of an uploaded file's name, only ever shown (never a path here)."""
    return Path(name.replace("\\", "/")).name or "upload.nii.gz"


def output_name(source_name: str, modality: str) -> str:
    """``sub-01_T1w.nii.gz`` -> ``sub-01_FLAIR``: the source's entities with the new suffix."""
    stem = re.sub(r"\.nii(\.gz)?$", "", source_name, flags=re.I)
    entities = stem.rsplit("_", 1)[0] if "_" in stem else stem
    return f"{entities}_{modality}"


class Workspace:
    """Sources and jobs of one server, in a temporary folder of its own.

    Args:
        synthesizer: the loaded model.
        keep_seconds: how long an unused source or job is kept.
        max_upload_bytes: the largest upload accepted.
    """

    def __init__(
        self, synthesizer: Synthesizer, *, keep_seconds: float = 3600, max_upload_bytes: int
    ) -> None:
        self.synthesizer = synthesizer
        self.keep_seconds, self.max_upload_bytes = keep_seconds, max_upload_bytes
        self.root = Path(tempfile.mkdtemp(prefix="tumsyn-serve-"))
        self.sources: dict[str, Source] = {}
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="tumsyn-jobs", daemon=True)
        self._worker.start()

    # Sources -------------------------------------------------------------------------------

    def add_file(self, path: Path, name: str) -> Source:
        """A NIfTI already in the workspace, checked as the command line checks inputs."""
        try:
            volume = load_nifti(path)
        except TumsynError as error:
            path.unlink(missing_ok=True)
            message = str(error).replace(str(path), name)
            raise type(error)(message) from None
        source = Source(path.name.split(".")[0], name, path, volume)
        with self._lock:
            self.sources[source.id] = source
        return source

    def new_path(self, suffix: str) -> Path:
        """A fresh file name of the workspace (random id + ``suffix``)."""
        folder = self.root / "sources"
        folder.mkdir(exist_ok=True)
        return folder / f"{secrets.token_hex(12)}{suffix}"

    def add_upload(self, chunks: Iterable[bytes], name: str) -> Source:
        """An uploaded NIfTI, written as it arrives and refused past the size limit."""
        display = _display_name(name)
        suffix = ".nii.gz" if display.lower().endswith(".nii.gz") else ".nii"
        if not display.lower().endswith((".nii", ".nii.gz")):
            raise TumsynError(f"{display}: expected a NIfTI image (.nii or .nii.gz)")
        path = self.new_path(suffix)
        size = 0
        with path.open("wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > self.max_upload_bytes:
                    handle.close()
                    path.unlink(missing_ok=True)
                    self.check_upload_size(size, display)
                handle.write(chunk)
        return self.add_file(path, display)

    def check_upload_size(self, size: int, name: str) -> None:
        """Refuse an upload of ``size`` bytes over the limit (``UploadTooLarge``)."""
        if size > self.max_upload_bytes:
            raise UploadTooLarge(
                f"{_display_name(name)}: larger than this server's upload "
                f"limit of {self.max_upload_bytes // 2**20} MiB (tumsyn serve --max-upload-mb)"
            )

    def add_copy(self, original: Path, name: str) -> Source:
        """A copy of a file the server itself chose (the bundled example)."""
        path = self.new_path(".nii.gz" if original.name.endswith(".gz") else ".nii")
        shutil.copyfile(original, path)
        return self.add_file(path, name)

    def add_simulated(self, seed: int) -> Source:
        """A virtual subject's T1w (packaged default protocol, 2 mm) from the simulator."""
        from tumsyn.metadata import default_protocol
        from tumsyn.simulate import CohortSettings, simulate_dataset

        folder = self.root / f"simulated-{secrets.token_hex(6)}"
        protocols = [default_protocol("T1w")]
        simulate_dataset(folder, CohortSettings(1, seed=seed), protocols, voxel_size=(2, 2, 2),
                         progress=False)  # fmt: skip
        image = next(folder.glob("sub-*/anat/*_T1w.nii.gz"))
        path = self.new_path(".nii.gz")
        image.replace(path)
        shutil.rmtree(folder, ignore_errors=True)
        return self.add_file(path, f"sim-seed{seed}_T1w.nii.gz")

    def source(self, source_id: str) -> Source:
        return self._lookup(self.sources, source_id, "no source {!r} on this server (expired?): "
                            "load it again")  # fmt: skip

    def _lookup(self, table: dict, key: str, missing: str):
        """``table[key]``, marked as used now; ``missing.format(key)`` as the error if absent."""
        with self._lock:
            item = table.get(key)
        if item is None:
            raise UnknownItem(missing.format(key))
        item.used = time.monotonic()
        return item

    # Jobs ----------------------------------------------------------------------------------

    def submit(self, source: Source, metadata: ImagingMetadata) -> Job:
        """Queue a whole-volume synthesis; jobs run one after another."""
        job_id = secrets.token_hex(12)
        folder = self.root / "jobs" / job_id
        folder.mkdir(parents=True)
        job = Job(job_id, source, metadata, folder, output_name(source.name, metadata.modality))
        with self._lock:
            self.jobs[job_id] = job
        self._queue.put(job)
        return job

    def job(self, job_id: str) -> Job:
        return self._lookup(self.jobs, job_id, "no job {!r} on this server (expired or downloaded)")

    def download(self, job: Job, what: str) -> Path:
        """The file of a finished job; once both have been fetched the job's files go."""
        if job.state != "done":
            raise UnknownItem(f"job {job.id} has no result ({job.state})")
        job.downloaded.add(what)
        return job.image if what == "image" else job.sidecar

    def forget_downloaded(self) -> None:
        """Remove jobs whose image and sidecar have both been downloaded."""
        with self._lock:
            done = [job for job in self.jobs.values() if job.downloaded >= set(DOWNLOADS)]
            for job in done:
                del self.jobs[job.id]
        for job in done:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.id not in self.jobs:
                continue
            job.state = "running"
            try:
                result = synthesize_file(
                    self.synthesizer, job.source.path, job.image, job.metadata,
                    progress=lambda groups, job=job: _tracked(groups, job),
                    input_modality=job.source.modality,
                )  # fmt: skip
            except Exception as error:  # a job's failure is told to its page, not raised here
                job.state, job.error = "failed", str(error).splitlines()[0]
                continue
            job.warnings, job.progress, job.state = result.image.warnings, 1.0, "done"

    # Expiry --------------------------------------------------------------------------------

    def expire(self) -> None:
        """Let go of sources and finished jobs unused for ``keep_seconds``."""
        limit = time.monotonic() - self.keep_seconds
        with self._lock:
            old_jobs = [j for j in self.jobs.values() if j.used < limit and j.state != "running"]
            for job in old_jobs:
                del self.jobs[job.id]
            busy = {job.source.id for job in self.jobs.values()}
            old = [s for s in self.sources.values() if s.used < limit and s.id not in busy]
            for source in old:
                del self.sources[source.id]
        for job in old_jobs:
            shutil.rmtree(job.folder, ignore_errors=True)
        for source in old:
            source.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the worker after the running job and remove every file."""
        self._queue.put(None)
        self._worker.join(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def _tracked(groups: list, job: Job) -> Iterator:
    for done, group in enumerate(groups):
        job.progress = done / max(len(groups), 1)
        yield group
