"""A real pgbouncer process in transaction pooling mode, in front of a test database, and
what the tests read through it: its admin console, and the session state of every server
connection it pools.

Used by ``tests/pgbouncer/`` (its fixtures are in ``tests/pgbouncer/conftest.py``) and by the
docs tests (``tests/docs/doc_snippets.py``: a page whose blocks use ``$PGBOUNCER_DSN`` runs
behind one)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from pgjobs.testing import wait_for

#: Where Debian puts the binary (not on the PATH of every user).
SEARCH_PATH = (None, "/usr/sbin", "/usr/local/sbin")
#: pgbouncer refuses to run as root; as root it is started with `-u` as one of these.
UNPRIVILEGED_USERS = ("postgres", "nobody")
#: Server parameters pgbouncer itself keeps in step with each client (it sends `SET` for
#: them when it hands a server connection to a client that differs): not pgjobs' doing.
TRACKED_BY_PGBOUNCER = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)
#: How pgjobs is configured behind a pooler that does not track prepared statements.
PREPARE_OFF = {"PGJOBS_PREPARE_THRESHOLD": "off"}
#: The first name psycopg gives a statement it prepares on a connection.
FIRST_PREPARED_NAME = "_pg3_0"


def binary() -> str | None:
    for directory in SEARCH_PATH:
        found = shutil.which("pgbouncer", path=directory)
        if found:
            return found
    return None


def version(path: str) -> tuple[int, ...]:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    assert match, f"unexpected `pgbouncer --version` output: {out!r}"
    return tuple(int(part or 0) for part in match.groups())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """The PostgreSQL database behind the pooler, as libpq actually reached it."""

    host: str  # a directory for a Unix socket, else a host name or address
    port: int
    dbname: str
    user: str
    password: str | None

    @classmethod
    def of(cls, dsn: str) -> Target:
        # Connecting resolves what the DSN leaves to libpq's defaults (PGHOST, the socket
        # directory, PGPORT...), whichever form the DSN has.
        with psycopg.connect(dsn, autocommit=True) as conn:
            info = conn.info
            return cls(info.host, info.port, info.dbname, info.user, info.password or None)

    @property
    def unix_socket(self) -> bool:
        return self.host.startswith("/")


def run_as(target: Target) -> str | None:
    """The user pgbouncer runs as: ourselves unless we are root; as root, the owner of the
    server's socket directory (the embedded server's data directory is private to its
    user), else an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    if target.unix_socket:
        owner = pwd.getpwuid(os.stat(target.host).st_uid).pw_name
        if owner != "root":
            return owner
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    raise RuntimeError("running as root and no unprivileged user to run pgbouncer as")


@dataclass
class Bouncer:
    """One pgbouncer process; :meth:`start` returns it accepting connections."""

    target: Target
    pool_size: int = 2
    max_prepared_statements: int | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgjobs-bouncer-")))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """What clients use: the same database name and user, through the pooler."""
        return conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, dbname=self.target.dbname, user=self.target.user,
            connect_timeout=5,
        )  # fmt: skip

    @property
    def log(self) -> str:
        texts = []
        for name in ("pgbouncer.log", "stderr.log"):
            with contextlib.suppress(OSError):
                texts.append((self.workdir / name).read_text(errors="replace"))
        return "\n".join(texts)

    def config(self) -> str:
        t = self.target
        server = f"host={t.host} port={t.port} dbname={t.dbname} user={t.user}"
        if t.password:
            server += f" password={t.password}"
        lines = [
            "[databases]",
            f"{t.dbname} = {server}",
            "",
            "[pgbouncer]",
            "pool_mode = transaction",
            # Few server connections for many clients: every client of a test shares them.
            f"default_pool_size = {self.pool_size}",
            f"max_db_connections = {self.pool_size}",
            "min_pool_size = 0",
            "reserve_pool_size = 0",
            "max_client_conn = 200",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.workdir}",
            # The test server trusts its clients; pgbouncer still wants the user listed.
            "auth_type = trust",
            f"auth_file = {self.workdir / 'userlist.txt'}",
            f"admin_users = {t.user}",
            f"logfile = {self.workdir / 'pgbouncer.log'}",
            f"pidfile = {self.workdir / 'pgbouncer.pid'}",
        ]
        if self.max_prepared_statements is not None:
            lines.append(f"max_prepared_statements = {self.max_prepared_statements}")
        return "\n".join(lines) + "\n"

    def start(self, path: str, attempts: int = 3) -> Bouncer:
        user = run_as(self.target)
        (self.workdir / "userlist.txt").write_text(f'"{self.target.user}" ""\n')
        for _ in range(attempts):  # another process may take the free port first
            self.port = free_port()
            ini = self.workdir / "pgbouncer.ini"
            ini.write_text(self.config())
            if user is not None:
                uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
                for item in (self.workdir, *self.workdir.iterdir()):
                    os.chown(item, uid, gid)
            command = [path, *(("-u", user) if user else ()), str(ini)]
            with open(self.workdir / "stderr.log", "ab") as stderr:
                self.process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.workdir
                )
            try:
                wait_for(
                    self._ready, timeout=10, message=lambda: f"pgbouncer not ready:\n{self.log}"
                )
                return self
            except _Exited:
                continue
        raise RuntimeError(f"pgbouncer did not start:\n{self.log}")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise _Exited
        try:
            self.show("SHOW VERSION")
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: immediate shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the admin console --------------------------------------------------------------

    def show(self, command: str) -> list[dict[str, Any]]:
        """``SHOW ...`` on the admin console (simple query protocol: a client cursor)."""
        admin = conninfo.make_conninfo(self.dsn, dbname="pgbouncer")
        with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(command)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def server_pids(self) -> set[int]:
        """Backend pids of the server connections pooled for the test database."""
        return {
            int(row["remote_pid"])
            for row in self.show("SHOW SERVERS")
            if row["database"] == self.target.dbname and row["remote_pid"]
        }

    def clients(self) -> list[dict[str, Any]]:
        return [row for row in self.show("SHOW CLIENTS") if row["database"] == self.target.dbname]


class _Exited(Exception):
    """pgbouncer exited while starting (e.g. its port was taken meanwhile)."""


# --- session state of pooled server connections ----------------------------------------------


@dataclass(frozen=True)
class Session:
    """What one server connection carries from one transaction to the next."""

    pid: int
    prepared: tuple[str, ...]
    listening: tuple[str, ...]
    #: Parameters set for the session (`SET` outside a transaction, `set_config(..., false)`),
    #: except those pgbouncer keeps in step itself.
    settings: tuple[tuple[str, str], ...]
    temp_tables: int
    advisory_locks: int
    #: Whether a client that prepares statements, as psycopg does by default, can prepare
    #: its first one here (a name left by another client would make it fail).
    first_prepare_ok: bool


STATE_QUERIES = {
    "pid": "SELECT pg_backend_pid()",
    "prepared": "SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM pg_prepared_statements",
    "listening": "SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM pg_listening_channels() AS c",
    "settings": "SELECT coalesce(array_agg(array[lower(name), setting] ORDER BY name), '{}')"
    " FROM pg_settings WHERE source = 'session'",
    "temp_tables": "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
    "advisory_locks": "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid() AND granted",
}


def _state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, query in STATE_QUERIES.items():
        row = conn.execute(query).fetchone()
        assert row is not None
        values[key] = row[0]
    settings = tuple(
        (name, setting) for name, setting in values["settings"] if name not in TRACKED_BY_PGBOUNCER
    )
    return {**values, "settings": settings}


def _probe_first_prepare(conn: psycopg.Connection[Any]) -> bool:
    """Prepare one statement under psycopg's first name, and drop it again (the probe must
    not leave state behind itself)."""
    conn.prepare_threshold = 0  # None would ignore prepare=True
    try:
        with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
            conn.execute("SELECT 1", prepare=True)
    except psycopg.errors.DuplicatePreparedStatement:
        return False
    finally:
        conn.prepare_threshold = None
    conn.execute(f'DEALLOCATE "{FIRST_PREPARED_NAME}"')
    return True


@contextlib.contextmanager
def _pinned(dsn: str, count: int) -> Iterator[list[psycopg.Connection[Any]]]:
    """``count`` clients of the pooler, each inside a transaction, so that each holds a
    different server connection until they roll back."""
    conns: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(count):
            conn = psycopg.connect(
                dsn, autocommit=False, prepare_threshold=None, application_name="inspector"
            )
            conns.append(conn)
            conn.execute("SELECT 1")  # takes a server connection for the transaction
        yield conns
    finally:
        for conn in conns:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            conn.close()


def pooled_sessions(bouncer: Bouncer) -> dict[int, Session]:
    """The session state of every server connection of the pool, read through pgbouncer by
    clients that each hold one of them (as many clients as the pool has room for)."""
    sessions: dict[int, Session] = {}
    with _pinned(bouncer.dsn, bouncer.pool_size) as conns:
        for conn in conns:
            state = _state(conn)
            sessions[state["pid"]] = Session(
                pid=state["pid"], prepared=tuple(state["prepared"]),
                listening=tuple(state["listening"]), settings=state["settings"],
                temp_tables=state["temp_tables"], advisory_locks=state["advisory_locks"],
                first_prepare_ok=_probe_first_prepare(conn),
            )  # fmt: skip
    return sessions


def clean(sessions: dict[int, Session], baseline_settings: tuple[tuple[str, str], ...] = ()) -> str:
    """'' when no session carries state, else what each one carries."""
    problems = []
    for session in sessions.values():
        found = {
            "prepared statements": session.prepared,
            "LISTEN channels": session.listening,
            "session settings": tuple(s for s in session.settings if s not in baseline_settings),
            "temporary tables": session.temp_tables,
            "advisory locks": session.advisory_locks,
            "psycopg's first prepared name taken": not session.first_prepare_ok,
        }
        problems += [f"backend {session.pid}: {what}: {v}" for what, v in found.items() if v]
    return "\n".join(problems)


def held_advisory_locks(direct: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Advisory locks held by backends of this database that are between transactions:
    the server-side view, whoever connected them (pooled or not)."""
    return direct.execute(
        "SELECT l.pid, l.classid, l.objid, a.application_name, a.state"
        "  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        "   AND a.state = 'idle'"
    ).fetchall()


def backend_states(direct: psycopg.Connection[Any], pids: set[int]) -> dict[int, str]:
    rows = direct.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
    ).fetchall()
    return dict(rows)
