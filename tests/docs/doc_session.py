"""The Python session of one documentation page (started by doc_snippets.PythonSession).

Reads blocks as JSON lines on stdin and runs each in one fresh ``__main__`` module, in order,
so that a block sees the names of the blocks before it and ``if __name__ == "__main__":``
behaves as in a script. The working directory is importable, as with ``python -c``. After
each block, one JSON line goes to the file descriptor given as the only argument:
``{"ok": true, "stdout": "..."}`` or ``{"ok": false, "error": "<traceback>"}``. Output goes
to stdout/stderr as usual; what the block printed on stdout is also sent back (for blocks
whose ``print(...)  # expected`` comments are checked).
"""

import builtins
import io
import json
import os
import sys
import traceback
import types


class Tee(io.TextIOBase):
    """sys.stdout during a block: writes go through, and are kept."""

    def __init__(self, through: io.TextIOBase) -> None:
        self.through = through
        self.kept = io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.through.write(text)

    def flush(self) -> None:
        self.through.flush()


def main() -> None:
    results = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    sys.path.insert(0, "")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    for line in sys.stdin:
        message = json.loads(line)
        # Leading newlines make tracebacks name the page's own line numbers.
        source = "\n" * int(message["line"]) + message["source"]
        answer: dict[str, object] = {"ok": True}
        real_stdout = sys.stdout
        tee = Tee(real_stdout)
        sys.stdout = tee
        try:
            code = compile(source, message["filename"], "exec")
            exec(code, module.__dict__)
        except SystemExit as stop:
            if stop.code not in (None, 0):
                answer = {"ok": False, "error": f"SystemExit({stop.code!r})"}
        except BaseException:
            answer = {"ok": False, "error": traceback.format_exc()}
        finally:
            sys.stdout = real_stdout
        answer["stdout"] = tee.kept.getvalue()
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
