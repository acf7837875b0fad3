"""Typed settings for the imaging server, read from a TOML file.

Every setting has a default so that `aperture serve --data DIR` works with no file at all. Errors
name the key and the file, because a wrong config is found by the person reading the message.
Command-line flags override the file (see `aperture.cli.serve`). See docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

DuplicatePolicy = Literal["reject", "overwrite"]


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key and the file."""


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("aperture-data")
    database_url: str = ""  # empty: SQLite file `index.sqlite3` inside `path`
    duplicate_policy: DuplicatePolicy = "reject"
    max_upload_bytes: int = 8 * 1024**3
    parser_processes: int = 0  # processes that parse uploads; 0: one per core but one
    htj2k_copies: bool = True  # compute HTJ2K Lossless RPCL copies of lossless frames in the background


@dataclass(frozen=True)
class DicomwebConfig:
    allow_delete: bool = False
    default_limit: int = 1000
    max_limit: int = 10000
    rendered_cache_bytes: int = 64 * 1024 * 1024  # 0 turns the rendered-image cache off


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+", re.IGNORECASE)


def cors_origin_list(key: str, origins: tuple[str, ...]) -> tuple[str, ...]:
    """A CORS origin setting checked and lower-cased: ["*"], or origins written scheme://host[:port].

    Both servers' `cors_origins` take the same form, so they are read by this one function.
    """
    if "*" in origins and len(origins) > 1:
        raise ConfigError(f"'{key}' is either [\"*\"] or a list of origins, not both.")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"'{key}' entry {origin!r} is not an origin: write scheme://host[:port], "
                "with no path and no trailing slash (e.g. https://viewer.example.org)."
            )
    return tuple(origin.lower() for origin in origins)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # e.g. https://pacs.example.org/imaging ; empty: derived from each request
    auth: Literal["none", "smart"] = "smart"
    workers: int = 1
    access_log: bool = False  # one line per request on `aperture.access`, query values redacted (debugging)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; ("*",) any; empty: same-origin only
    trusted_proxies: tuple[str, ...] = ()  # IPs / CIDRs whose X-Forwarded-* and Forwarded are believed; empty: none

    def __post_init__(self) -> None:
        """TOML gives lists: keep them as tuples (the config is frozen) and refuse what cannot work."""
        origins = cors_origin_list("server.cors_origins", self._strings("cors_origins", self.cors_origins))
        proxies = self._strings("trusted_proxies", self.trusted_proxies)
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    f"'server.trusted_proxies' entry {proxy!r} is not an IP address or a CIDR network."
                ) from None
        object.__setattr__(self, "cors_origins", origins)
        object.__setattr__(self, "trusted_proxies", proxies)

    @staticmethod
    def _strings(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"'server.{key}' must be a list of strings, e.g. {key} = [\"...\"], not {value!r}.")
        return tuple(value)


ClientAuthentication = Literal["client_secret_basic", "private_key_jwt"]


@dataclass(frozen=True)
class AuthConfig:
    """How this server asks the EHR about bearer tokens (RFC 7662 introspection), used with `server.auth = "smart"`,
    and its own Backend Services registration there (`backend_*`, for publishing ImagingStudy, any auth mode).

    No secret is ever a value here: the client secret comes from a file or an environment variable
    named here, the private key from a JWK file. See docs/configuration.md and docs/authorization.md.
    """

    ehr_issuer: str = (
        ""  # the EHR's FHIR base (its `iss`); discovery reads {ehr_issuer}/.well-known/smart-configuration
    )
    introspection_endpoint: str = ""  # empty: the `introspection_endpoint` of the EHR's smart-configuration
    client_id: str = ""  # this server's client id at the EHR, registered to introspect
    client_authentication: ClientAuthentication = "client_secret_basic"
    client_secret_file: str = ""  # client_secret_basic: a file holding the secret (one line)
    client_secret_env: str = ""  # client_secret_basic: or the name of an environment variable holding it
    private_key_file: str = ""  # private_key_jwt: a private JWK (RSA or EC P-384) as JSON, with a "kid"
    audience: str = ""  # this server's base URL as the EHR lists it in `aud`, e.g. https://imaging.example.org/fhir
    associated_audiences: tuple[str, ...] = ()  # other bases of ours a token may name instead (e.g. the DICOMweb base)
    cache_seconds: float = 5.0  # how long an active answer is reused (never past `exp`): revocation latency
    negative_cache_seconds: float = 2.0  # how long a refused token stays refused without asking again
    cache_entries: int = 10000  # tokens remembered, each of the two caches (least recently used go first)
    timeout_seconds: float = 3.0  # connect / read / write / pool timeout of each call to the EHR
    retry_after_seconds: int = 5  # Retry-After sent with 503 when the EHR cannot answer
    # This server's own SMART Backend Services registration at the EHR (publishing ImagingStudy,
    # aperture.fhir.publish): another client than the introspecting one, authenticated with
    # private_key_jwt only, as Backend Services asks.
    backend_client_id: str = ""  # empty: no Backend Services credentials (nothing is published)
    backend_private_key_file: str = ""  # a private JWK (RSA or EC P-384) as JSON, with a "kid"
    # plain SMART EHRs (no authorization_details): how long a Patient's identifiers, read with the
    # backend credentials, are reused
    patient_cache_seconds: float = 300.0

    def __post_init__(self) -> None:
        audiences = self.associated_audiences
        if not isinstance(audiences, list | tuple) or not all(isinstance(item, str) for item in audiences):
            raise ConfigError(f"'auth.associated_audiences' must be a list of URLs, not {audiences!r}.")
        object.__setattr__(self, "associated_audiences", tuple(a.rstrip("/") for a in audiences))
        for key in ("ehr_issuer", "introspection_endpoint", "audience"):
            value = getattr(self, key)
            if value and not value.startswith(("https://", "http://")):
                raise ConfigError(f"'auth.{key}' must be an http(s) URL, not {value!r}.")
            object.__setattr__(self, key, value.rstrip("/"))
        for key in ("cache_seconds", "negative_cache_seconds", "timeout_seconds", "patient_cache_seconds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"'auth.{key}' must be a number of seconds, 0 or more, not {value!r}.")
        if self.cache_entries < 1:
            raise ConfigError(f"'auth.cache_entries' must be at least 1, not {self.cache_entries!r}.")


@dataclass(frozen=True)
class FhirConfig:
    """The imaging FHIR endpoint at /fhir (docs/fhir.md): how its Patients map to DICOM identity."""

    ehr_base: str = ""  # the EHR's FHIR base; ImagingStudy.subject points at {ehr_base}/Patient/{id}
    default_issuer: str = ""  # --auth none only: `patient=<id>` means PatientID <id> of this issuer
    # FHIR identifier system URI -> DICOM IssuerOfPatientID, for `patient.identifier=system|value`
    patient_identifier_systems: dict[str, str] = field(default_factory=dict)
    default_count: int = 50
    max_count: int = 200
    # Publish each study's ImagingStudy to the EHR once it has had no change for this long
    # (aperture.fhir.publish); 0 turns publishing off. Needs auth.ehr_issuer and auth.backend_client_id.
    publish_after_seconds: int = 30

    def __post_init__(self) -> None:
        systems = self.patient_identifier_systems
        if not isinstance(systems, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in systems.items()
        ):
            raise ConfigError(
                "'fhir.patient_identifier_systems' must be a table of identifier system URI = "
                'DICOM IssuerOfPatientID, e.g. "http://hospital.example.org/mrn" = "HOSP-A".'
            )
        if self.ehr_base and not _ORIGIN.match(self.ehr_base):
            raise ConfigError(
                f"'fhir.ehr_base' must be an absolute URL such as https://ehr.example.org/fhir, not {self.ehr_base!r}."
            )
        if not 1 <= self.default_count <= self.max_count:
            raise ConfigError("'fhir.default_count' must be at least 1 and at most 'fhir.max_count'.")
        if self.publish_after_seconds < 0:
            raise ConfigError(
                "'fhir.publish_after_seconds' is a number of seconds, 0 (off) or more, "
                f"not {self.publish_after_seconds}."
            )
        object.__setattr__(self, "ehr_base", self.ehr_base.rstrip("/"))


OHIF_VERSION = "3.13.2"  # keep in step with OHIF_VERSION in the Makefile, which fetches it
OHIF_DIST = Path(__file__).resolve().parents[1] / ".cache" / "ohif" / OHIF_VERSION / "dist"


@dataclass(frozen=True)
class ViewerConfig:
    """OHIF at `/viewer/` (docs/view-download-transmit.md): the prebuilt dist `make install` fetches, and where its
    rewritten and precompressed copies go (empty: `served/` beside the dist)."""

    ohif_dist: Path = OHIF_DIST
    cache: Path = Path("")
    progressive: bool = True  # byte-range progressive HTJ2K for stacks


@dataclass(frozen=True)
class AuditConfig:
    """The audit trail (docs/authorization.md#audit): every access decision becomes an AuditEvent."""

    enabled: bool = True  # false only for measurements of the server without its audit trail


_DESTINATION_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


@dataclass(frozen=True)
class TransmitDestination:
    """One node the app's *Send to…* may send a study to (docs/view-download-transmit.md#destinations).

    Named by the operator, so no signed-in user chooses a host (no server-side request forgery). No
    secret is a value here: a STOW-RS receiver's bearer token or `user:password` comes from a file
    or an environment variable named here.
    """

    name: str  # what the app shows and posts back
    to: str  # as `aperture transmit --to`: dicomweb:URL or dimse:AET@host:port
    calling_aet: str = "APERTURE"  # our AE title towards a dimse receiver
    token_file: str = ""  # dicomweb: a file holding the receiver's bearer token
    token_env: str = ""  # dicomweb: or an environment variable holding it
    basic_file: str = ""  # dicomweb: a file holding user:password for HTTP basic authentication
    basic_env: str = ""  # dicomweb: or an environment variable holding it

    def __post_init__(self) -> None:
        from aperture.clients.transmit.address import Peer, parse_to

        where = f"transmit.destinations entry {self.name!r}"
        if not isinstance(self.name, str) or not _DESTINATION_NAME.fullmatch(self.name) or not self.name.strip():
            raise ConfigError(
                f"'transmit.destinations' entries need a name of 1-64 printable characters, not {self.name!r}."
            )
        try:
            target = parse_to(self.to if isinstance(self.to, str) else repr(self.to))
        except ValueError as exc:
            raise ConfigError(f"{where}: 'to' {exc}.") from None
        secrets = [key for key in ("token_file", "token_env", "basic_file", "basic_env") if getattr(self, key)]
        if len(secrets) > 1:
            raise ConfigError(f"{where}: give at most one of {', '.join(secrets)}.")
        if secrets and isinstance(target, Peer):
            raise ConfigError(f"{where}: {secrets[0]} is for a dicomweb receiver; C-STORE sends no credentials.")
        if not 1 <= len(self.calling_aet.strip()) <= 16 or "\\" in self.calling_aet:
            raise ConfigError(
                f"{where}: 'calling_aet' must be an AE title of 1-16 characters, not {self.calling_aet!r}."
            )

    @property
    def kind(self) -> Literal["dicomweb", "dimse"]:
        return "dimse" if self.to.startswith("dimse:") else "dicomweb"


@dataclass(frozen=True)
class TransmitConfig:
    """Where `POST /transmit` may send a study the request's authorization reaches; none: the app offers no
    *Send to…*. In TOML, one `[[transmit.destinations]]` table per destination."""

    destinations: tuple[TransmitDestination, ...] = ()

    def __post_init__(self) -> None:
        entries = self.destinations
        if not isinstance(entries, list | tuple):
            raise ConfigError("'transmit.destinations' must be a list of [[transmit.destinations]] tables.")
        built: list[TransmitDestination] = []
        known = {f.name for f in fields(TransmitDestination)}
        for entry in entries:
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - known)
                if unknown or not {"name", "to"} <= set(entry):
                    raise ConfigError(
                        f"Each [[transmit.destinations]] needs name and to, and may have {', '.join(sorted(known))}; "
                        f"found {', '.join(sorted(entry))}."
                    )
                entry = TransmitDestination(**entry)
            if not isinstance(entry, TransmitDestination):
                raise ConfigError(f"'transmit.destinations' entries must be tables, not {entry!r}.")
            built.append(entry)
        names = [d.name for d in built]
        if len(set(names)) != len(names):
            raise ConfigError(f"'transmit.destinations' names must differ; found {names}.")
        object.__setattr__(self, "destinations", tuple(built))

    def named(self, name: str) -> TransmitDestination | None:
        return next((d for d in self.destinations if d.name == name), None)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    dicomweb: DicomwebConfig = field(default_factory=DicomwebConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    fhir: FhirConfig = field(default_factory=FhirConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    transmit: TransmitConfig = field(default_factory=TransmitConfig)

    @property
    def database_url(self) -> str:
        return self.store.database_url or f"sqlite:///{self.store.path / 'index.sqlite3'}"


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "store": StoreConfig,
    "dicomweb": DicomwebConfig,
    "auth": AuthConfig,
    "fhir": FhirConfig,
    "audit": AuditConfig,
    "viewer": ViewerConfig,
    "transmit": TransmitConfig,
}
_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("store", "duplicate_policy"): ("reject", "overwrite"),
    ("server", "auth"): ("none", "smart"),
    ("auth", "client_authentication"): ("client_secret_basic", "private_key_jwt"),
}


def read_toml_file(path: Path) -> dict[str, Any]:
    """A TOML config file's tables, or a ConfigError a person can act on (missing file, bad TOML)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"Config file {path} does not exist.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from exc


def load_config(path: Path | None = None, **overrides: dict[str, Any]) -> Config:
    """Read `path` (if given), then apply `overrides` such as `server={"port": 9000}`."""
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        raw = read_toml_file(path)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _SECTIONS:
            raise ConfigError(f"Unknown section [{name}] in {source}; known: {', '.join(_SECTIONS)}.")
        sections[name] = _build(_SECTIONS[name], name, value, source)
    return Config(**sections)


def _build(cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"Unknown key '{section}.{key}' in {source}; known: {', '.join(known)}.")
        default = getattr(cls(), key)
        if isinstance(default, Path):
            value = Path(value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"'{section}.{key}' in {source} must be true or false, not {value!r}.")
        elif isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise ConfigError(f"'{section}.{key}' in {source} must be an integer, not {value!r}.")
        choices = _CHOICES.get((section, key))
        if choices and value not in choices:
            raise ConfigError(f"'{section}.{key}' in {source} must be one of {', '.join(choices)}, not {value!r}.")
        kwargs[key] = value
    return replace(cls(), **kwargs)
