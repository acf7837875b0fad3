"""Six clients storing the same study at once, against two worker processes, end with one copy of it."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import database_config, start_server
from tests.helpers import make_instance, sequence_items, stow


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_six_clients_store_the_same_study_concurrently(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    config = "[server]\nworkers = 2\n" + database_config(request, backend, "concurrency")
    srv = start_server(tmp_path / "data", config=config)
    try:
        study, series = generate_uid(), generate_uid()
        parts = [make_instance(study=study, series=series, instance_number=n) for n in range(300)]
        batches = [parts[i : i + 50] for i in range(0, len(parts), 50)]
        results: list[tuple[int, int, int]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def client(offset: int) -> None:
            try:
                with httpx.Client(base_url=srv.dicomweb, timeout=120) as http:
                    start.wait()
                    for batch in batches[offset:] + batches[:offset]:  # each client in another order
                        response = stow(http, batch)
                        answer = response.json()
                        results.append(
                            (response.status_code, len(sequence_items(answer, "00081199")),
                             len(sequence_items(answer, "00081198")))
                        )  # fmt: skip
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert len(results) == 36
        assert all(status == 200 and ok == 50 and failed == 0 for status, ok, failed in results), results
        with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
            studies = http.get("/studies", params={"StudyInstanceUID": study}).json()
            assert len(studies) == 1
            assert studies[0]["00201206"]["Value"] == [1]
            assert studies[0]["00201208"]["Value"] == [300]
            assert len(http.get(f"/studies/{study}/series").json()) == 1
            assert len(http.get(f"/studies/{study}/instances").json()) == 300
        assert len(list((srv.data / "blobs").rglob("*.dcm"))) == 300, "duplicate uploads leave no files behind"
    finally:
        srv.stop()
