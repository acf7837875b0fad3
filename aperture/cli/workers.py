"""The factories granian calls in each worker process of `aperture serve` and `aperture ehr serve`.

Before building the application, a worker ties its life to the server process that started it (a
worker busy with a long request must not outlive it) and quiets library warnings, whichever way
granian started it (fork or spawn).
"""

from __future__ import annotations

import os
import signal

from starlette.applications import Starlette

from aperture.lifecycle import die_with_parent
from aperture.logs import quiet_warnings

PARENT_ENV = "APERTURE_SERVER_PID"  # set by the command to its own pid before granian starts


def _worker_started() -> None:
    parent = os.environ.get(PARENT_ENV, "")
    die_with_parent(signal.SIGKILL, int(parent) if parent.isdigit() else None)
    quiet_warnings()


def imaging() -> Starlette:
    from aperture.server.asgi import from_environment

    _worker_started()
    return from_environment()


def ehr() -> Starlette:
    from aperture.ehr.asgi import from_environment

    _worker_started()
    return from_environment()
