"""deploy/k8s renders: the base and both overlays, with the objects each should have, from
complete YAML objects and inline patches only; the Python renderer agrees with
``kubectl kustomize`` wherever kubectl is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import kustomize
import pytest
import yaml
from manifests import BASE, K8S, OVERLAYS, SECRET_EXAMPLE, VARIANTS, Obj, rendered

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

WORKER = ("Deployment", "pgjobs-worker")
SCALED_OBJECT = ("ScaledObject", "pgjobs-worker")
SCALED_JOB = ("ScaledJob", "pgjobs-long-jobs")
COMMON = {
    ("ServiceAccount", "pgjobs"),
    ("Job", "pgjobs-migrate"),
    ("TriggerAuthentication", "pgjobs-keda"),
    ("Deployment", "pgjobs-api"),
    ("Service", "pgjobs-api"),
}
EXPECTED = {
    "base": COMMON | {WORKER, SCALED_OBJECT, SCALED_JOB},
    "short-jobs": COMMON | {WORKER, SCALED_OBJECT},
    "long-jobs": COMMON | {SCALED_JOB},
}


def kinds_and_names(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def kubectl_kustomize(directory: Path) -> list[Obj]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_identity(objects: list[Obj]) -> dict[tuple[str, str, str, str | None], Obj]:
    return {kustomize.identity(o): o for o in objects}


def test_every_yaml_file_is_a_complete_object_or_a_kustomization() -> None:
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    assert len(files) >= 10, files
    for path in files:
        documents = kustomize.load_documents(path)
        assert documents, f"{path}: empty"
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            (spec,) = documents
            assert spec.get("apiVersion") == "kustomize.config.k8s.io/v1beta1", path
            assert spec.get("kind") == "Kustomization", path
            continue
        for doc in documents:
            assert isinstance(doc, dict), f"{path}: not a mapping"
            for field in ("apiVersion", "kind"):
                assert isinstance(doc.get(field), str) and doc[field], f"{path}: no {field}"
            name = (doc.get("metadata") or {}).get("name")
            assert isinstance(name, str) and name, f"{path}: no metadata.name"


def test_the_base_lists_every_manifest_but_the_example_secret() -> None:
    spec = kustomize.load_documents(BASE / "kustomization.yaml")[0]
    listed = set(spec["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == {SECRET_EXAMPLE.name}
    assert listed <= present


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_renders_the_expected_objects(variant: str) -> None:
    objects = rendered(variant)
    assert kinds_and_names(objects) == EXPECTED[variant]
    assert not [o for o in objects if o["kind"] == "Secret"], "the example Secret stays out"
    for obj in objects:
        assert "namespace" not in obj["metadata"], "the base is namespace-agnostic"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pgjobs"


@pytest.mark.parametrize("variant", OVERLAYS)
def test_overlays_change_the_base_with_inline_patches_only(variant: str) -> None:
    directory = VARIANTS[variant]
    assert sorted(p.name for p in directory.iterdir()) == ["kustomization.yaml"]
    (spec,) = kustomize.load_documents(directory / "kustomization.yaml")
    assert spec["resources"] == ["../../base"]
    assert spec["patches"]
    for entry in spec["patches"]:
        assert set(entry) == {"patch", "target"}, entry
        assert isinstance(entry["patch"], str)
        assert {"kind", "name"} <= set(entry["target"])


def test_images_are_set_by_kustomize_in_the_base() -> None:
    (spec,) = kustomize.load_documents(BASE / "kustomization.yaml")
    assert spec["images"] == [{"name": "pgjobs", "newName": "pgjobs", "newTag": "latest"}]
    raw = [doc for path in BASE.glob("*.yaml") for doc in kustomize.load_documents(path)]
    assert {c["image"] for doc in raw for c in kustomize.containers(doc)} == {"pgjobs"}
    for variant in VARIANTS:
        images = {c["image"] for o in rendered(variant) for c in kustomize.containers(o)}
        assert images == {"pgjobs:latest"}, variant


def test_an_overlay_of_an_overlay_can_retag_and_set_a_namespace(tmp_path: Path) -> None:
    overlay = tmp_path / "production"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: jobs
            resources:
              - {os.path.relpath(VARIANTS["long-jobs"], overlay)}
            images:
              - name: pgjobs
                newName: registry.example.com/team/pgjobs
                newTag: "0.2.0"
            """)
    )
    objects = kustomize.render(overlay)
    assert kinds_and_names(objects) == EXPECTED["long-jobs"]
    assert {o["metadata"]["namespace"] for o in objects} == {"jobs"}
    images = {c["image"] for o in objects for c in kustomize.containers(o)}
    assert images == {"registry.example.com/team/pgjobs:0.2.0"}
    if KUBECTL:
        assert by_identity(objects) == by_identity(kubectl_kustomize(overlay))


def test_json6902_add_replace_remove(tmp_path: Path) -> None:
    overlay = tmp_path / "tuned"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - {os.path.relpath(VARIANTS["short-jobs"], overlay)}
            patches:
              - target:
                  kind: Deployment
                  name: pgjobs-worker
                patch: |-
                  - op: add
                    path: /spec/template/spec/containers/0/env/-
                    value: {{name: TZ, value: UTC}}
                  - op: add
                    path: /spec/template/spec/containers/0/args/1
                    value: --quiet-jobs
                  - op: remove
                    path: /spec/template/spec/containers/0/readinessProbe
                  - op: replace
                    path: /spec/template/metadata/labels/app.kubernetes.io~1part-of
                    value: jobs
            """)
    )
    objects = kustomize.render(overlay)
    worker = next(o for o in objects if (o["kind"], o["metadata"]["name"]) == WORKER)
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][-1] == {"name": "TZ", "value": "UTC"}
    assert container["args"][:3] == ["worker", "--quiet-jobs", "--app"]
    assert "readinessProbe" not in container
    assert worker["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "jobs"
    if KUBECTL:
        assert by_identity(objects) == by_identity(kubectl_kustomize(overlay))


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    overlay = tmp_path / "merge"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - {os.path.relpath(BASE, overlay)}
            patches:
              - patch: |-
                  apiVersion: apps/v1
                  kind: Deployment
                  metadata:
                    name: pgjobs-worker
                  spec:
                    template:
                      spec:
                        containers:
                          - name: worker
                            image: other
            """)
    )
    with pytest.raises(kustomize.KustomizeError, match="strategic list merges"):
        kustomize.render(overlay)


@needs_kubectl
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_renderer_agrees_with_kubectl_kustomize(variant: str) -> None:
    mine = by_identity(rendered(variant))
    theirs = by_identity(kubectl_kustomize(VARIANTS[variant]))
    assert sorted(mine, key=str) == sorted(theirs, key=str)
    for key, obj in mine.items():
        assert obj == theirs[key], key
