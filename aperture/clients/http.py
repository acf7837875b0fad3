"""The command-line clients' HTTP client: TLS set up on the first https:// request, not at start.

httpx builds its TLS context when a client is made, loading the whole CA bundle (about 90 ms on
the benchmark machine), even when every URL the command will use is plain http on loopback (the
sandbox, a demo). `aperture download` and `aperture transmit` start often and should start fast,
so their client routes by scheme: plain http through a transport whose TLS context trusts no one
(so it can never carry an https request unverified), https through the usual verified transport,
built once, on first use.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx


class _SchemeTransport(httpx.BaseTransport):
    """http:// now; https:// through `httpx.HTTPTransport(verify=True)`, made on the first request."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        refuse_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies hostnames and trusts no CA: fails closed
        self._plain = httpx.HTTPTransport(verify=refuse_tls, **options)
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            return self._plain.handle_request(request)
        with self._lock:
            if self._tls is None:
                self._tls = httpx.HTTPTransport(verify=True, **self._options)
        return self._tls.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


def client(*, timeout: float | httpx.Timeout, limits: httpx.Limits | None = None, **options: Any) -> httpx.Client:
    """An `httpx.Client` for a command-line client (see the module's docstring); `options` go to httpx.Client."""
    transport = _SchemeTransport(limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20))
    return httpx.Client(timeout=timeout, transport=transport, **options)
