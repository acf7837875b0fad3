"""Behind a reverse proxy: X-Forwarded-* from a trusted proxy shape every URL Aperture writes.

The test client on 127.0.0.1 plays the proxy: it sends the headers nginx would send after
stripping the `/pacs` prefix, so the server sees `/dicom-web/...`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer, start_server
from tests.helpers import make_instance, stow
from tests.server import access_lines

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org", "X-Forwarded-Prefix": "/pacs"}
RFC7239 = {"Forwarded": "for=203.0.113.20;proto=https;host=example.org", "X-Forwarded-Prefix": "/pacs"}
EXTERNAL = "https://example.org/pacs/dicom-web"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    data = tmp_path_factory.mktemp("proxied") / "data"
    server = start_server(data, config='[server]\naccess_log = true\ntrusted_proxies = ["127.0.0.1"]\n')
    yield server
    server.stop()


def store_study(server: ApertureServer, headers: dict[str, str] | None = None) -> tuple[dict, dict[str, str]]:  # type: ignore[type-arg]
    """Stores one instance with pixel data large enough to be bulk data; returns (STOW answer, UIDs)."""
    ids = {"study": generate_uid(), "series": generate_uid(), "sop": generate_uid()}
    part = make_instance(study=ids["study"], series=ids["series"], sop=ids["sop"], rows=64, columns=64)
    with httpx.Client(base_url=server.dicomweb, timeout=30, headers=headers) as http:
        answer = stow(http, [part])
    assert answer.status_code == 200, answer.text
    return answer.json(), ids


def retrieve_urls(server: ApertureServer, study: str, headers: dict[str, str]) -> tuple[str, str]:
    """(QIDO RetrieveURL of the study, BulkDataURI of its pixel data in /metadata)."""
    with httpx.Client(base_url=server.dicomweb, timeout=30, headers=headers) as http:
        found = http.get("/studies", params={"StudyInstanceUID": study})
        assert found.status_code == 200, found.text
        metadata = http.get(f"/studies/{study}/metadata")
        assert metadata.status_code == 200, metadata.text
    return found.json()[0]["00081190"]["Value"][0], metadata.json()[0]["7FE00010"]["BulkDataURI"]


def test_trusted_proxy_headers_shape_qido_and_metadata_urls(proxied: ApertureServer) -> None:
    _, ids = store_study(proxied)
    retrieve, bulk = retrieve_urls(proxied, ids["study"], FORWARDED)
    assert retrieve == f"{EXTERNAL}/studies/{ids['study']}"
    assert bulk.startswith(f"{EXTERNAL}/studies/{ids['study']}/series/{ids['series']}/instances/{ids['sop']}/")


def test_trusted_proxy_headers_shape_the_stow_answer(proxied: ApertureServer) -> None:
    answer, ids = store_study(proxied, FORWARDED)
    assert answer["00081190"]["Value"] == [f"{EXTERNAL}/studies/{ids['study']}"]
    (item,) = answer["00081199"]["Value"]
    assert item["00081190"]["Value"][0].startswith(f"{EXTERNAL}/studies/{ids['study']}/series/{ids['series']}/")


def test_a_written_url_works_through_the_proxy(proxied: ApertureServer) -> None:
    """The proxy strips /pacs, so the app routes /dicom-web/... while writing /pacs/dicom-web/...."""
    _, ids = store_study(proxied)
    _, bulk = retrieve_urls(proxied, ids["study"], FORWARDED)
    forwarded_path = bulk.removeprefix("https://example.org/pacs")
    answer = httpx.get(f"{proxied.url}{forwarded_path}", headers={**FORWARDED, "Accept": "application/octet-stream"})
    assert answer.status_code == 200
    assert len(answer.content) == 64 * 64 * 2


def test_without_headers_urls_name_the_direct_address(proxied: ApertureServer) -> None:
    _, ids = store_study(proxied)
    retrieve, bulk = retrieve_urls(proxied, ids["study"], {})
    assert retrieve == f"{proxied.dicomweb}/studies/{ids['study']}"
    assert bulk.startswith(f"{proxied.dicomweb}/studies/{ids['study']}/")


@pytest.mark.parametrize(
    ("headers", "client_header"),
    [(FORWARDED, {"X-Forwarded-For": "203.0.113.9"}), (RFC7239, {"Forwarded": "for=203.0.113.24"})],
    ids=["x-forwarded", "rfc7239"],
)
def test_headers_from_an_untrusted_client_are_ignored(
    server: ApertureServer, headers: dict[str, str], client_header: dict[str, str]
) -> None:
    """The shared server has the default config: no trusted proxies. Neither header kind is believed."""
    _, ids = store_study(server, headers)
    retrieve, bulk = retrieve_urls(server, ids["study"], headers)
    assert retrieve == f"{server.dicomweb}/studies/{ids['study']}"
    assert bulk.startswith(f"{server.dicomweb}/studies/{ids['study']}/")
    marker = generate_uid()
    httpx.get(f"{server.url}/healthz/{marker}", headers=client_header)
    (line,) = access_lines(server, marker)
    claimed = next(iter(client_header.values())).removeprefix("for=")
    assert " 127.0.0.1 GET " in line and claimed not in line


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-Proto", "ftp"),
        ("X-Forwarded-Host", "evil.example/path"),
        ("X-Forwarded-Host", "evil example"),
        ("X-Forwarded-Prefix", "pacs"),
        ("X-Forwarded-Prefix", "/pacs/../admin"),
        ("X-Forwarded-Prefix", "//evil.example"),
        ("X-Forwarded-Prefix", "/pa cs"),
    ],
)
def test_malformed_forwarded_values_are_ignored(proxied: ApertureServer, header: str, value: str) -> None:
    with httpx.Client(base_url=proxied.dicomweb, timeout=30, headers={header: value}) as http:
        answer = http.get("/studies", params={"limit": "1"})
    assert answer.status_code == 200
    (study,) = answer.json()
    assert study["00081190"]["Value"][0].startswith(f"{proxied.dicomweb}/studies/")


def test_trailing_slash_of_the_prefix_is_dropped(proxied: ApertureServer) -> None:
    _, ids = store_study(proxied)
    retrieve, _ = retrieve_urls(proxied, ids["study"], {**FORWARDED, "X-Forwarded-Prefix": "/pacs/"})
    assert retrieve == f"{EXTERNAL}/studies/{ids['study']}"


def test_forwarded_for_names_the_client_in_the_access_log(proxied: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{proxied.url}/healthz/{marker}", headers={"X-Forwarded-For": "203.0.113.7"})
    (line,) = access_lines(proxied, marker)
    assert " 203.0.113.7 GET /healthz/" in line


def test_forwarded_for_is_read_from_the_right(proxied: ApertureServer) -> None:
    """nginx appends the address it saw; whatever the client put on the left is not believed."""
    marker = generate_uid()
    chain = "198.51.100.66, 203.0.113.8, 127.0.0.1"
    httpx.get(f"{proxied.url}/healthz/{marker}", headers={"X-Forwarded-For": chain})
    (line,) = access_lines(proxied, marker)
    assert " 203.0.113.8 GET /healthz/" in line


def test_public_url_wins_over_forwarded_headers(tmp_path: Path) -> None:
    config = '[server]\ntrusted_proxies = ["127.0.0.1"]\npublic_url = "https://pacs.example.net/imaging/"\n'
    server = start_server(tmp_path / "data", config=config)
    try:
        answer, ids = store_study(server, FORWARDED)
        assert answer["00081190"]["Value"] == [f"https://pacs.example.net/imaging/dicom-web/studies/{ids['study']}"]
        retrieve, bulk = retrieve_urls(server, ids["study"], FORWARDED)
        assert retrieve == f"https://pacs.example.net/imaging/dicom-web/studies/{ids['study']}"
        assert bulk.startswith(f"https://pacs.example.net/imaging/dicom-web/studies/{ids['study']}/")
    finally:
        server.stop()


# RFC 7239 `Forwarded`: the same trust rule, the same right-to-left reading as X-Forwarded-For.


def test_forwarded_header_shapes_metadata_urls(proxied: ApertureServer) -> None:
    _, ids = store_study(proxied)
    retrieve, bulk = retrieve_urls(proxied, ids["study"], RFC7239)
    assert retrieve == f"{EXTERNAL}/studies/{ids['study']}"
    assert bulk.startswith(f"{EXTERNAL}/studies/{ids['study']}/series/{ids['series']}/instances/{ids['sop']}/")


def test_forwarded_header_shapes_the_stow_answer(proxied: ApertureServer) -> None:
    answer, ids = store_study(proxied, {"Forwarded": 'proto=https;host="example.org"', "X-Forwarded-Prefix": "/pacs"})
    assert answer["00081190"]["Value"] == [f"{EXTERNAL}/studies/{ids['study']}"]


def test_rfc7239_for_names_the_client_in_the_access_log(proxied: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{proxied.url}/healthz/{marker}", headers={"Forwarded": "for=203.0.113.21"})
    (line,) = access_lines(proxied, marker)
    assert " 203.0.113.21 GET " in line


def test_rfc7239_for_accepts_a_quoted_ipv6_address_with_a_port(proxied: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{proxied.url}/healthz/{marker}", headers={"Forwarded": 'For="[2001:db8:cafe::17]:4711"'})
    (line,) = access_lines(proxied, marker)
    assert " 2001:db8:cafe::17 GET " in line


def test_forwarded_elements_are_read_from_the_right(proxied: ApertureServer) -> None:
    """One element per hop, over several header lines: the rightmost was written by the direct peer; each
    element whose `for` is a trusted proxy vouches for the one to its left. The first element naming an
    untrusted node is the edge proxy's: its `for` is the client, its `host`/`proto` what the client used.
    The element the client itself put on the left is not believed."""
    _, ids = store_study(proxied)
    marker = generate_uid()
    lines = [
        ("Forwarded", "for=198.51.100.66;host=evil.example;proto=http"),
        ("Forwarded", "for=203.0.113.22;host=example.org;proto=https, for=127.0.0.1;host=internal.example"),
        ("X-Forwarded-Prefix", "/pacs"),
    ]
    with httpx.Client(base_url=proxied.url, timeout=30, headers=lines) as http:
        http.get(f"/healthz/{marker}")
        found = http.get("/dicom-web/studies", params={"StudyInstanceUID": ids["study"]})
    assert found.json()[0]["00081190"]["Value"][0] == f"{EXTERNAL}/studies/{ids['study']}"
    (line,) = access_lines(proxied, marker)
    assert " 203.0.113.22 GET " in line


@pytest.mark.parametrize("node", ["_hidden", "unknown", '"_hidden:_port"'])
def test_an_obfuscated_for_keeps_the_peer_address_but_believes_its_element(proxied: ApertureServer, node: str) -> None:
    """RFC 7239 §6.2/§6.3: the client is hidden; the element was still written by the trusted peer."""
    _, ids = store_study(proxied)
    marker = generate_uid()
    headers = {"Forwarded": f"for={node};proto=https;host=example.org", "X-Forwarded-Prefix": "/pacs"}
    httpx.get(f"{proxied.url}/healthz/{marker}", headers=headers)
    retrieve, _ = retrieve_urls(proxied, ids["study"], headers)
    assert retrieve == f"{EXTERNAL}/studies/{ids['study']}"
    (line,) = access_lines(proxied, marker)
    assert " 127.0.0.1 GET " in line


def test_x_forwarded_headers_win_over_forwarded(proxied: ApertureServer) -> None:
    """Field by field: a proxy configured as docs/dicomweb.md shows sets X-Forwarded-*, and a Forwarded header a
    client sent through it must not override them. Forwarded only fills in what X-Forwarded-* does not say."""
    _, ids = store_study(proxied)
    marker = generate_uid()
    headers = {
        "Forwarded": "for=198.51.100.67;host=evil.example;proto=https",
        "X-Forwarded-Host": "example.org",
        "X-Forwarded-For": "203.0.113.23",
        "X-Forwarded-Prefix": "/pacs",
    }
    httpx.get(f"{proxied.url}/healthz/{marker}", headers=headers)
    retrieve, _ = retrieve_urls(proxied, ids["study"], headers)
    assert retrieve == f"{EXTERNAL}/studies/{ids['study']}"  # host from X-Forwarded-Host, proto from Forwarded
    (line,) = access_lines(proxied, marker)
    assert " 203.0.113.23 GET " in line


@pytest.mark.parametrize(
    "value",
    [
        'host="evil.example/path"',  # not a Host value
        "host=evil.example;host=example.org",  # a parameter twice in one element (§4: MUST NOT)
        "for=192.0.2.1:8080;host=evil.example",  # `:` is not a token character: the port needs quotes
        'for="[2001:db8::1";host=evil.example',  # unclosed bracket
        'for="2001:db8::1";host=evil.example',  # IPv6 without brackets (§6)
        'for="192.0.2.1:123456";host=evil.example',  # a port has at most 5 digits
        'for="_";host=evil.example',  # obfuscated identifier with nothing after `_`
        'host="evil.example',  # unterminated quoted string
        "host evil.example",  # no `=`
        "=evil.example",  # no parameter name
        "host=ev il.example",
        "proto=ftp",  # a scheme, but not one Aperture writes
        'for="\\";host=evil.example',  # a quoted string that is only an escaped quote: never closed
        "for=203.0.113.1;" * 2000 + "host=evil.example",  # long, and `for` repeated
        'host="\xe9vil.example"',  # obs-text is a valid quoted string, not a host
        'proto="h ttp"',
    ],
)
def test_malformed_rfc7239_values_are_ignored(proxied: ApertureServer, value: str) -> None:
    store_study(proxied)  # a study to find, whichever tests ran before
    with httpx.Client(base_url=proxied.dicomweb, timeout=30, headers={"Forwarded": value.encode("latin-1")}) as http:
        answer = http.get("/studies", params={"limit": "1"})
    assert answer.status_code == 200
    (study,) = answer.json()
    assert study["00081190"]["Value"][0].startswith(f"{proxied.dicomweb}/studies/")


def test_part_content_locations_name_the_public_url(proxied: ApertureServer) -> None:
    """Multipart parts name their resource (PS3.18 §8.6.1.2) on the URL the client used; the ETag differs
    with it, since the bytes do."""
    _, ids = store_study(proxied)
    instance = f"/studies/{ids['study']}/series/{ids['series']}/instances/{ids['sop']}"
    accept = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    with httpx.Client(base_url=proxied.dicomweb, timeout=30) as http:
        behind = http.get(f"{instance}/frames/1", headers={**accept, **RFC7239})
        direct = http.get(f"{instance}/frames/1", headers=accept)
        study = http.get(f"/studies/{ids['study']}", headers={**FORWARDED, "Accept": "multipart/related"})
    assert f"Content-Location: {EXTERNAL}{instance}/frames/1\r\n".encode() in behind.content
    assert f"Content-Location: {proxied.dicomweb}{instance}/frames/1\r\n".encode() in direct.content
    assert behind.headers["etag"] != direct.headers["etag"]
    assert f"Content-Location: {EXTERNAL}{instance}\r\n".encode() in study.content
