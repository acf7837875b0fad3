"""Accept negotiation for DICOMweb (PS3.18 §8.7): media ranges, q-values, transfer-syntax.

Parameters are parsed per RFC 9110, quoted or not (`type=application/dicom` and
`type="application/dicom"` mean the same; OHIF sends the first). The `accept` query parameter,
when present, replaces the Accept header (PS3.18 §8.3.3.1). A `transfer-syntax` of `*` means
"as stored"; a missing one means the resource's PS3.18 default, which each resource decides (for
instances, `aperture.dicomweb.wado.target_syntax`: Explicit VR Little Endian unless the stored
pixels are lossy or cannot be decoded, so stored bytes are never silently degraded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from aperture.errors import InvalidRequest, NotAcceptable

# Real Accept headers are a few hundred characters and a handful of ranges (OHIF sends three).
# The bounds keep the parse, and the cache of recent answers below, small whatever a client sends.
MAX_ACCEPT_CHARS = 4096
MAX_MEDIA_RANGES = 32
_TOKEN = re.compile(r'\s*([^\s;,=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,]*)')


@dataclass(frozen=True)
class MediaRange:
    type: str  # lower-case "type/subtype", possibly "*/*" or "image/*"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def part_type(self) -> str | None:
        """For multipart/related, the `type` parameter (lower-case), else None."""
        value = self.params.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        value = self.params.get("transfer-syntax")
        return value.strip() if value else None

    def covers(self, media_type: str) -> bool:
        if self.type in ("*/*", "*"):
            return True
        if self.type.endswith("/*"):
            return media_type.startswith(self.type[:-1])
        return self.type == media_type


def _split_ranges(header: str) -> list[str]:
    """Split on commas that are not inside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_accept(header: str | None, what: str = "The Accept header") -> list[MediaRange]:
    """Media ranges by preference (q descending, header order kept for ties); empty header is */*.

    Every WADO-RS and QIDO-RS request parses one, and clients send the same few headers again and
    again: the answers for recent headers are kept (ranges are never changed after parsing).
    InvalidRequest past MAX_ACCEPT_CHARS or MAX_MEDIA_RANGES; `what` names the header in that message.
    """
    if header and len(header) > MAX_ACCEPT_CHARS:
        raise InvalidRequest(f"{what} is {len(header)} characters long; at most {MAX_ACCEPT_CHARS} are accepted.")
    try:
        return list(_parse_accept(header or ""))
    except _TooManyRanges:
        raise InvalidRequest(f"{what} lists more than {MAX_MEDIA_RANGES} media ranges.") from None


class _TooManyRanges(ValueError):
    pass


@lru_cache(maxsize=512)
def _parse_accept(header: str) -> tuple[MediaRange, ...]:
    if not header.strip():
        return (MediaRange("*/*"),)
    ranges: list[tuple[float, int, MediaRange]] = []
    texts = _split_ranges(header)
    if len(texts) > MAX_MEDIA_RANGES:
        raise _TooManyRanges
    for position, text in enumerate(texts):
        media, _, rest = text.partition(";")
        params: dict[str, str] = {}
        q = 1.0
        for match in _TOKEN.finditer(rest):
            name, value = match.group(1).lower(), match.group(2).strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params[name] = value
        if q > 0:
            ranges.append((q, position, MediaRange(media.strip().lower(), params, q)))
    ranges.sort(key=lambda item: (-item[0], item[1]))
    return tuple(r for _, _, r in ranges)


@dataclass(frozen=True)
class Choice:
    """The representation to send: multipart or single part, the part's media type, the syntax."""

    multipart: bool
    media_type: str
    transfer_syntax: str | None  # "*": as stored; None: not named (the resource's default applies)


def choose(
    ranges: list[MediaRange],
    *,
    part_types: tuple[str, ...],
    multipart: bool = True,
    single: bool = False,
    what: str,
) -> Choice:
    """First acceptable of: multipart/related with a part type in `part_types`, or one of them single.

    `part_types[0]` is the default when the client accepts anything.
    """
    for media in ranges:
        if media.type == "multipart/related" and multipart:
            part = media.part_type or part_types[0]
            if part in part_types:
                return Choice(True, part, _ts(media))
            continue
        if media.type in ("*/*", "*", "multipart/*"):
            return Choice(multipart, part_types[0], _ts(media))
        if single:
            for part in part_types:
                if media.covers(part):
                    return Choice(False, part, _ts(media))
    offered = [f'multipart/related; type="{p}"' for p in part_types] if multipart else []
    if single:
        offered += list(part_types)
    raise NotAcceptable(f"{what} is available as: {', '.join(offered)}. The Accept header asked for none of these.")


def _ts(media: MediaRange) -> str | None:
    ts = media.transfer_syntax
    return None if not ts else ts


def accepts(ranges: list[MediaRange], media_type: str) -> bool:
    return any(r.covers(media_type) for r in ranges)


DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
MULTIPART_XML = f'multipart/related; type="{DICOM_XML}"'


class MetadataFormat(Enum):
    """How metadata and search results are written: DICOM JSON, or DICOM XML (PS3.19 Annex A)."""

    JSON = "json"  # one application/dicom+json array
    XML_PARTS = "xml-parts"  # multipart/related, one application/dicom+xml document per instance or result
    XML = "xml"  # a single application/dicom+xml document: only for a resource that is one instance


def metadata_format(header: str | None, *, single: bool, what: str) -> MetadataFormat:
    """The metadata representation the Accept header (or `accept=`) prefers; NotAcceptable if none.

    PS3.18 Table 10.4.4-1 (Retrieve; Search answers in the same metadata media types, §10.6.3.3 and
    §8.7.3.2): application/dicom+json is the default, multipart/related; type="application/dicom+xml"
    is required. A single-part application/dicom+xml is used only where the resource is a single
    response item (`single`: one instance's metadata; §10.4.4, on single part media types) and
    ignored elsewhere.
    The answer for a header is remembered: `/metadata` is the busiest resource, and its JSON
    requests then cost one dictionary look-up here.
    """
    return _metadata_format(header or "", single, what)


@lru_cache(maxsize=512)
def _metadata_format(header: str, single: bool, what: str) -> MetadataFormat:
    for media in parse_accept(header):
        if media.type in (DICOM_JSON, "application/json", "*/*", "*", "application/*"):
            return MetadataFormat.JSON
        if media.type == "multipart/related" and media.part_type in (None, DICOM_XML):
            return MetadataFormat.XML_PARTS
        if single and media.type == DICOM_XML:
            return MetadataFormat.XML
    offered = f"{DICOM_JSON} or {MULTIPART_XML}" + (f" (or {DICOM_XML})" if single else "")
    raise NotAcceptable(f"{what} can be sent as {offered}. The Accept header asked for none of these.")
