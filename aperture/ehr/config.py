"""Typed settings of the EHR sandbox, from the `[ehr]` table of a TOML file and command-line flags.

The sandbox is another party than the imaging server, so it has its own settings; it reuses only
`ConfigError`, whose messages name the key and the file. Every URL the sandbox publishes is derived
here from `public_url`, so discovery, the `aud` it demands of client assertions and the `iss` it
reports in introspection can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aperture.config import ConfigError, cors_origin_list, read_toml_file


@dataclass(frozen=True)
class EhrConfig:
    host: str = "127.0.0.1"
    port: int = 9090
    data: Path = Path("ehr-data")
    public_url: str = ""  # URL apps use to reach the sandbox, e.g. https://ehr.example.org ; empty: http://host:port
    imaging_fhir_base: str = ""  # the imaging server's FHIR base, advertised in associated_endpoints
    imaging_dicomweb_base: str = ""  # its WADO-RS base for ImagingStudy endpoints; empty: derived (wado_rs_base)
    access_token_lifetime: int = 3600  # seconds
    dynamic_registration: bool = False  # RFC 7591 at {public_url}/register, open to anyone who can reach it
    # False: introspection and token responses carry no `authorization_details`, as a plain SMART
    # EHR answers; an imaging server must then bind patients itself (docs/authorization.md)
    authorization_details: bool = True
    cors_origins: tuple[str, ...] = ()  # browser origins besides registered apps' redirect origins; ("*",): any
    # Origins (scheme://host:port) whose jwks_uri the sandbox may fetch although they are plain http or a
    # loopback/private address; every other jwks_uri must be https to a public address.
    jwks_allowed_origins: tuple[str, ...] = ()
    # The developer page at {public_url}/sandbox: register, list, remove and launch apps with no
    # sign-in (the sandbox operator's console). Off: the path is 404.
    developer_page: bool = False

    def __post_init__(self) -> None:
        origins = self.cors_origins
        if not isinstance(origins, list | tuple) or not all(isinstance(o, str) for o in origins):
            raise ConfigError(f"'ehr.cors_origins' must be a list of strings, e.g. [\"https://app.example.org\"], "
                              f"not {origins!r}.")  # fmt: skip
        object.__setattr__(self, "cors_origins", cors_origin_list("ehr.cors_origins", tuple(origins)))
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"'ehr.public_url' must start with http:// or https://, not {self.public_url!r}.")
        if self.imaging_fhir_base and not self.imaging_fhir_base.startswith(("http://", "https://")):
            raise ConfigError(
                f"'ehr.imaging_fhir_base' must be an http(s) URL such as https://imaging.example.org/fhir, "
                f"not {self.imaging_fhir_base!r}."
            )
        if self.imaging_dicomweb_base and not self.imaging_dicomweb_base.startswith(("http://", "https://")):
            raise ConfigError(
                f"'ehr.imaging_dicomweb_base' must be an http(s) URL such as https://imaging.example.org/dicom-web, "
                f"not {self.imaging_dicomweb_base!r}."
            )
        if not 1 <= self.access_token_lifetime <= 86400:
            raise ConfigError(
                f"'ehr.access_token_lifetime' is in seconds, between 1 and 86400, not {self.access_token_lifetime}."
            )
        object.__setattr__(self, "jwks_allowed_origins", _origins(self.jwks_allowed_origins))
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        object.__setattr__(self, "imaging_fhir_base", self.imaging_fhir_base.rstrip("/"))
        object.__setattr__(self, "imaging_dicomweb_base", self.imaging_dicomweb_base.rstrip("/"))
        object.__setattr__(self, "data", Path(self.data))

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def fhir_base(self) -> str:
        """The clinical FHIR base: SMART discovery lives under it, and it is the issuer."""
        return f"{self.base_url}/fhir"

    @property
    def wado_rs_base(self) -> str:
        """The imaging server's WADO-RS base, which ImagingStudy endpoints point at ('' if unknown).

        Set explicitly, or derived from an imaging FHIR base in Aperture's layout, where FHIR is at
        `{public_url}/fhir` and DICOMweb at `{public_url}/dicom-web`.
        """
        if self.imaging_dicomweb_base:
            return self.imaging_dicomweb_base
        if self.imaging_fhir_base.endswith("/fhir"):
            return self.imaging_fhir_base.removesuffix("/fhir") + "/dicom-web"
        return ""

    @property
    def issuer(self) -> str:
        return self.fhir_base

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.base_url}/auth/authorize"

    @property
    def launch_page(self) -> str:
        """The EHR launch page, where a signed-in user opens a registered app for a patient."""
        return f"{self.base_url}/ehr/launch"

    @property
    def developer_page_url(self) -> str:
        """The developer page (served only with `developer_page`)."""
        return f"{self.base_url}/sandbox"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.base_url}/auth/introspect"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.base_url}/auth/revoke"

    @property
    def registration_endpoint(self) -> str:
        """RFC 7591 dynamic registration (served and advertised only with `dynamic_registration`)."""
        return f"{self.base_url}/register"

    @property
    def end_session_endpoint(self) -> str:
        """Sign-out: ends the browser's sign-in session (OpenID Connect RP-Initiated Logout style)."""
        return f"{self.base_url}/auth/logout"

    @property
    def jwks_uri(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @property
    def audiences(self) -> tuple[str, ...]:
        """Resource servers a token is meant for: the clinical FHIR base and, if configured, the imaging one."""
        return (self.fhir_base, self.imaging_fhir_base) if self.imaging_fhir_base else (self.fhir_base,)

    def to_json(self) -> dict[str, Any]:
        """Settings as JSON, handed to the HTTP server's worker processes."""
        return {
            **asdict(self),
            "data": str(self.data),
            "cors_origins": list(self.cors_origins),
            "jwks_allowed_origins": list(self.jwks_allowed_origins),
        }


def origin(url: str) -> str:
    """`scheme://host:port` of an http(s) URL, lowercased and with the port spelled out ('' if not http(s))."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _origins(values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ConfigError(
            f"'ehr.jwks_allowed_origins' is a list of origins such as [\"http://127.0.0.1:8000\"], not {values!r}."
        )
    found = []
    for value in values:
        normalized = origin(value)
        if not normalized or urlsplit(value).path not in ("", "/") or urlsplit(value).username is not None:
            raise ConfigError(f"'ehr.jwks_allowed_origins' takes origins (scheme://host:port, no path), not {value!r}.")
        found.append(normalized)
    return tuple(found)


def load_ehr_config(path: Path | None = None, **overrides: Any) -> EhrConfig:
    """Read the `[ehr]` table of `path` (if given), then apply the non-None `overrides` (flags)."""
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        document = read_toml_file(path)
        unknown = sorted(set(document) - {"ehr"})
        if unknown:
            raise ConfigError(f"Unknown section [{unknown[0]}] in {path}; the EHR sandbox reads only [ehr].")
        raw = dict(document.get("ehr", {}))
    raw.update({key: value for key, value in overrides.items() if value is not None})
    known = {f.name: f for f in fields(EhrConfig)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"Unknown key 'ehr.{key}' in {source}; known: {', '.join(known)}.")
        default = getattr(EhrConfig(), key)
        if isinstance(default, tuple):
            continue  # lists are checked by EhrConfig itself
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"'ehr.{key}' in {source} must be true or false, not {value!r}.")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"'ehr.{key}' in {source} must be an integer, not {value!r}.")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"'ehr.{key}' in {source} must be a string, not {value!r}.")
    return EhrConfig(**raw)
