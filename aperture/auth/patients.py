"""Which identifiers the EHR knows a patient by, read by the imaging server itself (plain SMART EHRs).

An EHR that sends no `authorization_details` still names the token's patient (`patient`, a logical
id in its FHIR server), but not its MRN. The imaging server then reads `Patient/{id}` at the EHR
with its own Backend Services token (scope `system/Patient.r`, `aperture.auth.backend`) and binds
the token to that Patient's identifiers, issuer-qualified as always. The answer is cached per
Patient id for `auth.patient_cache_seconds` (identifiers rarely change; the token's own answer is
still introspected every few seconds, so revocation is unaffected), concurrent lookups of one id
share one request, and it never widens a token: it only tells which DICOM identities the token's
own patient has.

Fail closed: a Patient the EHR does not have (404, 410) has no identifiers (the token reaches no
study); an EHR that cannot answer is `AuthorizationServerUnavailable` (503), never a guess from the
logical id. Not configured (no backend credentials): `PatientDirectory` is not made and such
tokens reach nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx

from aperture.auth.backend import BackendClient
from aperture.auth.cache import ExpiringLRU
from aperture.config import AuthConfig
from aperture.errors import AuthorizationServerUnavailable

log = logging.getLogger("aperture.auth")

SCOPE = "system/Patient.r"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 id datatype
Identifiers = tuple[tuple[str, str], ...]  # (system, value)


class PatientDirectory:
    """One per server worker; `aclose()` at shutdown."""

    def __init__(self, config: AuthConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.backend = BackendClient(config, SCOPE)
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds), follow_redirects=False
        )
        self._known: ExpiringLRU[Identifiers] = ExpiringLRU(config.cache_entries)
        self._in_flight: dict[str, asyncio.Future[Identifiers]] = {}

    async def aclose(self) -> None:
        await self.backend.aclose()
        await self._client.aclose()

    async def identifiers(self, patient_id: str) -> Identifiers:
        """The (system, value) identifiers of the EHR's Patient `patient_id`; () if it has none or none exists."""
        if not _FHIR_ID.fullmatch(patient_id):
            return ()
        known = self._known.get(patient_id)
        if known is not None:
            return known
        pending = self._in_flight.get(patient_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Identifiers] = asyncio.get_running_loop().create_future()
        self._in_flight[patient_id] = future
        try:
            found = await self._read(patient_id)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, AuthorizationServerUnavailable) else self._unavailable())
            raise
        else:
            self._known.put(patient_id, found, self.config.patient_cache_seconds)
            future.set_result(found)
            return found
        finally:
            del self._in_flight[patient_id]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning when no one else waited

    def _unavailable(self) -> AuthorizationServerUnavailable:
        return AuthorizationServerUnavailable(retry_after=self.config.retry_after_seconds)

    async def _read(self, patient_id: str) -> Identifiers:
        url = f"{self.config.ehr_issuer}/Patient/{patient_id}"
        for attempt in (1, 2):
            try:
                token = await self.backend.token()
            except AuthorizationServerUnavailable as exc:
                log.warning("reading Patient/%s at the EHR: no Backend Services token: %s", patient_id, exc.message)
                raise self._unavailable() from None
            try:
                response = await self._client.get(
                    url, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "reading Patient/%s at %s failed: %s", patient_id, self.config.ehr_issuer, type(exc).__name__
                )
                raise self._unavailable() from None
            if response.status_code == 401 and attempt == 1:
                self.backend.forget()  # revoked or expired early: one new token, then give up
                continue
            break
        if response.status_code in (404, 410):
            return ()
        if response.status_code != 200:
            log.warning(
                "reading Patient/%s at %s answered %d", patient_id, self.config.ehr_issuer, response.status_code
            )
            raise self._unavailable()
        try:
            patient = response.json()
        except ValueError:
            patient = None
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient" or patient.get("id") != patient_id:
            log.warning("reading Patient/%s at %s: the answer is not that Patient", patient_id, self.config.ehr_issuer)
            raise self._unavailable()
        found = []
        for identifier in patient.get("identifier") or []:
            if isinstance(identifier, dict):
                system, value = identifier.get("system"), identifier.get("value")
                if isinstance(system, str) and isinstance(value, str) and system and value:
                    found.append((system, value))
        return tuple(found)
