"""`/transmit`: the app's *Send to…*, sending one study the request's authorization reaches to a configured node.

A browser cannot speak C-STORE and should not push studies across origins, and letting a signed-in
user name a host would let anyone make this server connect anywhere (SSRF). So, as dcm4chee's
exports do, the operator names the destinations (`[[transmit.destinations]]`,
`aperture.config.TransmitDestination`) and the app posts only a name. The request goes route →
policy → store like every read: the scope from `authorize` picks the instances (another patient's
study is the 404 of a missing one), and only the files the index names for that scope are sent,
as stored, by the same senders as `aperture transmit` (`aperture.clients.transmit`). It is audited
as a read of the study (BALP Read, DICOM Instances Transferred), like a download, with the node it
went to as the event's destination agent (its own event, never aggregated with other reads).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aperture.audit.events import NETWORK_IP, NETWORK_MACHINE, NETWORK_URI, Destination
from aperture.auth.requirements import AUDIT_DESTINATION, AUDIT_STUDY, READ_IMAGING, Endpoint, authorize, reads
from aperture.clients.transmit.address import Peer, parse_to
from aperture.clients.transmit.report import Report
from aperture.clients.transmit.run import Sender, transmit
from aperture.clients.transmit.senders import sender_for
from aperture.clients.transmit.source import SourceInstance
from aperture.clients.transmit.stow import read_secret, receiver_auth
from aperture.config import Config, TransmitDestination
from aperture.dicom.identifiers import uid_problem
from aperture.dicomweb.state import index_of
from aperture.dicomweb.threads import off_loop
from aperture.errors import ApertureError, BadGateway, InvalidRequest, InvalidUID, NotFound
from aperture.server.media import bounded_body
from aperture.store.blobs import BlobStore
from aperture.store.index import InstanceRef

log = logging.getLogger("aperture.server")
MAX_BODY = 4096  # {"study": UID, "destination": name} and nothing else
SHAPE = 'POST application/json {"study": "<StudyInstanceUID>", "destination": "<a name from /transmit/destinations>"}'
PRIVATE = {"Cache-Control": "private, no-store"}


class StoreSource:
    """The instances the index named for the request's scope, as the files the store holds (never copied)."""

    def __init__(self, study: str, refs: list[InstanceRef], blobs: BlobStore) -> None:
        self.study, self.refs, self.blobs = study, refs, blobs

    def studies(self) -> list[str]:
        return [self.study]

    def instances(self, study: str, spool: Path) -> Iterator[SourceInstance]:
        for ref in self.refs:
            path = self.blobs.path(ref.blob)
            yield SourceInstance(ref.study_uid, ref.series_uid, ref.sop_uid, ref.sop_class_uid, ref.transfer_syntax,
                                 path)  # fmt: skip


async def destinations(request: Request) -> Response:
    """The destinations' names and kinds (`dicomweb`, `dimse`), never their hosts or credentials; [] when none."""
    await authorize(request, READ_IMAGING)
    config: Config = request.app.state.config
    listed = [{"name": d.name, "kind": d.kind} for d in config.transmit.destinations]
    return JSONResponse(listed, headers=PRIVATE)


def sending(endpoint: Endpoint) -> Endpoint:
    """`reads(endpoint)` for a POST: it reads a study to send it elsewhere and stores nothing here."""
    declared = reads(endpoint)
    declared.actions = {"POST": READ_IMAGING}  # type: ignore[attr-defined]  # route checks
    return declared


async def _asked(request: Request) -> tuple[str, str]:
    """(study UID, destination name) from the JSON body, or a 400 saying what the body must be."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise InvalidRequest(f"Send {SHAPE}.")
    body = await bounded_body(
        request, MAX_BODY, f"The body may hold a study and a destination, at most {MAX_BODY} bytes."
    )
    try:
        document = json.loads(body)
    except ValueError:
        raise InvalidRequest(f"The body is not JSON; send {SHAPE}.") from None
    if not isinstance(document, dict) or set(document) != {"study", "destination"}:
        raise InvalidRequest(f"The body must hold exactly study and destination: {SHAPE}.")
    study, name = document["study"], document["destination"]
    if not isinstance(study, str) or not isinstance(name, str):
        raise InvalidRequest(f"study and destination must be strings: {SHAPE}.")
    problem = uid_problem(study)
    if problem:
        raise InvalidUID(f"Study Instance UID {study[:80]!r} is not valid: {problem}.")
    return study, name


def audit_destination(destination: TransmitDestination) -> Destination:
    """The audit trail's view of a destination: its name and network address, never a credential."""
    to = parse_to(destination.to)
    if isinstance(to, Peer):
        try:
            ipaddress.ip_address(to.host)
            kind = NETWORK_IP
        except ValueError:
            kind = NETWORK_MACHINE
        return Destination(destination.name, to.host, kind, ae_title=to.aet)
    parts = urlsplit(to)
    address = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # no user:password@ in a log
    return Destination(destination.name, address, NETWORK_URI)


def _sender(destination: TransmitDestination) -> Sender:
    """The destination's sender; its credentials are read now, so a rotated token file is picked up."""
    try:
        auth = receiver_auth(
            read_secret(destination.token_file, destination.token_env),
            read_secret(destination.basic_file, destination.basic_env),
        )
    except (OSError, ValueError) as exc:
        log.error("transmit destination %r: its credentials cannot be read: %s", destination.name, exc)
        raise ApertureError(
            f"The destination {destination.name!r} is misconfigured on this server (its credentials cannot be "
            "read); the server log says why."
        ) from None
    return sender_for(parse_to(destination.to), auth=auth, calling_aet=destination.calling_aet)


def _send(source: StoreSource, destination: TransmitDestination) -> Report:
    sender = _sender(destination)
    try:
        return transmit(source, sender, destination.name)
    finally:
        sender.close()


def _answer(report: Report, study: str, destination: TransmitDestination) -> dict[str, Any]:
    """The per-instance report, with the receiver's address replaced by the destination's name."""
    address = str(parse_to(destination.to))
    instances = []
    for result in report.results:
        reason = result.reason.replace(address, destination.name) if result.reason else None
        instances.append({"series": result.series, "sop_instance": result.sop_instance,
                          "sop_class": result.sop_class, "outcome": result.outcome, "status": result.status,
                          "reason": reason, "sent_as": result.sent_as, "attempts": result.attempts})  # fmt: skip
    return {"study": study, "destination": destination.name, "counts": report.counts(),
            "complete": report.complete, "instances": instances}  # fmt: skip


async def send(request: Request) -> Response:
    """Send one study to one destination; 200 with the per-instance report once the receiver answered.

    404 for a study the authorization does not reach, exactly as for one that does not exist; 400 for a
    malformed body or a destination that is not configured; 502 when the receiver acknowledged and
    refused nothing (unreachable, or failing every try).
    """
    scope = await authorize(request, READ_IMAGING)
    study, name = await _asked(request)
    request.scope[AUDIT_STUDY] = study
    refs: list[InstanceRef] = await off_loop(index_of(request).instance_refs, scope, study)
    if not refs:
        raise NotFound(f"Study {study} is not on this server.")
    config: Config = request.app.state.config
    destination = config.transmit.named(name)
    if destination is None:
        known = ", ".join(repr(d.name) for d in config.transmit.destinations) or "none is configured"
        raise InvalidRequest(
            f"There is no destination {name[:80]!r} on this server (GET /transmit/destinations: {known})."
        )
    request.scope[AUDIT_DESTINATION] = audit_destination(destination)
    report = await off_loop(_send, StoreSource(study, refs, request.app.state.blobs), destination)
    answer = _answer(report, study, destination)
    counts = answer["counts"]
    log.info("transmit to %r: %s sent, %s refused, %s failed", destination.name, counts["sent"], counts["refused"],
             counts["failed"])  # fmt: skip
    if counts["failed"] == len(report.results):
        reason = next((i["reason"] for i in answer["instances"] if i["reason"]), "no answer")
        raise BadGateway(f"{destination.name} could not be reached, so nothing was sent: {reason}")
    return JSONResponse(answer, headers=PRIVATE)
