"""Entry point the HTTP server imports in each worker: rebuilds the Config from the environment.

`aperture serve` puts the resolved settings in `APERTURE_SETTINGS` (JSON) so every worker process
builds the same app without re-reading files or flags.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette

from aperture.config import load_config
from aperture.server.app import create_app

SETTINGS_ENV = "APERTURE_SETTINGS"


def from_environment() -> Starlette:
    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    config_file = raw.pop("config_file", None)
    from pathlib import Path

    return create_app(load_config(Path(config_file) if config_file else None, **raw))
