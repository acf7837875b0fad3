"""Running behind a reverse proxy: believe `X-Forwarded-*` headers, but only from trusted proxies.

Behind nginx or a load balancer, the connection Aperture sees comes from the proxy, over plain
HTTP, to an internal host, with any path prefix (`/pacs`) already stripped. URLs Aperture writes
(RetrieveURL, BulkDataURI) must instead name what the client used, and the access log should name
the client. The proxy says both in `X-Forwarded-Proto`, `-Host`, `-Prefix` and `-For`; this layer
rewrites the ASGI scope from them (scheme, `host` header, `root_path` and `path`, `client`).
Anyone can send those headers, so they are read only when the direct peer is in
`server.trusted_proxies`; values that are not well formed are ignored rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)*/?")  # also matches "", which path_prefix maps to ""
_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix", b"x-forwarded-for")


class ForwardedHeaders:
    """Rewrites the scope of requests whose direct peer is a trusted proxy; leaves all others alone."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str]) -> None:
        self.app = app
        networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)

        @lru_cache(maxsize=1024)
        def is_trusted(host: str) -> bool:
            address = parse_address(host)
            return address is not None and any(address in network for network in networks)

        self.is_trusted = is_trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self.is_trusted(client[0]):
            await self.app(scope, receive, send)
            return
        values: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            if name in _FORWARDED:
                values.setdefault(name, []).append(value)
        if values:
            scope = self.rewritten(scope, values)
        await self.app(scope, receive, send)

    def rewritten(self, scope: Scope, values: dict[bytes, list[bytes]]) -> Scope:
        scope = dict(scope)
        proto = first(values.get(b"x-forwarded-proto"))
        if proto is not None and proto.lower() in ("http", "https"):
            scope["scheme"] = proto.lower()
        host = first(values.get(b"x-forwarded-host"))
        if host is not None and _HOST.fullmatch(host):
            encoded = host.encode("ascii")
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"host"] + [(b"host", encoded)]
        prefix = path_prefix(first(values.get(b"x-forwarded-prefix")))
        if prefix:  # ASGI: `path` includes `root_path`, so both get the prefix
            scope["root_path"] = prefix + scope.get("root_path", "")
            scope["path"] = prefix + scope["path"]
            if scope.get("raw_path") is not None:
                scope["raw_path"] = prefix.encode("ascii") + scope["raw_path"]
        forwarded_for = values.get(b"x-forwarded-for")
        if forwarded_for:
            client = self.original_client(b",".join(forwarded_for).decode("latin-1"))
            if client is not None:
                scope["client"] = (client, 0)
        return scope

    def original_client(self, chain: str) -> str | None:
        """The nearest address in `chain` that is not a trusted proxy, read from the right.

        Proxies append the address they received from, so only the right end of the list is
        vouched for: the left end is whatever the client sent. Reading from the right and stopping
        at the first untrusted address names the real client and cannot be spoofed by it.
        """
        found = None
        for entry in reversed(chain.split(",")):
            address = parse_address(entry.strip())
            if address is None:
                break
            found = str(address)
            if not self.is_trusted(found):
                break
        return found


def first(values: list[bytes] | None) -> str | None:
    """The first value of a header that may be repeated or comma-separated: the outermost proxy's."""
    if not values:
        return None
    return values[0].split(b",", 1)[0].strip().decode("latin-1")


def path_prefix(text: str | None) -> str | None:
    """`/pacs` from `/pacs` or `/pacs/`; None unless it is plain segments (no `.`, `..`, `//`, `%`)."""
    if text is None or not _PREFIX.fullmatch(text):
        return None
    prefix = text.rstrip("/")
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return None
    return prefix


def parse_address(text: str) -> IPAddress | None:
    """An IP address from a peer or `X-Forwarded-For` entry (a port is tolerated); None if not one."""
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
    return address
