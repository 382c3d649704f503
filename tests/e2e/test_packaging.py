"""The wheel carries the CLI, the migrations and the SQL files, and the README's two
commands are the ones CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_cli_migrations_and_sql(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    [wheel] = tmp_path.glob("pgjobs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "pgjobs/cli/main.py",
        "pgjobs/migrations/env.py",
        "pgjobs/migrations/script.py.mako",
        "pgjobs/migrations/versions/__init__.py",
        *(
            f"pgjobs/migrations/versions/{p.name}"
            for p in (REPO / "migrations/versions").glob("0*.py")
        ),
        "pgjobs/sql/claim.sql",
        "pgjobs/sql/rate_window.sql",
        "pgjobs/testing/plugin.py",
        "pgjobs/py.typed",
    }
    assert expected <= names, sorted(expected - names)
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "pgjobs").rglob("__init__.py")}
    missing = sorted(pkg for pkg in packages if f"{pkg}/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel (add them to pyproject's list): {missing}"
    sql_files = {f"pgjobs/sql/{p.name}" for p in (REPO / "pgjobs" / "sql").glob("*.sql")}
    assert sql_files <= names, sorted(sql_files - names)
    assert not any(n.startswith(("cli/", "migrations/", "tests/")) for n in names), (
        "no stray top-level packages"
    )
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "pgjobs = pgjobs.cli.main:main" in entry_points
    assert "pgjobs = pgjobs.testing.plugin" in entry_points


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv [^\n]+)\n```", text)


def test_readme_has_the_two_commands_and_ci_runs_the_test_one() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    run_main, run_tests = commands
    assert "pgjobs migrate" in run_main and "pgjobs info" in run_main
    assert "pytest" in run_tests
    ci = (REPO / ".ci" / "run").read_text()
    assert f'TEST_COMMAND="{run_tests}"' in ci
