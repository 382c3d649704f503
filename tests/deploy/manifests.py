"""Where deploy/k8s is, its variants rendered, and helpers to read the objects."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kustomize

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
VARIANTS = {
    "base": BASE,
    "short-jobs": K8S / "overlays" / "short-jobs",
    "long-jobs": K8S / "overlays" / "long-jobs",
}
OVERLAYS = ("short-jobs", "long-jobs")
USER_ID = 10001


@functools.cache
def _rendered(variant: str) -> tuple[Obj, ...]:
    return tuple(kustomize.render(VARIANTS[variant]))


def rendered(variant: str) -> list[Obj]:
    """A fresh copy of a variant's objects (tests may change theirs)."""
    return copy.deepcopy(list(_rendered(variant)))


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def find_all(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_templates(obj: Obj) -> Iterator[Obj]:
    """The pod templates of a workload: Deployment and Job, or a ScaledJob's Job."""
    if obj["kind"] in ("Deployment", "Job"):
        yield obj["spec"]["template"]
    elif obj["kind"] == "ScaledJob":
        yield obj["spec"]["jobTargetRef"]["template"]


def all_pod_templates(objects: list[Obj]) -> list[tuple[str, Obj]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", t) for o in objects for t in pod_templates(o)]


def option(args: list[str], *names: str) -> str | None:
    """The value of a command-line option (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name:
                assert i + 1 < len(args), f"{name} without a value in {args}"
                return args[i + 1]
            if arg.startswith(name + "=") and name.startswith("--"):
                return arg.split("=", 1)[1]
    return None


def served_queues(args: list[str]) -> list[str] | None:
    """The worker's ``-q/--queues`` (None: every queue)."""
    value = option(args, "-q", "--queues")
    return None if value is None else [q.strip() for q in value.split(",") if q.strip()]


def command_line(container: Obj) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def worker_container(obj: Obj) -> Obj:
    (template,) = pod_templates(obj)
    (container,) = template["spec"]["containers"]
    return container


def scaled_workload(objects: list[Obj], scaler: Obj) -> Obj:
    """The Deployment a ScaledObject scales, or the ScaledJob itself."""
    if scaler["kind"] == "ScaledJob":
        return scaler
    target = scaler["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    return find(objects, "Deployment", target["name"])


def scalers(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("ScaledObject", "ScaledJob")]
