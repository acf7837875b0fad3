"""The [auth] table: what the introspection client needs, checked when the file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.auth.introspection import Introspector
from aperture.config import ConfigError, load_config


def test_the_auth_table_is_read(tmp_path: Path) -> None:
    path = tmp_path / "aperture.toml"
    path.write_text(
        '[auth]\nehr_issuer = "https://ehr.example.org/fhir/"\nclient_id = "imaging-server"\n'
        'client_secret_env = "APERTURE_EHR_SECRET"\naudience = "https://imaging.example.org/fhir"\n'
        'associated_audiences = ["https://imaging.example.org/dicom-web"]\ncache_seconds = 2\n'
    )
    auth = load_config(path).auth
    assert auth.ehr_issuer == "https://ehr.example.org/fhir" and auth.client_id == "imaging-server"
    assert auth.associated_audiences == ("https://imaging.example.org/dicom-web",) and auth.cache_seconds == 2
    assert auth.client_authentication == "client_secret_basic" and auth.introspection_endpoint == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('client_authentication = "client_secret_post"', "must be one of client_secret_basic, private_key_jwt"),
        ('ehr_issuer = "ehr.example.org"', "'auth.ehr_issuer' must be an http(s) URL"),
        ('associated_audiences = "https://a.example"', "'auth.associated_audiences' must be a list"),
        ("cache_seconds = -1", "'auth.cache_seconds' must be a number of seconds"),
        ("cache_entries = 0", "'auth.cache_entries' must be at least 1"),
    ],
)
def test_wrong_auth_settings_are_named(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "aperture.toml"
    path.write_text(f"[auth]\n{table}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_missing_credentials_are_named_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "aperture.toml"
    path.write_text('[auth]\nehr_issuer = "https://ehr.test/fhir"\nclient_id = "i"\naudience = "https://i.test/fhir"\n')
    with pytest.raises(ConfigError, match="client_secret_file' or 'auth.client_secret_env"):
        Introspector(load_config(path).auth)
