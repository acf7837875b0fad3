"""What the two servers log, shared by both: the console setup and the opt-in access log.

The default log is for a person at a console: URLs, warnings and problems. It never holds patient
data (query values such as PatientID or PatientName) or credentials (tokens, codes, assertions,
secrets, passwords), so the per-request access log is off unless asked for (`--access-log`).

When it is on, `AccessLog` writes one line per request on `aperture.access`: client, method,
path, query, status, bytes sent, duration. The query keeps every parameter NAME but only the
values of the names in `SAFE_PARAMETERS` (paging and presentation controls); every other value is
`REDACTED`, so a search for a patient logs only that a PatientID was given. Headers and bodies are
never logged, so neither are `Authorization`, form posts (passwords, client assertions, code
verifiers) nor uploads. Paths are logged as sent: they hold resource identifiers (Study/Series/SOP
Instance UIDs, FHIR logical ids) but never credentials, which both servers take only in headers,
bodies and the query. It wraps the whole application, so answers made by Starlette's error
middleware (500) are logged too.

Libraries that log at INFO on every start (alembic's plugin and migration lines) or that warn
about odd uploaded files (pydicom, whose messages may quote the values it read) are quieted.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import warnings
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("aperture.access")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Query parameters whose values are logged as sent: they say how to answer (paging, format,
# rendering, the OAuth flow's public parameters), never whom or what to look for, and carry no
# credential. Compared in lower case, after %-decoding.
SAFE_PARAMETERS = frozenset(
    {
        # DICOMweb (PS3.18): QIDO-RS paging and fields, WADO-RS and rendered-resource controls
        "limit", "offset", "fuzzymatching", "includefield", "accept", "charset", "annotation",
        "quality", "viewport", "window", "iccprofile",
        # this server's own health check
        "background",
        # FHIR search controls
        "_count", "_offset", "_format", "_summary", "_elements", "_sort", "_total", "_include", "_revinclude",
        "_page_after",  # the imaging FHIR endpoint's paging cursor (a row number, aperture.fhir.bundle)
        # OAuth 2.0 / SMART parameters that are public by design
        "response_type", "grant_type", "client_id", "redirect_uri", "scope", "aud",
        "code_challenge_method", "client_assertion_type", "token_type_hint", "iss",
    }
)  # fmt: skip
REDACTED = "REDACTED"
# A parameter name is logged only when it looks like one: a keyword, a tag, a dotted sequence path.
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Loggers that would fill the console with what a newcomer does not need, and the level they get.
QUIET_LOGGERS = {
    "alembic": "WARNING",  # seven plugin lines and the migration steps on every start
    "pydicom": "ERROR",  # warnings about odd files; its messages may quote patient data
}


class AccessLog:
    """Logs `client method path?query status bytes duration` after each HTTP response, when enabled.

    Enabled means `aperture.access` logs at INFO: `worker_logging(access_log=True)` sets that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0
        declared = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent, declared
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-length" and value.isdigit():
                        declared = int(value)
            elif kind == "http.response.pathsend":  # the server sends the file itself
                sent += declared
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            duration = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %s %d %d %.1fms",
                client_address(scope),
                scope["method"],
                target(scope),
                status or 500,  # nothing was sent: the request failed before any answer
                sent,
                duration,
            )


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def logged_path(scope: Scope) -> str:
    """The request's path as sent (%-encoded), escaped when not printable: one log line, never two."""
    raw: bytes | None = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


def target(scope: Scope) -> str:
    """The path (still %-encoded when the server gives it) and the redacted query, safe for one log line."""
    raw: bytes | None = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    text = f"{path}?{redact(query)}" if query else path
    if not text.isprintable():  # a decoded %0A must not start a forged log line
        text = text.encode("unicode_escape").decode("ascii")
    return text


def redact(query: str) -> str:
    """`query` with every value REDACTED but those of `SAFE_PARAMETERS` (names match case-insensitively).

    A pair without `=` is a value as much as a name, so it is REDACTED too unless it is a safe name;
    so is a name that does not look like a parameter name.
    """
    if not query:
        return query
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, value = pair.partition("=")
        decoded = unquote_plus(name)
        if decoded.lower() in SAFE_PARAMETERS:
            continue
        if not equals or not _NAME.fullmatch(decoded):
            pairs[index] = REDACTED if pair else pair
        elif value:
            pairs[index] = f"{name}={REDACTED}"
    return "&".join(pairs)


def console_logging() -> None:
    """The log setup of a command's own process (`aperture serve`, `aperture ehr serve`): INFO, quiet libraries."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    quiet_warnings()


def quiet_warnings() -> None:
    """pydicom warns about every odd file it reads; the upload's answer already says what was refused.

    Its warnings may quote the values read (a malformed PatientName), so they must not reach a log.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"aperture\.dicom(\.|$)")


def worker_logging(*, access_log: bool = False) -> dict[str, Any]:
    """The logging setup granian applies in every worker process (it calls dictConfig there).

    Without it, Aperture's INFO lines reach the log only when workers are forked after
    `basicConfig`; with spawned workers they would be dropped. granian replaces its defaults by the
    top-level keys given, so its own loggers are kept from its defaults. `access_log` turns the
    `aperture.access` lines on (INFO); otherwise that logger only passes warnings.
    """
    from granian.log import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["aperture"] = {"format": LOG_FORMAT}
    config["handlers"]["aperture"] = {
        "class": "logging.StreamHandler",
        "formatter": "aperture",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"level": "INFO", "handlers": ["aperture"]}
    loggers = config.setdefault("loggers", {})
    for name, level in QUIET_LOGGERS.items():
        loggers[name] = {"level": level}
    loggers["aperture.access"] = {"level": "INFO" if access_log else "WARNING"}
    return config
