"""Where the page's viewer, NiiVue, lies on this machine.

NiiVue comes from the npm registry (``@niivue/niivue``; ``make setup`` unpacks its UMD bundle into
the virtual environment) and is served by tumsyn itself: the page loads nothing from a CDN and
works offline. It is not committed here, and a pip-installed tumsyn finds it wherever
``TUMSYN_NIIVUE`` points.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tumsyn.errors import ConfigError

__all__ = ["NIIVUE_BUNDLE", "niivue_bundle"]

NIIVUE_BUNDLE = "niivue.umd.js"


def niivue_bundle() -> Path:
    """The NiiVue bundle: ``$TUMSYN_NIIVUE``, else ``<prefix>/share/tumsyn/niivue/niivue.umd.js``.

    Raises:
        ConfigError: it is not there (says how to install it).
    """
    given = os.environ.get("TUMSYN_NIIVUE")
    path = (
        Path(given) if given else Path(sys.prefix) / "share" / "tumsyn" / "niivue" / NIIVUE_BUNDLE
    )
    if not path.is_file():
        raise ConfigError(
            f"the viewer NiiVue is not installed ({path} is missing): run `make setup`, or "
            f"`npm pack @niivue/niivue` and set TUMSYN_NIIVUE to the package's dist/{NIIVUE_BUNDLE}"
        )
    return path
