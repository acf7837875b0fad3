"""The attack suite's shared parts: the route list (read from the route tables), targets, and the leak check.

Every route the imaging server declares (`aperture/dicomweb/routes.py`, `aperture/fhir/routes.py`,
`aperture/server/app.py`) is turned into concrete requests by `attack_requests`, with the URL
placeholders filled from a `Target` (a study whose UIDs were learned from its own patient's
metadata). A route added to a table is attacked with no change here; a route with a placeholder
this module cannot fill, or a route that declares no action and is not in `PUBLIC`, fails
`test_route_coverage.py`.

`assert_no_leak` is the one leak check every denied answer goes through: none of the target's
protected values (its study, series and SOP Instance UIDs, the patient's name and MRN, a run of its
pixel bytes) may appear in the body or in any header. A UID the request itself carried is not
a leak when echoed (the caller sent it); everything else is.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.routing import BaseRoute, Mount, Route

from aperture.auth.requirements import Action
from aperture.cli.demo_receiver import RECEIVER_NAME
from aperture.fhir.imagingstudy import ENDPOINT_ID

ORIGIN = "https://attacker.example"  # every attack is made as a browser app of another origin would
# Routes anyone may call without a token: what a client needs before it has one.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/fhir/metadata"),
    ("GET", "/fhir/.well-known/smart-configuration"),
    *((method, "/fhir/{rest:path}") for method in ("GET", "DELETE", "OPTIONS", "PATCH", "POST", "PUT")),
    ("GET", "/apps/sample/"),
    ("GET", "/apps/sample/{name}"),
    ("GET", "/app/"),
    ("GET", "/app/{name}"),
    ("GET", "/IHEInvokeImageDisplay"),
    ("GET", "/viewer"),
    ("GET", "/viewer/{path:path}"),
}  # /fhir/{rest:path}: the OperationOutcome advice for unknown FHIR paths (404 / 405, no data);
#    /apps/sample/, /app/: the apps' static files and their config.json (an allow-list, no patient data);
#    /IHEInvokeImageDisplay: checks the request and redirects to /app/ (no data); /viewer/: OHIF's files
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@dataclass(frozen=True)
class Declared:
    """One (method, path) of the route tables and the action it declares (None: public)."""

    method: str
    path: str  # the full template, e.g. /dicom-web/studies/{study}/series/{series}
    action: Action | None


def declared_routes() -> list[Declared]:
    """Every (method, path template) the imaging server serves, from its own route tables."""
    from aperture.config import Config
    from aperture.server.app import create_app

    app = create_app(Config())
    found: list[Declared] = []

    def walk(routes: list[BaseRoute], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(list(route.routes), prefix + route.path)
            elif isinstance(route, Route):
                actions = getattr(route.endpoint, "actions", None)
                for method in sorted(route.methods or ()):
                    if method == "HEAD":
                        continue  # answered by the GET endpoint; attacked with the GET cases
                    if actions is not None:
                        action = actions.get(method)
                    else:
                        action = getattr(route.endpoint, "action", None)
                    found.append(Declared(method, prefix + route.path, action))

    walk(list(app.routes), "")
    return found


@dataclass
class Target:
    """A study someone else must never learn about, with what would identify it in an answer."""

    patient: str  # the EHR's id of its patient
    study: str
    series: list[str]
    instances: list[tuple[str, str]]  # (series UID, SOP Instance UID)
    name_parts: list[str]  # family and given names as stored
    mrn: str
    pixels: bytes  # a run of the first frame's bytes
    bulkdata_path: str  # the bulk data path of the pixel data ("7FE00010")
    extra: list[str] = field(default_factory=list)  # other values to keep out (accession number, description)
    identity_secret: bool = True  # False for a withheld study: the token reaches its patient, just not it
    mrn_secret: bool = True  # False when the MRN value is also the attacker's own (same value, other issuer)
    study_is_own: bool = False  # True: `study` is one the attacker reaches, the series and instances are not

    def under(self, study: str) -> Target:
        """These series and instances, asked for under `study` (a study the attacker may read)."""
        return replace(self, study=study, study_is_own=True)

    @property
    def series_uid(self) -> str:
        return self.instances[0][0]

    @property
    def sop_uid(self) -> str:
        return self.instances[0][1]

    def uids(self) -> list[str]:
        """The UIDs to keep out of answers and to replace by made-up ones (not an attacker's own study)."""
        return [*([] if self.study_is_own else [self.study]), *self.series, *(sop for _, sop in self.instances)]

    def protected(self) -> list[str]:
        identity = [*self.name_parts, *([self.mrn] if self.mrn_secret else [])] if self.identity_secret else []
        return [*self.uids(), *identity, *self.extra]


def learn(http: httpx.Client, dicomweb: str, token: str, study: str, patient: str, *, withheld: bool = False) -> Target:
    """The target's UIDs, names and pixels, as its own patient's token reads them (never guessed)."""
    bearer = {"Authorization": f"Bearer {token}"}
    metadata = http.get(f"{dicomweb}/studies/{study}/metadata", headers=bearer)
    assert metadata.status_code == 200, metadata.text
    documents = metadata.json()
    instances = [(d["0020000E"]["Value"][0], d["00080018"]["Value"][0]) for d in documents]
    first = documents[0]
    name = first["00100010"]["Value"][0]["Alphabetic"]
    mrn = first["00100020"]["Value"][0]
    bulk = first["7FE00010"]["BulkDataURI"]
    series, sop = instances[0]
    frame = http.get(
        f"{dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/1",
        headers={**bearer, "Accept": FRAME_ACCEPT},
    )
    assert frame.status_code == 200, frame.text
    pixels = distinctive_run(frame.content)
    extra = [first.get(tag, {}).get("Value", [""])[0] for tag in ("00080050", "00081030")]  # accession, description
    return Target(
        patient=patient,
        study=study,
        series=sorted({s for s, _ in instances}),
        instances=instances,
        name_parts=[part for part in re.split(r"[\^ ]", name) if len(part) >= 3],
        mrn=mrn,
        pixels=pixels,
        bulkdata_path=bulk.rsplit("/bulkdata/", 1)[1],
        extra=[value for value in extra if len(value) >= 6],
        identity_secret=not withheld,
    )


def distinctive_run(body: bytes, length: int = 24) -> bytes:
    """A run of `length` bytes with many distinct values (so it cannot turn up in an answer by chance)."""
    for start in range(len(body) // 2, len(body) - length, 7):
        run = body[start : start + length]
        if len(set(run)) >= 12:
            return run
    for start in range(0, len(body) - length, 7):
        run = body[start : start + length]
        if len(set(run)) >= 12:
            return run
    raise AssertionError("the frame has no distinctive run of bytes to look for")


def fake_uid(uid: str, salt: str = "") -> str:
    """A made-up UID of the same length as `uid` (so Content-Length compares), on no server."""
    rng = random.Random(uid + salt)
    digits = len(uid) - len("2.25.9")
    return "2.25.9" + "".join(rng.choice("0123456789") for _ in range(digits))


@dataclass(frozen=True)
class Attack:
    """One concrete request against one declared route."""

    declared: Declared
    method: str
    url: str  # path and query, relative to the server's root
    headers: dict[str, str]
    kind: str  # "retrieve" (a study-level or deeper URL), "search" (no study in the path), "fhir-read", ...
    body: bytes | None = None  # a JSON body (POST /transmit names its study there)

    def describe(self) -> str:
        accept = self.headers.get("Accept")
        return f"{self.method} {self.url}" + (f" (Accept: {accept})" if accept else "")


def _fill(path: str, target: Target) -> str:
    values = {
        "study": target.study,
        "series": target.series_uid,
        "instance": target.sop_uid,
        "frames": "1",
        "path:path": target.bulkdata_path,
        "id": target.study,
    }

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no attack value for the placeholder {{{name}}} of {path}: add one to tests/security")
        return values[name]

    return re.sub(r"\{([^}]+)\}", one, path)


def attack_requests(target: Target, *, reaching_patient: str) -> Iterator[Attack]:
    """Requests at every declared route that name `target` (its UIDs in the path or the query).

    `reaching_patient` is a patient the attacking token does reach (its FHIR search needs one).
    """
    for declared in declared_routes():
        if declared.action is None:
            continue
        path = declared.path
        if path == "/fhir/Endpoint/{id}":
            yield Attack(declared, "GET", f"/fhir/Endpoint/{ENDPOINT_ID}", {}, "endpoint")
            continue
        if path == "/fhir/AuditEvent":
            yield Attack(declared, "GET", f"/fhir/AuditEvent?patient={target.patient}", {}, "audit")
            continue
        if path == "/fhir/ImagingStudy":
            yield Attack(
                declared,
                "GET",
                f"/fhir/ImagingStudy?patient={reaching_patient}&identifier=urn:oid:{target.study}",
                {},
                "fhir-search",
            )
            continue
        if path == "/wado":
            query = f"requestType=WADO&studyUID={target.study}&seriesUID={target.series_uid}&objectUID={target.sop_uid}"
            yield Attack(declared, "GET", f"/wado?{query}", {}, "retrieve")
            yield Attack(declared, "GET", f"/wado?{query}&contentType=application/dicom", {}, "retrieve")
            continue
        if path == "/transmit/destinations":  # names and kinds of the operator's destinations, no patient data
            yield Attack(declared, "GET", path, {}, "endpoint")
            continue
        if path == "/transmit":  # the target's study, to the demo's real destination: must be the 404 of a missing one
            body = json.dumps({"study": target.study, "destination": RECEIVER_NAME}).encode()
            yield Attack(declared, "POST", path, {"Content-Type": "application/json"}, "transmit", body)
            continue
        url = _fill(path, target)
        if path.startswith("/media/"):  # PDI zips; POST is a read (its token may come in a form body)
            yield Attack(declared, declared.method, url, {}, "retrieve" if "{study}" in path else "media-all")
            continue
        if declared.method == "POST":
            yield Attack(declared, "POST", url, {}, "stow")
            continue
        if declared.method == "DELETE":
            yield Attack(declared, "DELETE", url, {}, "delete")
            continue
        if path == "/fhir/ImagingStudy/{id}":
            yield Attack(declared, "GET", url, {}, "retrieve")
            continue
        if "{study}" not in path:  # QIDO at the top of a level: the target named in the query
            study = f"StudyInstanceUID={target.study}"
            query = {
                "/dicom-web/studies": study,
                "/dicom-web/series": f"{study}&SeriesInstanceUID={target.series_uid}",
                "/dicom-web/instances": f"{study}&SOPInstanceUID={target.sop_uid}",
            }
            if path not in query:
                raise KeyError(f"no attack query for {path}: add one to tests/security")
            yield Attack(declared, "GET", f"{url}?{query[path]}", {}, "search")
            continue
        yield Attack(declared, "GET", url, {}, "retrieve")
        yield Attack(declared, "HEAD", url, {}, "retrieve")
        if path.endswith(("/{study}", "/{series}")):  # a whole study or series: also as a ZIP
            yield Attack(declared, "GET", url + "?accept=application/zip", {}, "retrieve")
            yield Attack(declared, "GET", url, {"Accept": "application/zip"}, "retrieve")
        if path.endswith("/frames/{frames}"):
            yield Attack(declared, "GET", url, {"Accept": FRAME_ACCEPT}, "retrieve")


def send(http: httpx.Client, root: str, attack: Attack, token: str | None, *, content: bytes | None = None,
         content_type: str | None = None) -> httpx.Response:  # fmt: skip
    headers = {"Origin": ORIGIN, **attack.headers}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    return http.request(attack.method, root + attack.url, headers=headers, content=content or attack.body)


def assert_no_leak(response: httpx.Response, target: Target, *, asked: str = "") -> None:
    """None of `target`'s protected values in the body or any header (a value the request carried excepted)."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    body = response.content
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    echoed = unquote(str(response.request.url)) + asked
    for value in target.protected():
        if value in echoed:  # the caller sent it: echoing it tells them nothing
            continue
        assert value.encode() not in body, f"{where}: the body holds {value!r}"
        assert value not in headers, f"{where}: a header holds {value!r}"
    assert target.pixels not in body, f"{where}: the body holds the target's pixel bytes"


def assert_cors(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN), f"{where}: no CORS headers"


def assert_bearer_error(response: httpx.Response, status: int, error: str, target: Target) -> None:
    """A documented token refusal: status, `WWW-Authenticate: Bearer error=...`, CORS, nothing leaked."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer") and f'error="{error}"' in challenge, (
        f"{where}: WWW-Authenticate {challenge!r}"
    )
    assert_cors(response)
    assert_no_leak(response, target)


def made_up(attack: Attack, target: Target) -> tuple[Attack, dict[str, str]]:
    """`attack` with each of the target's UIDs replaced by a made-up one of the same length."""
    replaced = {uid: fake_uid(uid) for uid in target.uids()}
    url = attack.url
    body = attack.body
    for uid, fake in replaced.items():
        url = url.replace(uid, fake)
        body = body.replace(uid.encode(), fake.encode()) if body is not None else None
    return Attack(attack.declared, attack.method, url, attack.headers, attack.kind, body), replaced


def assert_as_if_missing(real: httpx.Response, missing: httpx.Response, replaced: dict[str, str]) -> None:
    """The answer for a study the token may not reach is the answer for a study that does not exist.

    Same status, same body once the made-up UIDs are swapped back, same headers except Date.
    """
    where = f"{real.request.method} {real.request.url}"
    assert real.status_code == missing.status_code, (
        f"{where}: {real.status_code} {real.text[:200]!r}; made up: {missing.status_code} {missing.text[:200]!r}"
    )
    body = missing.content
    for uid, fake in replaced.items():
        body = body.replace(fake.encode(), uid.encode())
    assert real.content == body, (
        f"{where}: the body differs from a made-up study's: {real.text[:300]!r} vs {body[:300]!r}"
    )
    mine = {k: v for k, v in real.headers.items() if k != "date"}
    theirs = {k: v for k, v in missing.headers.items() if k != "date"}
    assert mine == theirs, f"{where}: the headers differ from a made-up study's: {mine} vs {theirs}"


def json_of(response: httpx.Response) -> Any:
    return json.loads(response.content) if response.content else None


def attack_every_route(
    http: httpx.Client, root: str, token: str, target: Target, *, reaching_patient: str | None, deletes: bool = False
) -> int:
    """Every declared route, aimed at `target` with a read token that reaches `reaching_patient` but not it.

    What each answer must be (docs/authorization.md): a retrieval or a search inside the study is the
    404 of a study that does not exist (compared with a made-up UID); a search naming it is the
    empty answer of a made-up UID; writing, deleting and the audit trail are 403 `insufficient_scope`
    for a read token, except DELETE where deletion is disabled (`deletes` False): 405. Every answer carries
    CORS headers and none of the target's protected values. A token reaching no patient at all
    (`reaching_patient` None) searches FHIR for the target's patient: 403. Returns how many requests were made.
    Failures are collected, so one run names every route that gave something away.
    """
    problems: list[str] = []
    count = 0
    for attack in attack_requests(target, reaching_patient=reaching_patient or target.patient):
        if target.study_is_own and not any(uid in attack.url + (attack.body or b"").decode() for uid in target.uids()):
            continue  # the attacker's own study alone: theirs to read
        count += 1
        response = send(http, root, attack, token)
        try:
            assert_cors(response)
            assert_no_leak(response, target, asked=(attack.body or b"").decode())
            if attack.kind in ("retrieve", "search", "transmit"):
                missing_attack, replaced = made_up(attack, target)
                missing = send(http, root, missing_attack, token)
                assert_as_if_missing(response, missing, replaced)
                if attack.kind in ("retrieve", "transmit"):
                    assert response.status_code == 404, f"{attack.describe()}: {response.status_code}"
                else:
                    assert response.status_code == 200 and json_of(response) == [], attack.describe()
            elif attack.kind == "fhir-search" and reaching_patient is None:
                assert response.status_code == 403, f"{attack.describe()}: {response.status_code} {response.text[:200]}"
            elif attack.kind == "fhir-search":
                assert response.status_code == 200, f"{attack.describe()}: {response.status_code} {response.text[:200]}"
                bundle = response.json()
                assert bundle["total"] == 0 and not bundle.get("entry"), f"{attack.describe()}: {bundle}"
            elif attack.kind == "media-all":  # the token's own studies, or none: never the target's (no leak above)
                assert response.status_code in (200, 404), f"{attack.describe()}: {response.status_code}"
            elif attack.kind == "endpoint":
                assert response.status_code == 200, f"{attack.describe()}: {response.status_code}"  # names no patient
            elif attack.kind in ("audit", "stow"):
                assert_bearer_error(response, 403, "insufficient_scope", target)
            elif attack.kind == "delete" and deletes:  # a read token may not delete
                assert_bearer_error(response, 403, "insufficient_scope", target)
            elif attack.kind == "delete":
                assert response.status_code == 405, f"{attack.describe()}: {response.status_code}"
            else:
                raise AssertionError(f"no expectation for {attack.kind}")
        except AssertionError as exc:
            problems.append(f"{attack.describe()}: {exc}")
    assert not problems, "\n".join(problems)
    return count


def refused_on_every_route(
    http: httpx.Client, root: str, token: str | None, target: Target, *, status: int, error: str | None,
    deletes: bool, headers: dict[str, str] | None = None,
) -> int:  # fmt: skip
    """Every declared route answers `status` (with `WWW-Authenticate: Bearer error="<error>"` when
    `error` is given), CORS headers and nothing of `target`. DELETE where deletion is disabled is 405,
    decided before the token is looked at (it reveals nothing either way)."""
    problems: list[str] = []
    count = 0
    for attack in attack_requests(target, reaching_patient=target.patient):
        if headers:
            attack = Attack(attack.declared, attack.method, attack.url, {**attack.headers, **headers}, attack.kind,
                            attack.body)  # fmt: skip
        count += 1
        response = send(http, root, attack, token)
        try:
            if attack.kind == "delete" and not deletes:
                assert response.status_code == 405, f"{response.status_code} {response.text[:200]}"
                assert_cors(response)
                assert_no_leak(response, target)
            elif error is None:
                assert response.status_code == status, f"{response.status_code} {response.text[:200]}"
                assert_cors(response)
                assert_no_leak(response, target)
            else:
                assert_bearer_error(response, status, error, target)
        except AssertionError as exc:
            problems.append(f"{attack.describe()}: {exc}")
    assert not problems, "\n".join(problems)
    return count
