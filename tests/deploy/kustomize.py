"""A small kustomize, enough for deploy/k8s, so the tests need no binary.

It renders a kustomization directory to a list of objects the way ``kubectl kustomize``
does (tests/deploy/test_k8s_render.py compares the two when kubectl is installed), for
exactly the features the tree uses, and refuses the rest loudly rather than guess:

- ``resources``: YAML files (several documents each) and directories holding a
  kustomization, rendered first and then transformed by the including kustomization;
- ``patches`` with an inline ``patch`` and a ``target`` (group, version, kind, name): a
  strategic-merge patch that is ``$patch: delete`` (removes the targets) or a plain map
  merge (lists replaced whole, ``null`` deletes a key: what kustomize does for custom
  resources; a list inside a patch of a built-in kind is refused, as its strategic list
  merge is not implemented here), or a JSON 6902 patch (``add``, ``replace``, ``remove``);
- ``namespace``; ``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``) and
  ``commonLabels``; ``images`` (``newName``, ``newTag``, ``digest``) applied to every
  ``containers`` and ``initContainers`` list in an object, custom resources included.

Transformers run in kustomize's order: patches, namespace, labels, images.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_FIELDS = {
    "apiVersion", "kind", "resources", "patches", "namespace", "labels", "commonLabels",
    "images",
}  # fmt: skip
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ClusterTriggerAuthentication",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
}  # fmt: skip
BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "networking.k8s.io", "autoscaling"}

# Where kustomize puts labels besides metadata.labels (its built-in field specs, for the
# kinds that can appear here): (kind, path, create).
SELECTOR_PATHS = [
    ("Service", ("spec", "selector"), True),
    ("Deployment", ("spec", "selector", "matchLabels"), True),
    ("ReplicaSet", ("spec", "selector", "matchLabels"), True),
    ("DaemonSet", ("spec", "selector", "matchLabels"), True),
    ("StatefulSet", ("spec", "selector", "matchLabels"), True),
    ("Job", ("spec", "selector", "matchLabels"), False),
    ("CronJob", ("spec", "jobTemplate", "spec", "selector", "matchLabels"), False),
    ("PodDisruptionBudget", ("spec", "selector", "matchLabels"), False),
]
TEMPLATE_PATHS = [
    ("Deployment", ("spec", "template", "metadata", "labels"), True),
    ("ReplicaSet", ("spec", "template", "metadata", "labels"), True),
    ("DaemonSet", ("spec", "template", "metadata", "labels"), True),
    ("StatefulSet", ("spec", "template", "metadata", "labels"), True),
    ("Job", ("spec", "template", "metadata", "labels"), True),
    ("CronJob", ("spec", "jobTemplate", "metadata", "labels"), True),
    ("CronJob", ("spec", "jobTemplate", "spec", "template", "metadata", "labels"), True),
]


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not do, or is broken."""


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def render(directory: str | Path) -> list[Obj]:
    """The objects ``kubectl kustomize DIRECTORY`` would print (order aside)."""
    directory = Path(directory)
    (spec,) = load_documents(kustomization_file(directory))
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources") or []:
        if Path(entry).is_absolute():
            raise KustomizeError(f"{directory}: resource {entry!r}: paths must be relative")
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(copy.deepcopy(load_documents(path)))
        else:
            raise KustomizeError(f"{directory}: resource {entry!r} not found")
    seen: set[tuple[str, str, str, str | None]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} is defined twice")
        seen.add(key)
    for patch in spec.get("patches") or []:
        objects = apply_patch(objects, patch, directory)
    if "namespace" in spec:
        set_namespace(objects, spec["namespace"])
    for entry in spec.get("labels") or []:
        add_labels(
            objects,
            entry.get("pairs") or {},
            selectors=bool(entry.get("includeSelectors", False)),
            templates=bool(entry.get("includeTemplates", False)),
        )
    if spec.get("commonLabels"):
        add_labels(objects, spec["commonLabels"], selectors=True, templates=True)
    for image in spec.get("images") or []:
        for obj in objects:
            set_image(obj, image)
    return objects


def identity(obj: Obj) -> tuple[str, str, str, str | None]:
    metadata = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), metadata.get("name", ""),
            metadata.get("namespace"))  # fmt: skip


def group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# --- patches ------------------------------------------------------------------------------


def apply_patch(objects: list[Obj], entry: Obj, directory: Path) -> list[Obj]:
    if "path" in entry:
        raise KustomizeError(f"{directory}: patch files are not supported (inline patches only)")
    text = entry.get("patch")
    if not isinstance(text, str):
        raise KustomizeError(f"{directory}: a patch entry needs an inline 'patch'")
    extra = set(entry) - {"patch", "target"}
    if extra:
        raise KustomizeError(f"{directory}: unsupported patch fields {sorted(extra)}")
    body = yaml.safe_load(text)
    target = entry.get("target")
    if isinstance(body, list):
        if not target:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
        matched = [obj for obj in objects if matches(obj, target)]
        if not matched:
            raise KustomizeError(f"{directory}: no resource matches {target}")
        for obj in matched:
            json6902(obj, body)
        return objects
    if not isinstance(body, dict):
        raise KustomizeError(f"{directory}: a patch must be a map or a list of operations")
    if not target:
        group, version = group_version(body.get("apiVersion", ""))
        target = {"group": group, "version": version, "kind": body.get("kind"),
                  "name": (body.get("metadata") or {}).get("name")}  # fmt: skip
    matched = [obj for obj in objects if matches(obj, target)]
    if not matched:
        raise KustomizeError(f"{directory}: no resource matches {target}")
    if body.get("$patch") == "delete":
        return [obj for obj in objects if not any(obj is m for m in matched)]
    if "$patch" in body:
        raise KustomizeError(f"{directory}: unsupported $patch: {body['$patch']!r}")
    for obj in matched:
        if group_version(obj["apiVersion"])[0] in BUILT_IN_GROUPS and contains_list(body):
            raise KustomizeError(
                f"{directory}: strategic list merges on built-in kinds are not implemented; "
                "use a JSON 6902 patch"
            )
        merged = merge(obj, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
        obj.clear()
        obj.update(merged)
    return objects


def matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise KustomizeError(f"unsupported target selectors {sorted(unknown)}")
    group, version = group_version(obj.get("apiVersion", ""))
    metadata = obj.get("metadata") or {}
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind", ""),
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace") or "",
    }
    for field, actual in checks.items():
        wanted = target.get(field)
        if wanted is None:
            continue
        if field in ("name", "namespace"):  # kustomize takes these as anchored regexps
            if not re.fullmatch(str(wanted), actual):
                return False
        elif str(wanted) != actual:
            return False
    return True


def contains_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    if isinstance(value, dict):
        return any(contains_list(v) for v in value.values())
    return False


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): maps merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(base.get(key), value)
    return result


def json6902(obj: Obj, operations: list[Obj]) -> None:
    for operation in operations:
        op = operation.get("op")
        tokens = pointer(operation.get("path", ""))
        if not tokens:
            raise KustomizeError("a JSON patch on the whole document is not supported")
        parent = walk(obj, tokens[:-1])
        last = tokens[-1]
        if op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    parent.insert(index(parent, last, inclusive=True), value)
            else:
                parent[last] = value
        elif op == "replace":
            if isinstance(parent, list):
                parent[index(parent, last)] = copy.deepcopy(operation["value"])
            else:
                if last not in parent:
                    raise KustomizeError(f"replace: {operation['path']} does not exist")
                parent[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            if isinstance(parent, list):
                del parent[index(parent, last)]
            else:
                if last not in parent:
                    raise KustomizeError(f"remove: {operation['path']} does not exist")
                del parent[last]
        else:
            raise KustomizeError(f"unsupported JSON patch operation {op!r}")


def pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def walk(obj: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(obj, list):
            obj = obj[index(obj, token)]
        elif isinstance(obj, dict) and token in obj:
            obj = obj[token]
        else:
            raise KustomizeError(f"JSON pointer: no {token!r} here")
    return obj


def index(items: list[Any], token: str, *, inclusive: bool = False) -> int:
    if not token.isdigit():
        raise KustomizeError(f"JSON pointer: {token!r} is not a list index")
    position = int(token)
    if position > len(items) or (position == len(items) and not inclusive):
        raise KustomizeError(f"JSON pointer: index {position} out of range")
    return position


# --- namespace, labels, images ------------------------------------------------------------


def set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace


def add_labels(
    objects: list[Obj], pairs: dict[str, str], *, selectors: bool, templates: bool
) -> None:
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        specs = (SELECTOR_PATHS if selectors else []) + (
            TEMPLATE_PATHS if selectors or templates else []
        )
        for kind, path, create in specs:
            if obj.get("kind") == kind:
                place(obj, path, pairs, create=create)


def place(obj: Obj, path: tuple[str, ...], pairs: dict[str, str], *, create: bool) -> None:
    node = obj
    for key in path:
        if key not in node or node[key] is None:
            if not create:
                return
            node[key] = {}
        node = node[key]
    node.update(pairs)


def containers(node: Any) -> Iterator[Obj]:
    """Every container of an object, wherever its pod template is (CRDs included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


IMAGE = re.compile(
    r"^(?P<name>.+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]+))?$"
)


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]``; a registry port (``host:5000/x``) is part of the name."""
    match = IMAGE.match(reference)
    if not match or "/" in (match.group("tag") or ""):
        return reference, None, None
    return match.group("name"), match.group("tag"), match.group("digest")


def set_image(obj: Obj, image: Obj) -> None:
    for container in containers(obj):
        reference = container.get("image")
        if not isinstance(reference, str):
            continue
        name, tag, digest = split_image(reference)
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            suffix = f":{tag}" if tag else ""
            suffix += f"@{digest}" if digest else ""
            container["image"] = name + suffix
