"""What each route needs, and the one call that turns a request into an AccessScope.

The route tables declare, per method, `reads`, `searches`, `writes`, `deletes` or `audits` around
each endpoint (`aperture/dicomweb/routes.py`, `aperture/fhir/routes.py`, `aperture/server/app.py`),
so a reader of the table sees what every URL requires. `authorize` takes the action the route
declared, asks the configured policy and returns the scope every store read requires; a route
that declares nothing is refused (fail closed).

- `--auth none`: everything is allowed for the declared action (the server says so loudly at startup).
- `--auth smart`: the bearer token is introspected at the EHR (`aperture.auth.introspection`,
  cached), its scopes must cover the action, and `aperture.auth.policy.for_token` turns the
  EHR's answer into the patients and studies it reaches (docs/authorization.md).

The declared wrapper also finishes every answer the same way: under `--auth smart` a permitted
answer is `Cache-Control: private` and varies with `Authorization`, and every decision, permit or
deny, is handed to the audit recorder (off the request's path, `aperture.audit.recorder`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from aperture.audit.events import AccessRecord, Outcome
from aperture.audit.events import Action as AuditAction
from aperture.auth import policy
from aperture.auth.cache import token_key
from aperture.auth.policy import Decision
from aperture.auth.tokens import TokenFacts
from aperture.errors import ApertureError, InsufficientScope, InvalidToken
from aperture.store.scope import AccessScope

if TYPE_CHECKING:
    from aperture.audit.recorder import AuditRecorder
    from aperture.auth.introspection import Introspector
    from aperture.auth.patients import PatientDirectory

log = logging.getLogger("aperture.auth")

Endpoint = Callable[[Request], Awaitable[Response]]
ROUTE_ACTION = "aperture.action"  # where the declared action travels in the ASGI scope
DECISION = "aperture.decision"  # the policy's Decision, once authorize ran
TOKEN = "aperture.token"  # (token hash, TokenFacts) of a verified token: never the token itself
AUDIT_PATIENT = "aperture.audit.patient"  # a handler may name the patient a request was about
AUDIT_STUDY = "aperture.audit.study"  # and the study, when it is not the `study` path parameter
AUDIT_DESTINATION = "aperture.audit.destination"  # the audit.events.Destination a transmit sent to
AUDIT_STUDIES = "aperture.audit.studies"  # or several (a STOW-RS stores into any number of studies)
FORM_TOKEN = "aperture.form_token"  # an RFC 6750 §2.2 form-body token a POST route read (aperture.server.media)


class Action(StrEnum):
    READ_IMAGING = "read"
    WRITE_IMAGING = "write"
    DELETE_IMAGING = "delete"
    READ_AUDIT = "audit"


READ_IMAGING = Action.READ_IMAGING
WRITE_IMAGING = Action.WRITE_IMAGING
DELETE_IMAGING = Action.DELETE_IMAGING
READ_AUDIT = Action.READ_AUDIT

_AUDIT_ACTION = {
    Action.READ_IMAGING: AuditAction.READ,
    Action.WRITE_IMAGING: AuditAction.WRITE,
    Action.DELETE_IMAGING: AuditAction.DELETE,
    Action.READ_AUDIT: AuditAction.SEARCH,
}
# RFC 6750 §2.1: b64token
_TOKEN68 = r"[A-Za-z0-9\-._~+/]+=*"  # RFC 6750 §2.1 b64token
_BEARER = re.compile(rf"[Bb][Ee][Aa][Rr][Ee][Rr] +({_TOKEN68})")
_FORM_TOKEN = re.compile(_TOKEN68)
_OPEN = {
    action: policy.open_decision(may_write=action is Action.WRITE_IMAGING, may_delete=action is Action.DELETE_IMAGING)
    for action in Action
}


def needs(action: Action, endpoint: Endpoint, *, search: bool = False) -> Endpoint:
    """`endpoint`, declared to need `action`; `authorize` reads the declaration from the request."""

    @functools.wraps(endpoint)
    async def declared(request: Request) -> Response:
        request.scope[ROUTE_ACTION] = action
        try:
            response = await endpoint(request)
        except ApertureError as exc:
            _audit(request, action, search, exc.status)
            raise
        except Exception:
            _audit(request, action, search, 500)
            raise
        decision: Decision | None = request.scope.get(DECISION)
        if decision is not None and decision.bound and response.status_code < 400:
            if "private" not in response.headers.get("Cache-Control", ""):  # FHIR's own "private, no-store" stays
                response.headers["Cache-Control"] = "private"
            vary = response.headers.get("Vary")
            response.headers["Vary"] = f"{vary}, Authorization" if vary else "Authorization"
        _audit(request, action, search, response.status_code)
        return response

    declared.action = action  # type: ignore[attr-defined]  # read by the route table's checks
    return declared


def reads(endpoint: Endpoint) -> Endpoint:
    return needs(READ_IMAGING, endpoint)


def searches(endpoint: Endpoint) -> Endpoint:
    """A read that is a search (QIDO-RS, FHIR search): the same scopes, audited as a query."""
    return needs(READ_IMAGING, endpoint, search=True)


def writes(endpoint: Endpoint) -> Endpoint:
    return needs(WRITE_IMAGING, endpoint)


def deletes(endpoint: Endpoint) -> Endpoint:
    return needs(DELETE_IMAGING, endpoint)


def audits(endpoint: Endpoint) -> Endpoint:
    """Reading the audit trail: `system/AuditEvent.rs` under --auth smart."""
    return needs(READ_AUDIT, endpoint, search=True)


async def authorize(request: Request, action: Action | None = None) -> AccessScope:
    """The AccessScope for this request, for the action its route declared.

    `action`, when given, must be the declared one (a handler that names another action than its
    route is a bug, answered 500 rather than guessed); with no declaration it is used alone. No
    action at all is refused.
    """
    decision = await decide(request, action)
    return decision.scope


async def decide(request: Request, action: Action | None = None) -> Decision:
    """`authorize`, keeping the whole Decision (whom the token reaches: FHIR patient binding, audit)."""
    declared: Action | None = request.scope.get(ROUTE_ACTION)
    if declared is not None and action is not None and declared != action:
        raise ApertureError(f"The route declares {declared.value} but its handler asked for {action.value}.")
    wanted = declared or action
    if wanted is None:
        raise ApertureError("This route declares no required action, so no request to it is allowed.")
    known: Decision | None = request.scope.get(DECISION)
    if known is not None:
        return known
    if request.app.state.config.server.auth == "none":
        decision = _OPEN[wanted]
    else:
        decision = await _smart(request, wanted)
    request.scope[DECISION] = decision
    return decision


def current_decision(request: Request) -> Decision | None:
    """The Decision `authorize` made for this request, if it ran."""
    return request.scope.get(DECISION)


def bearer_token(request: Request) -> str:
    """The RFC 6750 bearer token of the Authorization header (§2.1), or of a form body a route read
    (§2.2, `FORM_TOKEN`), or InvalidToken.

    A token in the query string (RFC 6750 §2.3 `access_token`) is refused: URLs end up in logs,
    histories and Referer headers, and SMART apps send the header.
    """
    if b"access_token" in request.scope["query_string"] and "access_token" in request.query_params:
        raise InvalidToken(
            "Send the access token in the Authorization header (Authorization: Bearer <token>), never in the URL."
        )
    form: str | None = request.scope.get(FORM_TOKEN)
    if form is not None:  # the route read it from a form body and made sure no header came too
        if not _FORM_TOKEN.fullmatch(form):
            raise InvalidToken("The access_token in the form is not an RFC 6750 bearer token.")
        return form
    header = request.headers.get("authorization")
    if header is None:
        raise InvalidToken("This request needs an access token from the EHR: Authorization: Bearer <token>.")
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise InvalidToken("The Authorization header must be 'Bearer <token>' (RFC 6750).")
    return match.group(1)


async def _smart(request: Request, action: Action) -> Decision:
    token = bearer_token(request)
    introspector: Introspector = request.app.state.introspector
    key = token_key(token)
    facts = introspector.cache.cached(key) or await introspector.verify(token, key)
    request.scope[TOKEN] = (key, facts)
    memo: dict[tuple[str, Action], tuple[TokenFacts, Decision]] = request.app.state.decisions
    remembered = memo.get((key, action))
    if remembered is not None and remembered[0] is facts:  # the same cached answer: the same decision
        return remembered[1]
    contexts = facts.contexts_allowing(action)
    if not contexts:
        raise InsufficientScope()
    if action is Action.READ_AUDIT:
        if "system" not in contexts:
            raise InsufficientScope("Searching the audit trail needs a system/AuditEvent.rs token (Backend Services).")
        decision = policy.audit_reader()
    else:
        config = request.app.state.config
        plain = None
        if facts.authorization_details is None and "patient" in contexts and facts.patient is not None:
            # a plain SMART EHR: the token names its patient by logical id; the identifiers come from the EHR
            directory: PatientDirectory | None = request.app.state.patients
            plain = await directory.identifiers(facts.patient) if directory is not None else None
        decision = policy.for_token(
            facts,
            contexts,
            systems=config.fhir.patient_identifier_systems,
            plain_patient=plain,
            may_write=action is Action.WRITE_IMAGING,
            may_delete=action is Action.DELETE_IMAGING,
        )
    if len(memo) >= 10_000:
        memo.clear()
    memo[(key, action)] = (facts, decision)
    return decision


def _audit(request: Request, action: Action, search: bool, status: int) -> None:
    recorder: AuditRecorder | None = getattr(request.app.state, "audit", None)
    if recorder is None:
        return
    verified: tuple[str, TokenFacts] | None = request.scope.get(TOKEN)
    key, facts = verified if verified is not None else (None, None)
    decision: Decision | None = request.scope.get(DECISION)
    patient = request.scope.get(AUDIT_PATIENT)
    if patient is None and status < 400 and decision is not None and len(decision.patients) == 1:
        # a permitted answer is of the token's one patient; a refused one may be of anyone (another
        # patient's study answers 404), so it names only the patient the request itself named
        patient = decision.patients[0].ehr_id
    params = request.path_params
    study = request.scope.get(AUDIT_STUDY) or params.get("study")
    studies: tuple[str, ...] = request.scope.get(AUDIT_STUDIES) or ((study,) if study else ())
    what = AuditAction.SEARCH if search else _AUDIT_ACTION[action]
    try:
        recorder.record(
            AccessRecord(
                action=what,
                outcome=Outcome.PERMIT if status < 400 else Outcome.DENY,
                status=status,
                time=datetime.now(UTC),
                client_id=facts.client_id if facts else None,
                user=(facts.fhir_user or facts.sub) if facts else None,
                patient=f"Patient/{patient}" if patient else None,
                studies=studies,
                source_address=request.client.host if request.client else None,
                token_hash=key,
                query=request.scope["query_string"].decode("latin-1") or None if what is AuditAction.SEARCH else None,
                destination=request.scope.get(AUDIT_DESTINATION),
            )
        )
    except Exception:  # the answer is already decided; a broken recorder must not turn it into a 500
        log.exception("audit record for %s %s could not be queued", request.method, request.url.path)
