"""The imaging server's own SMART Backend Services client against the real EHR sandbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey

from aperture.auth.backend import BackendClient
from aperture.config import AuthConfig, ConfigError
from aperture.errors import AuthorizationServerUnavailable
from tests.conftest import free_port
from tests.ehr.conftest import Sandbox, jwks_host, public_jwks, register, sandbox, start_sandbox

__all__ = ["jwks_host", "sandbox"]  # session fixtures of tests/ehr, shared here

SCOPE = "system/ImagingStudy.cu"


def registered(sandbox: Sandbox, tmp_path: Path, client_id: str, key: RSAKey | ECKey) -> AuthConfig:
    """A backend client registered at the sandbox with `key`'s public half; our config holds the private JWK."""
    jwks = tmp_path / f"{client_id}-public.json"
    jwks.write_text(json.dumps(public_jwks(key)))
    register(sandbox.server.data, "--kind", "backend", "--name", client_id, "--client-id", client_id,
             "--scope", SCOPE, "--jwks", str(jwks))  # fmt: skip
    private = tmp_path / f"{client_id}-private.json"
    private.write_text(json.dumps(key.as_dict(private=True)))
    return AuthConfig(ehr_issuer=f"{sandbox.url}/fhir", backend_client_id=client_id,
                      backend_private_key_file=str(private))  # fmt: skip


def tokens(config: AuthConfig, callers: int = 1) -> list[str]:
    async def run() -> list[str]:
        client = BackendClient(config, SCOPE)
        try:
            first = await asyncio.gather(*(client.token() for _ in range(callers)))
            return [*first, await client.token()]
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_backend_client_gets_one_token_for_concurrent_callers_and_reuses_it(
    sandbox: Sandbox, tmp_path: Path, kind: str
) -> None:
    key = (
        RSAKey.generate_key(2048, parameters={"kid": "pub-rs"})
        if kind == "rsa"
        else ECKey.generate_key("P-384", parameters={"kid": "pub-es"})
    )
    config = registered(sandbox, tmp_path, f"publisher-{kind}", key)
    got = tokens(config, callers=5)
    assert len(set(got)) == 1, "concurrent callers and the next one share one token"
    info = sandbox.introspect(got[0]).json()
    assert info["active"] is True
    assert info["client_id"] == f"publisher-{kind}"
    assert info["scope"] == SCOPE


def test_a_token_is_fetched_again_before_it_expires(tmp_path: Path) -> None:
    """A sandbox issuing 2-second tokens: the client renews after half the lifetime, not after expiry."""
    data = tmp_path / "ehr"
    key = RSAKey.generate_key(2048, parameters={"kid": "short-1"})
    (tmp_path / "public.json").write_text(json.dumps(public_jwks(key)))
    (tmp_path / "private.json").write_text(json.dumps(key.as_dict(private=True)))
    register(data, "--kind", "backend", "--name", "short", "--client-id", "short", "--scope", SCOPE,
             "--jwks", str(tmp_path / "public.json"))  # fmt: skip
    server = start_sandbox(data, config="[ehr]\naccess_token_lifetime = 2\n")
    try:
        config = AuthConfig(ehr_issuer=f"{server.url}/fhir", backend_client_id="short",
                            backend_private_key_file=str(tmp_path / "private.json"))  # fmt: skip

        async def run() -> tuple[str, str, str]:
            client = BackendClient(config, SCOPE)
            try:
                first, reused = await client.token(), await client.token()
                await asyncio.sleep(1.2)  # past half of the 2 s lifetime
                return first, reused, await client.token()
            finally:
                await client.aclose()

        first, reused, renewed = asyncio.run(run())
        assert first == reused != renewed
    finally:
        server.stop()


def test_a_key_the_ehr_does_not_know_is_refused_with_a_message_naming_the_registration(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = registered(sandbox, tmp_path, "publisher-rekeyed", RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(RSAKey.generate_key(2048, parameters={"kid": "k1"}).as_dict(private=True)))
    config = AuthConfig(ehr_issuer=config.ehr_issuer, backend_client_id="publisher-rekeyed",
                        backend_private_key_file=str(other))  # fmt: skip
    with pytest.raises(AuthorizationServerUnavailable) as caught:
        tokens(config)
    message = caught.value.message
    assert "refused Backend Services client 'publisher-rekeyed'" in message
    assert "invalid_client" in message and "auth.backend_private_key_file" in message


def test_an_ehr_that_is_down_is_unavailable_with_a_clear_message(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(RSAKey.generate_key(2048, parameters={"kid": "k"}).as_dict(private=True)))
    issuer = f"http://127.0.0.1:{free_port()}/fhir"
    config = AuthConfig(ehr_issuer=issuer, backend_client_id="x", backend_private_key_file=str(key))
    with pytest.raises(AuthorizationServerUnavailable) as caught:
        tokens(config)
    assert f"{issuer}/.well-known/smart-configuration" in caught.value.message


def test_backend_credentials_are_separate_settings_and_need_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auth.backend_client_id"):
        BackendClient(AuthConfig(ehr_issuer="http://ehr.test/fhir"), SCOPE)
    with pytest.raises(ConfigError, match="auth.backend_private_key_file"):
        BackendClient(AuthConfig(ehr_issuer="http://ehr.test/fhir", backend_client_id="x"), SCOPE)
