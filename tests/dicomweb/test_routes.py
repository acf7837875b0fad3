"""A method a DICOMweb path does not serve is 405, and `Allow` lists every method the path serves."""

from __future__ import annotations

import httpx
import pytest

UIDS = "/studies/1.2.3/series/1.2.4/instances/1.2.5"
SERVED = {
    "/studies": {"GET", "HEAD", "POST"},
    "/series": {"GET", "HEAD"},
    "/instances": {"GET", "HEAD"},
    "/studies/1.2.3": {"GET", "HEAD", "POST", "DELETE"},
    "/studies/1.2.3/metadata": {"GET", "HEAD"},
    "/studies/1.2.3/series": {"GET", "HEAD"},
    "/studies/1.2.3/instances": {"GET", "HEAD"},
    "/studies/1.2.3/rendered": {"GET", "HEAD"},
    "/studies/1.2.3/thumbnail": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4": {"GET", "HEAD", "DELETE"},
    "/studies/1.2.3/series/1.2.4/metadata": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/instances": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/rendered": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/thumbnail": {"GET", "HEAD"},
    UIDS: {"GET", "HEAD", "DELETE"},
    f"{UIDS}/metadata": {"GET", "HEAD"},
    f"{UIDS}/rendered": {"GET", "HEAD"},
    f"{UIDS}/thumbnail": {"GET", "HEAD"},
    f"{UIDS}/frames/1": {"GET", "HEAD"},
    f"{UIDS}/frames/1/rendered": {"GET", "HEAD"},
    f"{UIDS}/frames/1/thumbnail": {"GET", "HEAD"},
    f"{UIDS}/bulkdata/7FE00010": {"GET", "HEAD"},
}


@pytest.mark.parametrize("path", SERVED)
def test_allow_lists_every_method_the_path_serves(client: httpx.Client, path: str) -> None:
    for method in {"PUT", "PATCH", "POST", "DELETE"} - SERVED[path]:
        answer = client.request(method, path)
        assert answer.status_code == 405, (method, answer.text)
        allowed = {m.strip() for m in answer.headers["allow"].split(",")}
        assert allowed == SERVED[path], (method, answer.headers["allow"])
        assert answer.json()["status"] == 405


def test_post_and_delete_still_reach_their_endpoints(client: httpx.Client) -> None:
    answer = client.post("/studies", content=b"x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415, answer.text
    assert client.head("/studies").status_code == 200
    assert client.delete("/studies/1.2.3").status_code == 404  # the shared server allows delete
