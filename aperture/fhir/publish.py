"""Publishing each stable study's ImagingStudy to the EHR, so the EHR's own index stays actionable.

A study is *stable* once it has had no change (no new instance, no deletion) for
`fhir.publish_after_seconds`: its `updated` time is that far in the past. The publisher then builds
its SmartImagingStudy from the index (`aperture.fhir.imagingstudy`, with the WADO-RS Endpoint
contained, since the EHR has no way to resolve ours) and sends it to the EHR as a FHIR R4
conditional update (§3.1.0.4.3): `PUT {ehr}/ImagingStudy?identifier=urn:dicom:uid|urn:oid:<UID>`,
so the same study sent again is an update, never a duplicate. It authenticates with this server's
own Backend Services token (`aperture.auth.backend`, scope `system/ImagingStudy.cu`).

The subject is the DICOM identity as an identifier, `{system, value}`: the PatientID, under the
identifier system that `fhir.patient_identifier_systems` maps to the study's IssuerOfPatientID (or
the issuer itself when it is a URI). The EHR matches it to a Patient by system and value; a study
whose issuer has no system is not sent (a value alone names nobody) and is noted instead.

What the EHR has is kept in the index (`studies.published_updated` = the `updated` value sent, and
`published_note`), so a restart does not publish everything again and a study that changes again
is published again once stable. Answers:

- 200/201: published.
- 422 (no patient matches: the EHR queues it for reconciliation), 409 (the EHR holds the study for
  another patient), 400 (the EHR refuses the resource itself): settled with the EHR's reason as
  the note, not retried until the study changes again.
- The EHR down, no token, 401 (the token is dropped first), 403, 429 or 5xx: about every study, so
  the whole round pauses, for `RETRY_FIRST_SECONDS` doubling up to `RETRY_MAX_SECONDS` while it
  lasts. Any other answer: logged, and that study alone is retried with the same backoff.

It runs in one process per data folder: the worker that holds an exclusive lock on
`{store.path}/publisher.lock` (the others keep trying, so one takes over if it ends). It reads the
index through `policy.server_itself()`: it acts as the server, not for a request. It is off when
`fhir.publish_after_seconds` is 0 or no Backend Services client is configured
(`auth.backend_client_id`). Finding stable studies is one query over the studies table per round
(`POLL_MAX_SECONDS` at most apart), outside any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from aperture.auth.backend import BackendClient, backend_configured
from aperture.auth.policy import server_itself
from aperture.config import Config
from aperture.errors import AuthorizationServerUnavailable
from aperture.fhir.imagingstudy import ENDPOINT_ID, imaging_study, wado_endpoint
from aperture.store.index import Index
from aperture.store.publication import Due, due_studies, mark_published

log = logging.getLogger("aperture.publish")

SCOPE = "system/ImagingStudy.cu"
BATCH = 20  # studies per round
POLL_MAX_SECONDS = 10.0
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0
LOCK_FILE = "publisher.lock"
SETTLED = (400, 409, 422)  # the EHR's answer will not change until the study does


def publishing_enabled(config: Config) -> bool:
    return config.fhir.publish_after_seconds > 0 and backend_configured(config.auth)


def check_publishing(config: Config) -> None:
    """Refuse, before the server starts, publishing settings that cannot work (the key file above all)."""
    if publishing_enabled(config):
        BackendClient.check(config.auth)


def ehr_fhir_base(config: Config) -> str:
    return config.fhir.ehr_base or config.auth.ehr_issuer


def wado_rs_base(config: Config) -> str:
    """Our WADO-RS base as the EHR's apps reach it: `server.public_url`, else the listening address."""
    root = config.server.public_url.rstrip("/") or f"http://{config.server.host}:{config.server.port}"
    return f"{root}/dicom-web"


@dataclass
class _Retry:
    attempts: int
    due: float  # time.monotonic()


class Publisher:
    """One per server process; `start()` in the lifespan, `await stop()` at its end."""

    def __init__(self, config: Config, index: Index, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.index = index
        self.engine = index.engine
        self.after = config.fhir.publish_after_seconds
        self.base = ehr_fhir_base(config)
        self.wado = wado_rs_base(config)
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(config.auth.timeout_seconds))
        self.backend = BackendClient(config.auth, SCOPE, client=self._client)
        self._retries: dict[str, _Retry] = {}
        self._paused_until = 0.0
        self._outage = 0  # consecutive rounds the EHR could not be reached
        self._lock: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="imagingstudy-publisher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
        if self._lock is not None:
            self._lock.close()  # releases the lock for another process

    def _poll_seconds(self) -> float:
        return max(0.5, min(POLL_MAX_SECONDS, self.after / 2))

    def _hold_lock(self) -> bool:
        """Whether this process is the publisher (an exclusive lock on the data folder's lock file)."""
        if self._lock is not None:
            return True
        path = Path(self.config.store.path) / LOCK_FILE
        handle = open(path, "ab")  # held open while this process publishes: that is the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        log.info(
            "publishing stable studies to %s (pid %d, %ds after their last change)", self.base, os.getpid(), self.after
        )
        return True

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._hold_lock() and time.monotonic() >= self._paused_until:
                    await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_seconds())

    def pending(self) -> list[Due]:
        """Stable studies the EHR does not have as they are now, oldest change first; retries not yet due left out."""
        waiting = {uid for uid, retry in self._retries.items() if retry.due > time.monotonic()}
        cutoff = int(time.time()) - self.after
        return due_studies(self.engine, server_itself(), changed_before=cutoff, limit=BATCH, skip=waiting)

    async def round(self) -> int:
        """Publish what is pending now; how many were published or settled."""
        done = 0
        for item in await asyncio.to_thread(self.pending):
            if self._stopping.is_set():
                break
            outcome = await self.publish(item)
            if outcome is None:
                break  # the EHR cannot be reached: the round is paused, not every study tried in turn
            done += outcome
        return done

    def build(self, study_uid: str) -> tuple[dict[str, Any] | None, str, int]:
        """(the ImagingStudy to send or None, why not, the `updated` it describes) from the index."""
        scope = server_itself()
        summary = self.index.study_summary(scope, study_uid)
        if summary is None:
            return None, "deleted before it was published", 0
        series = self.index.series_summaries(scope, [summary.pk]).get(summary.pk, [])
        resource = imaging_study(summary, series, asked=None, config=self.config.fhir,
                                 endpoint_reference=f"#{ENDPOINT_ID}")  # fmt: skip
        identifier = resource["subject"].get("identifier", {})
        if not identifier.get("system") or not identifier.get("value"):
            issuer = summary.issuer or "(none)"
            return None, (
                f"not published: IssuerOfPatientID {issuer!r} has no identifier system in "
                "fhir.patient_identifier_systems (a PatientID alone names nobody at the EHR)"
            ), summary.updated  # fmt: skip
        del resource["id"]  # the EHR assigns its own; the study is named by its UID
        resource["meta"] = {k: v for k, v in resource["meta"].items() if k != "lastUpdated"}
        if "endpoint" in resource:
            resource["contained"] = [wado_endpoint(self.wado)]
        return resource, "", summary.updated

    async def publish(self, item: Due) -> int | None:
        """Send one study: 1 when published or settled, 0 when it will be retried, None when the EHR is out of reach."""
        uid = item.study_uid
        resource, why_not, updated = await asyncio.to_thread(self.build, uid)
        if updated and updated != item.updated:
            return 0  # it changed since it was found stable: it is published once stable again
        if resource is None:
            if updated:
                log.warning("study %s %s", uid, why_not)
                await asyncio.to_thread(self._mark, uid, updated, why_not)
            self._retries.pop(uid, None)
            return 1
        try:
            token = await self.backend.token()
            response = await self._client.put(
                f"{self.base}/ImagingStudy",
                params={"identifier": f"urn:dicom:uid|urn:oid:{uid}"},
                content=json.dumps(resource, separators=(",", ":")),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json",
                         "Accept": "application/fhir+json"},
            )  # fmt: skip
        except AuthorizationServerUnavailable as exc:
            log.warning("cannot publish study %s: %s", uid, exc.message)
            self._pause()
            return None
        except httpx.HTTPError as exc:
            log.warning("cannot publish study %s: the EHR at %s cannot be reached (%s)", uid, self.base,
                        type(exc).__name__)  # fmt: skip
            self._pause()
            return None
        status = response.status_code
        if status in (200, 201) or status in SETTLED:
            self._outage = 0
        if status in (200, 201):
            log.info("published study %s to %s (%d)", uid, self.base, status)
            await asyncio.to_thread(self._mark, uid, updated, f"published ({status})")
            self._retries.pop(uid, None)
            return 1
        reason = _diagnostics(response)
        if status in SETTLED:
            # 422/409 diagnostics quote the patient's identifier: kept in the index's note, not in the log
            said = f": {reason}" if status == 400 else " (the EHR lists it for reconciliation)"
            log.warning("the EHR did not take study %s (%d)%s; not retried until the study changes", uid, status, said)
            await asyncio.to_thread(self._mark, uid, updated, f"refused ({status}): {reason}"[:1000])
            self._retries.pop(uid, None)
            return 1
        if status == 401:
            self.backend.forget()  # revoked or expired early: the next attempt gets a new token
        if status in (401, 403, 429) or status >= 500:  # about every study, not this one: pause the round
            log.warning("the EHR answered %d to study %s: %s", status, uid, reason)
            self._pause()
            return None
        retry = self._retries.get(uid, _Retry(0, 0.0))
        retry.attempts += 1
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (retry.attempts - 1))
        retry.due = time.monotonic() + delay
        self._retries[uid] = retry
        log.warning("the EHR answered %d to study %s: %s; retrying in %.0fs", status, uid, reason, delay)
        return 0

    def _pause(self) -> None:
        self._outage += 1
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self._outage - 1))
        self._paused_until = time.monotonic() + delay
        log.warning("publishing paused for %.0fs", delay)

    def _mark(self, study_uid: str, updated: int, note: str) -> None:
        """Record what the EHR has of the study, unless it changed meanwhile (then it is published again)."""
        mark_published(self.engine, study_uid, updated, note)


def _diagnostics(response: httpx.Response) -> str:
    """The EHR's OperationOutcome diagnostics (or the start of its body), for the log."""
    try:
        body = response.json()
        issues = body.get("issue", []) if isinstance(body, dict) else []
        text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues if isinstance(i, dict))
    except ValueError:
        text = ""
    return (text or response.text[:200] or f"HTTP {response.status_code}")[:500].rstrip(".")


def start_publisher(config: Config, index: Index) -> Publisher | None:
    """The running publisher, or None when publishing is off (see the module docstring)."""
    if not publishing_enabled(config):
        return None
    publisher = Publisher(config, index)
    publisher.start()
    return publisher
