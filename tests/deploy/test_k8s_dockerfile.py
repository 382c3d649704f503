"""deploy/Dockerfile (parsed, not built: no image registry is reachable here): it installs
pgjobs with exactly the README's install command, runs as the non-root user the manifests
expect, puts ``pgjobs`` on the PATH, and builds the image name the manifests and the docs
use."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from kustomize import containers
from manifests import REPO, USER_ID, VARIANTS, all_pod_templates, rendered

DOCKERFILE = REPO / "deploy" / "Dockerfile"
README = REPO / "README.md"
DOCS = REPO / "docs" / "kubernetes.md"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, argument = whole.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(argument.split())))
    assert not pending, "a continuation line ends the file"
    return result


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction.keyword == "FROM":
            found.append([])
        assert found, "instructions before FROM"
        found[-1].append(instruction)
    return found


def readme_install_command() -> str:
    """The install part of the README's main command: its first bash block's
    ``python3 -m venv`` line, up to and including the ``.venv/bin/pip install``."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash block"
    (line,) = [ln for ln in block.group(1).splitlines() if ln.startswith("python3 -m venv")]
    parts = line.split(" && ")
    install = [i for i, part in enumerate(parts) if part.startswith(".venv/bin/pip install")]
    assert install, f"no .venv/bin/pip install in {line!r}"
    return " && ".join(parts[: install[0] + 1])


def test_the_readme_install_command_is_the_expected_one() -> None:
    assert readme_install_command() == "python3 -m venv .venv && .venv/bin/pip install -q ."


def test_the_image_installs_with_exactly_the_readme_command() -> None:
    runs = [i.argument for i in instructions(DOCKERFILE.read_text()) if i.keyword == "RUN"]
    assert readme_install_command() in runs


def test_the_image_runs_pgjobs_as_the_manifests_non_root_user() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    froms = [i.argument.split()[0] for i in parsed if i.keyword == "FROM"]
    assert froms and all(image == "python:3.11-slim" for image in froms), froms
    final = stages(parsed)[-1]
    (user,) = [i.argument for i in final if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == USER_ID != 0, "numeric, so runAsNonRoot can check it"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    workdir = [i.argument for i in final if i.keyword == "WORKDIR"]
    assert workdir[-1] == "/app"
    env = " ".join(i.argument for i in final if i.keyword == "ENV")
    assert re.search(r"\bPATH=/app/\.venv/bin:\$PATH\b", env), env
    # The build stage made /app/.venv where the scripts' shebangs expect it.
    assert "--from=build /app/.venv /app/.venv" in [
        i.argument for i in final if i.keyword == "COPY"
    ]
    (entrypoint,) = [i.argument for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == '["pgjobs"]'
    for variant in VARIANTS:
        for where, template in all_pod_templates(rendered(variant)):
            assert template["spec"]["securityContext"]["runAsUser"] == int(uid), where
            for container in template["spec"]["containers"]:
                assert container["command"] == ["pgjobs"], where


def test_the_build_context_leaves_the_local_virtualenv_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_docs_build_the_image_the_manifests_run() -> None:
    text = DOCS.read_text(encoding="utf-8")
    builds = [
        shlex.split(line.strip())
        for line in text.splitlines()
        if line.strip().startswith("docker build ")
    ]
    assert builds, "docs/kubernetes.md shows no docker build command"
    for words in builds:
        assert words[words.index("-f") + 1] == "deploy/Dockerfile"
        assert words[-1] == "."
        tag = words[words.index("-t") + 1]
        for variant in VARIANTS:
            images = {c["image"] for o in rendered(variant) for c in containers(o)}
            assert images == {tag}, variant
