"""The sandbox lets a native app's loopback redirect name any port (RFC 8252 §7.3), and nothing else."""

from __future__ import annotations

from aperture.ehr.clients import Client


def test_only_the_port_of_a_loopback_ip_redirect_may_differ() -> None:
    app = Client("cli", "public", "CLI", "patient/ImagingStudy.rs",
                 redirect_uris=("http://127.0.0.1/callback", "http://[::1]/cb?x=1", "https://app.test/cb"))  # fmt: skip
    assert app.check_redirect_uri("http://127.0.0.1/callback")
    assert app.check_redirect_uri("http://127.0.0.1:51234/callback")
    assert app.check_redirect_uri("http://[::1]:4000/cb?x=1")
    for refused in (
        "http://127.0.0.1:51234/callback/",  # another path
        "http://127.0.0.1:51234/other",
        "http://localhost:51234/callback",  # a name, not the loopback IP (RFC 8252 §8.3)
        "https://127.0.0.1:51234/callback",  # another scheme
        "http://user@127.0.0.1:51234/callback",
        "http://127.0.0.1:51234/callback#x",
        "http://127.0.0.1.evil.test:51234/callback",
        "http://[::1]:4000/cb?x=2",  # another query
        "https://app.test:8443/cb",  # not loopback: exact match only
    ):
        assert not app.check_redirect_uri(refused), refused
