"""One access decision (`AccessRecord`) and the FHIR R4 AuditEvent it becomes, following IHE BALP.

IHE ITI Basic Audit Log Patterns (BALP, FHIR R4) gives one profile per interaction; the digest in
shared/specs/ihe-profiles.md §10 lists the fixed codes this module writes:

- read → `IHE.BasicAudit.PatientRead` (action R, subtype `restful-interaction#read` plus
  `DCM#110104` DICOM Instances Transferred; client `DCM#110152` Destination Role ID, server
  `DCM#110153` Source Role ID, user `v3-ParticipationType#IRCP`), `IHE.BasicAudit.Read` when no
  patient is known;
- search → `PatientQuery` / `Query` (action E, `search-type` plus `DCM#110112` Query), where the
  roles flip: the client is `DCM#110153` Source, the server `DCM#110152` Destination, and the query
  string, base64, is the `object-role#24` Query entity;
- write → `PatientCreate` / `Create` (action C, `create` plus `DCM#110104`; client Source, server
  Destination, user `AUT` author);
- delete → `PatientDelete` / `Delete` (action D, subtype exactly `delete`; client `DCM#110150`
  Application, server `provenance-participant-type#custodian`, user `AUT`), as in the BALP FSH.

Every event has `type` `audit-event-type#rest`, the client agent (`who.identifier` = the OAuth
client_id, `network` = its IP address, type 2), the server agent (`network` = its URI, type 5),
the user agent (`requestor` true) when the token names one (fhirUser as a reference, else `sub` as
an identifier), the source (`security-source-type#4` Application Server), the patient entity
(`audit-entity-type#1` Person, `object-role#1` Patient, `what` = Reference(Patient)) and one entity
per study (`#2` System Object, `object-role#3` Report, the role DICOM PS3.15 A.5 gives a Study
participant object and one BALP's RestObjectRoles allows; `what.identifier` = `urn:dicom:uid` /
`urn:oid:<StudyInstanceUID>`). A deny is the same pattern with outcome `4` (minor failure, FHIR R4
AuditEvent.outcome) and the HTTP status in `outcomeDesc`; it claims no profile, since each BALP
profile fixes outcome 0. A read that sent the study on to another node (the app's *Send to…*,
`/transmit`) has one more agent, that node: `DCM#110152` Destination Role ID, `who.display` the
operator's name for it, `network` its address (a STOW-RS base as a URI, type 5, without any user
information; a C-STORE peer's host, type 2 or 1, with its AE title as `altId`).

A record holds no credential: the token is reduced to a hash by the caller and that hash serves
only to aggregate reads (`recorder`); it is not part of the AuditEvent. Query strings are kept in
the BALP query entity with every credential parameter removed.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = "http://hl7.org/fhir/restful-interaction"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
NETWORK_IP = "2"  # AuditEvent.agent.network.type (http://hl7.org/fhir/network-type): IP address
NETWORK_URI = "5"  # URI
NETWORK_MACHINE = "1"  # machine name
# Aperture's own extension (a logical name, no published StructureDefinition): how many accesses one
# aggregated event stands for (see recorder)
COUNT_EXTENSION = "urn:aperture:fhir:extension:audit-access-count"

# query parameters that carry credentials; never written to a record (RFC 6749, RFC 7636, RFC 7523)
CREDENTIAL_PARAMETERS = frozenset(
    {"access_token", "refresh_token", "id_token", "token", "code", "code_verifier", "client_secret",
     "client_assertion", "password", "state", "assertion"}
)  # fmt: skip


class Action(enum.StrEnum):
    READ = "read"
    SEARCH = "search"
    WRITE = "write"
    DELETE = "delete"


class Outcome(enum.StrEnum):
    PERMIT = "permit"
    DENY = "deny"


_SOURCE = (DCM, "110153", "Source Role ID")
_DESTINATION = (DCM, "110152", "Destination Role ID")
_APPLICATION = (DCM, "110150", "Application")
_CUSTODIAN = ("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "custodian", "Custodian")
_RECIPIENT = (PARTICIPATION, "IRCP", "information recipient")
_AUTHOR = (PARTICIPATION, "AUT", "author (originator)")


@dataclass(frozen=True)
class _Pattern:
    profile: str
    action: str  # AuditEvent.action (R4 audit-event-action)
    subtype: tuple[tuple[str, str, str], ...]
    client: tuple[str, str, str]  # agent[client].type
    server: tuple[str, str, str]  # agent[server].type
    user: tuple[str, str, str]  # agent[user].type


_PATTERNS = {
    Action.READ: _Pattern(
        "Read", "R", ((REST, "read", "read"), (DCM, "110104", "DICOM Instances Transferred")),
        _DESTINATION, _SOURCE, _RECIPIENT,
    ),
    # BALP Query: "the query parameters are flowing from the client to the server", so the roles flip
    Action.SEARCH: _Pattern(
        "Query", "E", ((REST, "search-type", "search type"), (DCM, "110112", "Query")),
        _SOURCE, _DESTINATION, _RECIPIENT,
    ),
    Action.WRITE: _Pattern(
        "Create", "C", ((REST, "create", "create"), (DCM, "110104", "DICOM Instances Transferred")),
        _SOURCE, _DESTINATION, _AUTHOR,
    ),
    # BALP Delete: subtype exactly `delete`, the client an Application, the server the Custodian
    Action.DELETE: _Pattern("Delete", "D", ((REST, "delete", "delete"),), _APPLICATION, _CUSTODIAN, _AUTHOR),
}  # fmt: skip


@dataclass(frozen=True)
class Destination:
    """Where a transmit sent a study: the operator's name for the node, its network address and type
    (`NETWORK_URI`, `NETWORK_IP` or `NETWORK_MACHINE`), and a C-STORE peer's AE title."""

    name: str
    address: str
    network_type: str
    ae_title: str | None = None


@dataclass(frozen=True)
class AccessRecord:
    """One access decision as the server made it, before it becomes an AuditEvent.

    `patient` is a FHIR reference (`Patient/123`), `user` the token's fhirUser reference or else its
    `sub`, `token_hash` a digest of the token (never the token) used only to aggregate reads.
    `count` and `last` are set by aggregation: the record then stands for `count` accesses from
    `time` to `last`.
    """

    action: Action
    outcome: Outcome
    status: int
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    client_id: str | None = None
    user: str | None = None
    patient: str | None = None
    studies: tuple[str, ...] = ()
    source_address: str | None = None
    token_hash: str | None = None
    query: str | None = None
    count: int = 1
    last: datetime | None = None
    destination: Destination | None = None  # the node a transmit sent the study to

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("AccessRecord.time needs a time zone (UTC): a naive time is ambiguous in an audit trail.")

    @property
    def aggregatable(self) -> bool:
        """Only permitted reads aggregate (by token, or by address where there is none: `--auth none`).

        A deny always stays an event of its own, and so does a transmit (each names where it sent the study).
        """
        return self.action is Action.READ and self.outcome is Outcome.PERMIT and self.destination is None


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_digest(token: str) -> str:
    """What a record keeps of a bearer token: a SHA-256 digest, enough to aggregate, useless to replay."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def without_credentials(query: str) -> str:
    """`query` with every credential parameter removed (names compared case-insensitively)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, value) for name, value in pairs if name.lower() not in CREDENTIAL_PARAMETERS])


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _who(reference_or_id: str) -> dict[str, Any]:
    """A `who` for a user: a FHIR reference (fhirUser) as a reference, anything else (sub) as an identifier."""
    head, _, tail = reference_or_id.partition("/")
    if tail and head[:1].isupper() and head.isalpha():
        return {"reference": reference_or_id}
    return {"identifier": {"value": reference_or_id}}


def audit_event(record: AccessRecord, server: str, event_id: str | None = None) -> dict[str, Any]:
    """The BALP AuditEvent (FHIR R4 JSON) for `record`; `server` is the server's base URI.

    A permit claims its BALP profile in `meta.profile`. A deny follows the same pattern with outcome
    4 but claims no profile: every BALP profile fixes `outcome` to 0 ("failures are recorded
    differently").
    """
    pattern = _PATTERNS[record.action]
    client: dict[str, Any] = {
        "type": {"coding": [_coding(*pattern.client)]},
        "who": {"identifier": {"value": record.client_id}} if record.client_id else {"display": "unidentified client"},
        "requestor": record.user is None,
    }
    if record.source_address:
        client["network"] = {"address": record.source_address, "type": NETWORK_IP}
    agents = [
        client,
        {
            "type": {"coding": [_coding(*pattern.server)]},
            "who": {"display": server},
            "requestor": False,
            "network": {"address": server, "type": NETWORK_URI},
        },
    ]
    if record.user:
        agents.append({"type": {"coding": [_coding(*pattern.user)]}, "who": _who(record.user), "requestor": True})
    if record.destination is not None:
        node = record.destination
        agent: dict[str, Any] = {
            "type": {"coding": [_coding(*_DESTINATION)]},
            "who": {"display": node.name},
            "requestor": False,
            "network": {"address": node.address, "type": node.network_type},
        }
        if node.ae_title:
            agent["altId"] = node.ae_title
        agents.append(agent)
    entities: list[dict[str, Any]] = []
    if record.patient:
        entities.append(
            {
                "what": {"reference": record.patient},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    for study in record.studies:
        entities.append(
            {
                "what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study}"}},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "3", "Report"),
            }
        )
    if record.action is Action.SEARCH:
        text = without_credentials(record.query or "")
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            }
        )
    event: dict[str, Any] = {"resourceType": "AuditEvent"}
    if event_id is not None:
        event["id"] = event_id
    if record.outcome is Outcome.PERMIT:
        event["meta"] = {"profile": [BALP + ("Patient" if record.patient else "") + pattern.profile]}
    if record.count != 1:
        event["extension"] = [{"url": COUNT_EXTENSION, "valueInteger": record.count}]
    event.update(
        {
            "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
            "subtype": [_coding(*code) for code in pattern.subtype],
            "action": pattern.action,
            "period": {"start": instant(record.time), "end": instant(record.last or record.time)},
            "recorded": instant(record.time),
            "outcome": "0" if record.outcome is Outcome.PERMIT else "4",
            "outcomeDesc": f"{record.outcome.value}: HTTP {record.status}",
            "agent": agents,
            "source": {"observer": {"display": server}, "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
            "entity": entities,
        }
    )
    return event
