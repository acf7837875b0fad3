"""Entry point the HTTP server imports in each worker: the sandbox's settings come from the environment.

`aperture ehr serve` resolves flags and the config file once and puts the result in
`APERTURE_EHR_SETTINGS` (JSON), so every worker builds the same app.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette

from aperture.ehr.app import create_app
from aperture.ehr.config import EhrConfig

SETTINGS_ENV = "APERTURE_EHR_SETTINGS"


def from_environment() -> Starlette:
    return create_app(EhrConfig(**json.loads(os.environ.get(SETTINGS_ENV, "{}"))))
