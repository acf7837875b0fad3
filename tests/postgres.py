"""A throw-away PostgreSQL cluster for the tests: Debian's server binaries, on 127.0.0.1, in a temp folder.

The index runs on SQLite by default and on PostgreSQL for scale; both are tested. The cluster is
created with `initdb` (as the `postgres` user when the tests run as root, which initdb refuses),
started with `pg_ctl` on a free port with fsync off (the tests check behaviour, not durability of
the test database), and each server under test gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.conftest import free_port

USER = "aperture"


def _binaries() -> Path:
    """The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "initdb").exists()), key=lambda p: int(p.parent.name))
    if not versions:
        raise RuntimeError(
            "PostgreSQL server binaries are missing: install the Debian package postgresql "
            "(`make install` does, as root)."
        )
    return versions[-1]


class Cluster:
    def __init__(self) -> None:
        # not under pytest's tmp folder: that is private to root, and the server may run as postgres
        self.folder = Path(tempfile.mkdtemp(prefix="aperture-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.bin = _binaries()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> Cluster:
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres").replace("+psycopg", ""), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        with psycopg.connect(self.url("postgres").replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
