"""``tumsyn serve``: synthesize and compare in the browser, with a live preview of the prompt.

The page and its API (:mod:`tumsyn.serve.app`) sit on the Python API; files live in a folder of
the server's own (:mod:`tumsyn.serve.workspace`); the viewer, NiiVue, is served from the copy
that ``make setup`` installed (:mod:`tumsyn.serve.viewer`). Needs the ``serve`` extra (FastAPI,
uvicorn).
"""

from __future__ import annotations

__all__ = ["serve"]


def serve(
    synthesizer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: int = 512,
    keep_minutes: float = 60.0,
    announce=print,
) -> None:
    """Run the app until interrupted; every file it made is removed when it stops."""
    import uvicorn

    from tumsyn.serve.app import create_app
    from tumsyn.serve.workspace import Workspace

    workspace = Workspace(
        synthesizer, keep_seconds=keep_minutes * 60, max_upload_bytes=max_upload_mb << 20
    )
    try:
        app = create_app(synthesizer, workspace)
        shown = f"[{host}]" if ":" in host else host
        announce(
            f"tumsyn serve: open http://{shown}:{port}/ (model {synthesizer.name}; Ctrl-C stops)"
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        workspace.close()
