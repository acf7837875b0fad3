"""Where a transmit goes, as `--to` and the server's `[[transmit.destinations]]` write it.

`dicomweb:URL` (a STOW-RS base) or `dimse:AET@host:port` (a C-STORE SCP). Parsed here, without
importing the senders, so the server's config can refuse a wrong address when it is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDRESS = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})$")
_URL = re.compile(r"^https?://[^/?#\s]+[^?#\s]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Peer:
    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """`AET@host:port`; ValueError with what is wrong otherwise."""
        match = _ADDRESS.match(text)
        if match is None or not 0 < int(match["port"]) < 65536 or not match["aet"].strip():
            raise ValueError(f"{text!r} is not AET@host:port (an AE title of 1-16 characters, a host and a port)")
        return cls(match["aet"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_to(text: str) -> str | Peer:
    """A STOW-RS base URL (str) or a C-STORE peer; ValueError naming the two accepted forms otherwise."""
    if text.startswith("dicomweb:"):
        url = text.removeprefix("dicomweb:")
        if not _URL.match(url):
            raise ValueError(f"{url!r} is not an http(s) URL (write dicomweb:https://host/dicom-web)")
        return url.rstrip("/")
    if text.startswith("dimse:"):
        return Peer.parse(text.removeprefix("dimse:"))
    raise ValueError(f"{text!r} must be dicomweb:URL or dimse:AET@host:port")
