"""Running behind a reverse proxy: believe `X-Forwarded-*` and `Forwarded`, but only from trusted proxies.

Behind nginx or a load balancer, the connection Aperture sees comes from the proxy, over plain
HTTP, to an internal host, with any path prefix (`/pacs`) already stripped. URLs Aperture writes
(RetrieveURL, BulkDataURI) must instead name what the client used, and the access log should name
the client. The proxy says both in `X-Forwarded-Proto`, `-Host`, `-Prefix` and `-For`, or in the
standard `Forwarded` header (RFC 7239: `proto`, `host`, `for`; it has no prefix); this layer
rewrites the ASGI scope from them (scheme, `host` header, `root_path` and `path`, `client`).
Anyone can send those headers, so they are read only when the direct peer is in
`server.trusted_proxies`; values that are not well formed are ignored rather than guessed at.
Where both say the same thing, `X-Forwarded-*` wins (see `rewritten`).
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
_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix", b"x-forwarded-for", b"forwarded")

# RFC 7239 §4: Forwarded = 1#forwarded-element; forwarded-element = [ pair ] *( ";" [ pair ] );
# pair = token "=" ( token / quoted-string ), tokens and quoted strings as in RFC 7230 §3.2.6.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=(?:({_TOKEN})|"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)")[ \t]*')
_SEPARATOR = re.compile(r"[ \t]*([,;]|$)")
_UNESCAPE = re.compile(r"\\(.)")
# RFC 7239 §6: node = nodename [ ":" node-port ]; nodename = IPv4address / "[" IPv6address "]" /
# "unknown" / obfnode; node-port = port / obfport; obf* = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )
_OBFUSCATED = r"_[A-Za-z0-9._-]+"
_NODE = re.compile(rf"(\[[0-9A-Fa-f:.]+\]|[0-9.]+|unknown|{_OBFUSCATED})(?::(?:[0-9]{{1,5}}|{_OBFUSCATED}))?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 §3.1, what `proto` holds (RFC 7239 §5.4)


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
        """The scope as the client addressed it. Field by field, `X-Forwarded-*` wins over `Forwarded`:
        `Forwarded` only fills in what no well-formed `X-Forwarded-*` header says. A proxy set up as the
        docs show sets X-Forwarded-* and passes a client's own `Forwarded` through untouched, so that
        one must not override them."""
        scope = dict(scope)
        element: dict[str, str] = {}
        forwarded_client = None
        if b"forwarded" in values:
            element, forwarded_client = self.believed_element(values[b"forwarded"])
        proto = first(values.get(b"x-forwarded-proto"))
        if proto is None or proto.lower() not in ("http", "https"):
            proto = element.get("proto")
        if proto is not None and proto.lower() in ("http", "https"):
            scope["scheme"] = proto.lower()
        host = first(values.get(b"x-forwarded-host"))
        if host is None or not _HOST.fullmatch(host):
            host = element.get("host")
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
        client = self.original_client(b",".join(forwarded_for).decode("latin-1")) if forwarded_for else None
        client = client or forwarded_client
        if client is not None:
            scope["client"] = (client, 0)
        return scope

    def believed_element(self, lines: list[bytes]) -> tuple[dict[str, str], str | None]:
        """(The `Forwarded` element written by the edge proxy, the client address it names, if any).

        Read from the right, as `X-Forwarded-For` is: each proxy appends its element (RFC 7239 §4),
        so the last one is the direct peer's. While an element's `for` is a trusted proxy, that proxy
        wrote the element to its left, so that one is believed too. The walk stops at the first
        element whose `for` is an untrusted address (the client), hidden (`unknown`, `_obfuscated`,
        §6.2-6.3) or missing; elements further left are whatever the client sent. A header that does
        not follow the grammar anywhere is ignored as a whole: ({}, None).
        """
        elements = parse_forwarded(b",".join(lines).decode("latin-1"))
        believed: dict[str, str] = {}
        client = None
        for element in reversed(elements or []):
            believed = element
            address = node_address(element.get("for"))
            if address is None:
                break
            client = str(address)
            if not self.is_trusted(client):
                break
        return believed, client

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


def parse_forwarded(text: str) -> list[dict[str, str]] | None:
    """The elements of a `Forwarded` value, lower-case parameter names to unquoted values; None if any
    part breaks RFC 7239's grammar: a bad pair, a parameter twice in one element (§4 "MUST NOT occur
    more than once per field-value"), or a `for`/`by`/`host`/`proto` value of the wrong form. Empty
    elements and empty pairs are allowed (RFC 7230 §7 list rule, and the `[ pair ]` of §4)."""
    elements: list[dict[str, str]] = [{}]
    position = 0
    while position < len(text):
        pair = _PAIR.match(text, position)
        if pair is not None:
            name = pair[1].lower()
            value = pair[2] if pair[2] is not None else _UNESCAPE.sub(r"\1", pair[3])
            if name in elements[-1] or not valid_parameter(name, value):
                return None
            elements[-1][name] = value
            position = pair.end()
        separator = _SEPARATOR.match(text, position)
        if separator is None or (pair is None and separator.end() == position):
            return None
        if separator[1] == ",":
            elements.append({})
        position = separator.end()
    return [element for element in elements if element]


def valid_parameter(name: str, value: str) -> bool:
    if name in ("for", "by"):
        if _NODE.fullmatch(value) is None:
            return False
        return value.startswith(("_", "unknown")) or node_address(value) is not None
    if name == "host":
        return _HOST.fullmatch(value) is not None
    if name == "proto":
        return _SCHEME.fullmatch(value) is not None
    return True  # an extension parameter (§5.5): allowed, and not read


def node_address(node: str | None) -> IPAddress | None:
    """The IP address of a well-formed RFC 7239 node (§6: "[v6]:port", "v4:port"); None if the node is
    `unknown`, obfuscated or absent."""
    if node is None or node.startswith(("_", "unknown")):
        return None
    if not node.startswith("[") and ":" not in node:
        try:
            return ipaddress.IPv4Address(node)
        except ValueError:
            return None
    return parse_address(node) if node.startswith("[") or node.count(":") == 1 else None


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
