"""A real PostgreSQL server for the tests: Debian's `postgresql` package, started in a temporary
folder on a free local port for the test session and stopped afterwards.

Found through PATH or /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so
as root the server runs as the `nobody` user (through `runuser`). Where none can be started,
`start()` raises `Unavailable` with the reason, and the tests that need it skip with it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.helpers import free_port

RUN_AS = "nobody"


class Unavailable(Exception):
    """No PostgreSQL server could be started here; the message says why."""


def _binaries() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    raise Unavailable("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
                      "install Debian's postgresql package")


@dataclass
class PostgresServer:
    bin: Path
    folder: Path
    port: int
    user: str | None
    """Who runs the server when the tests run as root."""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    @classmethod
    def start(cls) -> PostgresServer:
        binaries = _binaries()
        user = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root, and there is no runuser to start PostgreSQL as another user")
            user = RUN_AS
        folder = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = cls(binaries, folder, free_port(), user)
        try:
            server._init_and_start()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return server

    def _init_and_start(self) -> None:
        init = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                         "--no-sync", "--no-instructions")
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        started = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                            "-l", str(self.folder / "server.log"), "-o", options)
        if started.returncode != 0:
            log_file = self.folder / "server.log"
            log = log_file.read_text(errors="replace") if log_file.exists() else ""
            raise Unavailable(f"PostgreSQL did not start: {(started.stderr + log).strip()[-800:]}")

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again on the same port."""
        done = self._run("pg_ctl", "restart", "-w", "-t", "60", "-m", "fast", "-D", str(self.data),
                         "-l", str(self.folder / "server.log"))
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart: {done.stderr.strip()[-500:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.folder, ignore_errors=True)

    async def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
