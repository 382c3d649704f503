"""What the manifests promise, checked on every rendered variant: hardened pods, graceful
termination longer than the worker's --grace, probes on the health file, the DSN from the
Secret, KEDA wired to the right workload and credentials, the ScaledJob's one job per pod,
and every reference (Secret keys, volumes, service account, selectors) resolving."""

from __future__ import annotations

import pytest
from kustomize import load_documents
from manifests import (
    SECRET_EXAMPLE,
    USER_ID,
    VARIANTS,
    Obj,
    all_pod_templates,
    command_line,
    find,
    find_all,
    option,
    rendered,
    scaled_workload,
    scalers,
    worker_container,
)

from pgjobs.durations import parse_duration

SECRET_NAME = "pgjobs"
SECRET_KEYS = set(load_documents(SECRET_EXAMPLE)[0]["stringData"])
HEALTH_FILE = "/run/pgjobs/health"

variants = pytest.mark.parametrize("variant", list(VARIANTS))


def workers(objects: list[Obj]) -> list[Obj]:
    """The objects whose pods run ``pgjobs worker``."""
    return [o for o in objects if o["kind"] in ("Deployment", "ScaledJob")
            and command_line(worker_container(o))[:2] == ["pgjobs", "worker"]]  # fmt: skip


@variants
def test_every_pod_is_hardened(variant: str) -> None:
    templates = all_pod_templates(rendered(variant))
    assert len(templates) >= 3
    for where, template in templates:
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == USER_ID, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["serviceAccountName"] == "pgjobs", where
        assert spec["automountServiceAccountToken"] is False, where
        mounts_needed = {v["name"] for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a writable /tmp on a read-only root"
            assert set(mounts.values()) <= mounts_needed, where
        for volume in spec.get("volumes", []):
            assert set(volume) == {"name", "emptyDir"}, f"{where}: only scratch volumes"


@variants
def test_the_dsn_and_tokens_come_from_the_secret(variant: str) -> None:
    for where, template in all_pod_templates(rendered(variant)):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["PGJOBS_DSN"]["valueFrom"]["secretKeyRef"] == {
                "name": SECRET_NAME,
                "key": "dsn",
            }, where
            assert env["PGJOBS_SCHEMA"]["value"] == "pgjobs", where
            for variable in env.values():
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["name"] == SECRET_NAME, where
                    assert reference["key"] in SECRET_KEYS, where


@variants
def test_workers_stop_gracefully_and_are_probed_through_the_health_file(variant: str) -> None:
    found = workers(rendered(variant))
    assert found
    for obj in found:
        (template,) = [t for _, t in all_pod_templates([obj])]
        spec = template["spec"]
        container = worker_container(obj)
        args = command_line(container)
        grace = parse_duration(option(args, "--grace") or "30s").total_seconds()
        assert spec["terminationGracePeriodSeconds"] > grace + 5, obj["metadata"]["name"]
        assert option(args, "--app") == "myapp.tasks"
        assert option(args, "--health-file") == HEALTH_FILE
        live = ["pgjobs", "health", "--file", HEALTH_FILE]
        assert container["livenessProbe"]["exec"]["command"] == live
        assert container["startupProbe"]["exec"]["command"] == live
        if obj["kind"] == "Deployment":
            assert container["readinessProbe"]["exec"]["command"] == [*live, "--ready"]
        # The health file's directory is a scratch volume (the root file system is read-only).
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/run/pgjobs"]]


@variants
def test_keda_scales_the_workers_with_the_scaler_role(variant: str) -> None:
    objects = rendered(variant)
    found = scalers(objects)
    assert found
    auths = {a["metadata"]["name"]: a for a in find_all(objects, "TriggerAuthentication")}
    for scaler in found:
        spec = scaler["spec"]
        workload = scaled_workload(objects, scaler)
        assert workload in workers(objects)
        assert spec["pollingInterval"] <= 30
        assert spec["maxReplicaCount"] >= 1
        for trigger in spec["triggers"]:
            assert trigger["type"] == "postgresql"
            assert {"query", "targetQueryValue", "activationTargetQueryValue"} <= set(
                trigger["metadata"]
            )
            auth = auths[trigger["authenticationRef"]["name"]]
            (ref,) = auth["spec"]["secretTargetRef"]
            assert ref == {"parameter": "connection", "name": SECRET_NAME, "key": "keda-dsn"}
            assert ref["key"] in SECRET_KEYS


@pytest.mark.parametrize("variant", ["base", "short-jobs"])
def test_the_scaled_object_scales_from_zero_on_demand(variant: str) -> None:
    objects = rendered(variant)
    scaler = find(objects, "ScaledObject")
    spec = scaler["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["cooldownPeriod"] > 0
    deployment = scaled_workload(objects, scaler)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    demand, *optional = spec["triggers"]
    assert "pgjobs.demand(" in demand["metadata"]["query"]
    assert demand.get("metricType", "AverageValue") == "AverageValue"
    # One pod takes --concurrency jobs at once: that is the target per pod.
    args = command_line(worker_container(deployment))
    assert demand["metadata"]["targetQueryValue"] == option(args, "--concurrency", "-c")
    for trigger in optional:
        assert "pgjobs.oldest_ready_age(" in trigger["metadata"]["query"]
        assert trigger["metricType"] == "Value"


@pytest.mark.parametrize("variant", ["base", "long-jobs"])
def test_the_scaled_job_runs_one_job_per_pod_on_backlog(variant: str) -> None:
    objects = rendered(variant)
    scaler = find(objects, "ScaledJob")
    spec = scaler["spec"]
    job = spec["jobTargetRef"]
    assert job["backoffLimit"] >= 1
    assert job["activeDeadlineSeconds"] >= 3600
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["scalingStrategy"]["strategy"] == "accurate"
    assert spec["rollout"]["strategy"] == "gradual", "updates must not kill running long jobs"
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    args = command_line(worker_container(scaler))
    assert option(args, "--max-jobs") == "1"
    (trigger,) = spec["triggers"]
    assert "pgjobs.backlog(" in trigger["metadata"]["query"]
    assert trigger["metadata"]["targetQueryValue"] == "1"


@variants
def test_migration_job_and_http_api(variant: str) -> None:
    objects = rendered(variant)
    migrate = find(objects, "Job", "pgjobs-migrate")
    (container,) = migrate["spec"]["template"]["spec"]["containers"]
    assert command_line(container) == ["pgjobs", "migrate"]
    assert migrate["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert migrate["spec"]["backoffLimit"] >= 1

    api = find(objects, "Deployment", "pgjobs-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert command_line(container) == ["pgjobs", "serve", "--host", "0.0.0.0", "--port", "8000"]
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 8000, "protocol": "TCP"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    assert env["PGJOBS_API_TOKENS"]["valueFrom"]["secretKeyRef"]["key"] == "api-tokens"

    service = find(objects, "Service", "pgjobs-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == "http"


@variants
def test_selectors_and_accounts_resolve(variant: str) -> None:
    objects = rendered(variant)
    accounts = {a["metadata"]["name"]: a for a in find_all(objects, "ServiceAccount")}
    assert accounts["pgjobs"]["automountServiceAccountToken"] is False
    for deployment in find_all(objects, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]
    # Two Deployments never select each other's pods.
    selectors = [d["spec"]["selector"]["matchLabels"] for d in find_all(objects, "Deployment")]
    for deployment in find_all(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert sum(s.items() <= labels.items() for s in selectors) == 1
