"""`aperture audit` as a process: filters, table and JSON output, SQLite (--data) and PostgreSQL (--config)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aperture.audit.events import AccessRecord, Action, Outcome
from aperture.audit.store import AuditStore
from aperture.store.engine import open_engine

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _fill(url: str) -> None:
    engine = open_engine(url)
    try:
        AuditStore(engine, "https://imaging.example.org").insert(
            [
                AccessRecord(Action.READ, Outcome.PERMIT, 200, T0, "viewer", "Practitioner/dr-1", "Patient/ann",
                             ("1.2.1",), "192.0.2.7", count=12, last=T0 + timedelta(seconds=40)),
                AccessRecord(Action.READ, Outcome.DENY, 403, T0 + timedelta(days=1), "viewer", "sub-9",
                             "Patient/bob", ("1.2.2",), "192.0.2.8"),
                AccessRecord(Action.SEARCH, Outcome.PERMIT, 200, T0 + timedelta(days=2), "portal", None,
                             "Patient/ann", (), "198.51.100.1"),
            ]
        )  # fmt: skip
    finally:
        engine.dispose()


def audit(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "aperture", "audit", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _json(*arguments: str) -> list[tuple[str, str, str]]:
    result = audit(*arguments, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [(e["recorded"][:10], e["action"], e["outcome"]) for e in json.loads(result.stdout)]


def test_filters_and_json_on_the_data_folders_index(tmp_path: Path) -> None:
    _fill(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    data = ("--data", str(tmp_path))
    everything = [("2026-12-03", "E", "0"), ("2026-12-02", "R", "4"), ("2026-12-01", "R", "0")]
    assert _json(*data) == everything
    assert _json(*data, "--patient", "ann") == [everything[0], everything[2]]
    assert _json(*data, "--patient", "Patient/bob") == [everything[1]]
    assert _json(*data, "--client", "viewer") == everything[1:]
    assert _json(*data, "--outcome", "deny") == [everything[1]]
    assert _json(*data, "--since", "2026-12-02") == everything[:2]
    assert _json(*data, "--until", "2026-12-02") == everything[1:]  # the whole day given
    assert _json(*data, "--since", "2026-12-02", "--until", "2026-12-02T23:00:00Z") == [everything[1]]
    assert _json(*data, "--limit", "1") == everything[:1]
    (event,) = json.loads(audit(*data, "--outcome", "deny", "--format", "json").stdout)
    assert event["resourceType"] == "AuditEvent" and event["outcomeDesc"] == "deny: HTTP 403"


def test_the_table_shows_who_what_outcome_and_the_count(tmp_path: Path) -> None:
    _fill(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    result = audit("--data", str(tmp_path), "--format", "table")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "recorded",
        "action",
        "outcome",
        "status",
        "client",
        "user",
        "patient",
        "studies",
        "count",
        "address",
    ]
    assert rows[0].split() == ["2026-12-03T09:30:00.000Z", "E", "permit", "200", "portal", "Patient/ann", "1",
                               "198.51.100.1"]  # fmt: skip
    assert rows[1].split()[1:] == ["R", "deny", "403", "viewer", "sub-9", "Patient/bob", "1.2.2", "1", "192.0.2.8"]
    assert rows[2].split()[5:] == ["Practitioner/dr-1", "Patient/ann", "1.2.1", "12", "192.0.2.7"]


def test_postgresql_index_through_the_config_file(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").create_database(f"audit_cli_{uuid.uuid4().hex[:12]}")
    _fill(url)
    config = tmp_path / "aperture.toml"
    config.write_text(f'[store]\ndatabase_url = "{url}"\n', encoding="utf-8")
    assert _json("--config", str(config), "--outcome", "permit") == [("2026-12-03", "E", "0"), ("2026-12-01", "R", "0")]


def test_a_bad_filter_or_a_folder_without_an_index_is_a_usage_error(tmp_path: Path) -> None:
    _fill(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    result = audit("--data", str(tmp_path), "--since", "yesterday")
    assert result.returncode == 2 and "aperture audit:" in result.stderr and "yesterday" in result.stderr
    result = audit("--data", str(tmp_path / "elsewhere"))
    assert result.returncode == 2 and "no index at" in result.stderr, result.stderr
    assert not (tmp_path / "elsewhere").exists()  # listing created nothing
