"""SMART scopes: the v2 and v1 resource-scope grammar, and what a client may be granted.

SMART App Launch 2.2 §"Scopes for requesting clinical data": `<context>/<resource>.<permissions>`
where context is `patient`, `user` or `system`, resource a FHIR type or `*`, and permissions
either v2 letters in the order `c r u d s` (create, read, update, delete, search; `rs` yes, `sr`
no) or a v1 word (`read` = `rs`, `write` = `cud`, `*` = `cruds`). Scopes with a v2 query
(`patient/Observation.rs?category=...`) and non-resource scopes (`openid`, `launch/patient`) are
matched literally: the sandbox never widens or narrows them.

A client is granted what it asked for where its registration covers it, the part its registration
covers where that is narrower (RFC 6749 §3.3: the answer's `scope` says so), and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from aperture.ehr.errors import InvalidScope

CONTEXTS = ("patient", "user", "system")
_LETTERS = "cruds"
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(_LETTERS)}
_RESOURCE_SCOPE = re.compile(r"(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)")


@dataclass(frozen=True)
class ResourceScope:
    """A parsed resource scope; `permissions` is a subset of 'cruds' whatever the version written."""

    context: str
    resource: str
    permissions: frozenset[str]

    def covers(self, other: ResourceScope) -> bool:
        return (
            self.context == other.context
            and self.resource in ("*", other.resource)
            and other.permissions <= self.permissions
        )

    def intersect(self, other: ResourceScope) -> ResourceScope | None:
        if self.context != other.context:
            return None
        if self.resource == "*":
            resource = other.resource
        elif other.resource in ("*", self.resource):
            resource = self.resource
        else:
            return None
        permissions = self.permissions & other.permissions
        return ResourceScope(self.context, resource, permissions) if permissions else None

    def __str__(self) -> str:
        return f"{self.context}/{self.resource}.{''.join(c for c in _LETTERS if c in self.permissions)}"


def parse(scope: str) -> ResourceScope | None:
    """The resource scope `scope` names, or None for a scope matched literally (see module docstring).

    Raises InvalidScope for something shaped like a resource scope with impossible permissions,
    so that a typo such as `system/ImagingStudy.sr` is reported instead of silently dropped.
    """
    if "?" in scope:
        return None
    match = _RESOURCE_SCOPE.fullmatch(scope)
    if match is None:
        if scope.split("/", 1)[0] in CONTEXTS and "." in scope:
            raise InvalidScope(f"Scope {scope!r} is not <patient|user|system>/<Resource|*>.<permissions>.")
        return None
    context, resource, permissions = match.groups()
    if permissions in _V1:
        return ResourceScope(context, resource, _V1[permissions])
    if not re.fullmatch("c?r?u?d?s?", permissions):
        raise InvalidScope(
            f"Scope {scope!r}: SMART v2 permissions are letters from 'cruds' in that order (e.g. 'rs'), "
            "or a v1 word: read, write, *."
        )
    return ResourceScope(context, resource, frozenset(permissions))


@dataclass(frozen=True)
class ScopeGrant:
    granted: tuple[str, ...]  # what the token will carry, in the order asked
    refused: tuple[str, ...]  # requested scopes not covered in full (possibly granted in part)

    def __str__(self) -> str:
        return " ".join(self.granted)


def grant(requested: str, registered: str, contexts: Collection[str] = CONTEXTS, *, literal: bool = True) -> ScopeGrant:
    """Narrow the space-separated `requested` scopes to what `registered` covers, within `contexts`.

    Backend Services passes `contexts=("system",), literal=False`: there, `patient/` and `user/`
    scopes and the launch scopes (`openid`, `launch/patient`, ...) mean nothing and are refused even
    if registered.
    """
    registered_literal = list(dict.fromkeys(registered.split()))  # in registration order: answers are stable
    registered_resources = [s for s in (parse(s) for s in registered_literal) if s is not None]
    granted: list[str] = []
    refused: list[str] = []
    for scope in dict.fromkeys(requested.split()):
        wanted = parse(scope)
        if wanted is None:
            if literal and scope in registered_literal:
                granted.append(scope)
            else:
                refused.append(scope)
        elif wanted.context not in contexts:
            refused.append(scope)
        elif any(have.covers(wanted) for have in registered_resources):
            granted.append(scope)
        else:
            refused.append(scope)
            parts = (wanted.intersect(have) for have in registered_resources)
            granted.extend(str(part) for part in parts if part is not None)
    return ScopeGrant(tuple(dict.fromkeys(granted)), tuple(refused))


def validate(scopes: str, contexts: Collection[str] = CONTEXTS) -> None:
    """Refuse a registration whose scopes are malformed or outside `contexts`."""
    for scope in scopes.split():
        parsed = parse(scope)
        if parsed is not None and parsed.context not in contexts:
            raise InvalidScope(f"Scope {scope!r} is not allowed here: use {' or '.join(f'{c}/' for c in contexts)}.")


def contexts_allowing(scopes: str, resource: str, permission: str) -> frozenset[str]:
    """The contexts (patient, user, system) in which the space-separated `scopes` allow `permission` on `resource`.

    This is the one place a resource server decides what a token's scopes allow: v2 and v1 forms,
    wildcards, and malformed or literal scopes counting for nothing. `permission` is one letter of
    'cruds' (`r` for read, `s` for search).
    """
    allowed: set[str] = set()
    for scope in scopes.split():
        try:
            parsed = parse(scope)
        except InvalidScope:
            continue
        if parsed is not None and parsed.resource in ("*", resource) and permission in parsed.permissions:
            allowed.add(parsed.context)
    return frozenset(allowed)
