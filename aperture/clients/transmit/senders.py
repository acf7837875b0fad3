"""The sender for a destination: STOW-RS for a URL, C-STORE for a peer (`address.parse_to`)."""

from __future__ import annotations

import httpx

from aperture.clients.transmit.address import Peer
from aperture.clients.transmit.dimse import DimseSender
from aperture.clients.transmit.retry import Backoff
from aperture.clients.transmit.run import Sender
from aperture.clients.transmit.stow import StowSender


def sender_for(
    to: str | Peer, *, auth: httpx.Auth | None = None, calling_aet: str = "APERTURE", backoff: Backoff | None = None
) -> Sender:
    """`auth` is for a STOW-RS receiver; `calling_aet` is our AE title towards a C-STORE one."""
    if isinstance(to, Peer):
        return DimseSender(to, calling_aet, backoff)
    return StowSender(to, auth, backoff)
