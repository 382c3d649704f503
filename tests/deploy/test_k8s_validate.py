"""Every rendered object is valid: Kubernetes objects against the API's own JSON schemas
(kubernetes-validate, strict: an unknown field fails), KEDA objects against
tests/deploy/keda_schema.py, a ScaledJob's job template as a batch/v1 Job. And the schemas
do catch the mistakes they are there for."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from keda_schema import SCHEMAS
from kustomize import load_documents
from manifests import SECRET_EXAMPLE, VARIANTS, Obj, find, rendered

# The oldest Kubernetes release the manifests promise to work with, and the newest the
# package knows. Both ship inside kubernetes-validate: no network.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())


def validate_core(obj: Obj) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def validate_keda(obj: Obj) -> None:
    jsonschema.Draft202012Validator(SCHEMAS[obj["kind"]]).validate(obj)


def as_job(scaled_job: Obj) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": scaled_job["metadata"]["name"]},
        "spec": scaled_job["spec"]["jobTargetRef"],
    }


@pytest.mark.parametrize("schema", list(SCHEMAS))
def test_keda_schemas_are_valid_json_schemas(schema: str) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[schema])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_validates(variant: str) -> None:
    for obj in rendered(variant):
        if obj["apiVersion"].startswith("keda.sh/"):
            validate_keda(obj)
            if obj["kind"] == "ScaledJob":
                validate_core(as_job(obj))
        else:
            validate_core(obj)


def test_the_example_secret_validates() -> None:
    (secret,) = load_documents(SECRET_EXAMPLE)
    validate_core(secret)
    assert secret["kind"] == "Secret"
    assert set(secret["stringData"]) == {"dsn", "keda-dsn", "api-tokens"}
    for key in ("dsn", "keda-dsn"):
        value = secret["stringData"][key]
        # KEDA's driver (pgx) takes postgres:// URLs, not SQLAlchemy-style ones.
        assert value.startswith("postgresql://"), value
        assert "NOT-A-REAL-PASSWORD" in value and ".invalid" in value, "obviously fake"


def test_kubernetes_validate_catches_a_misspelt_field() -> None:
    worker = find(rendered("base"), "Deployment", "pgjobs-worker")
    worker["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFilesytem"):
        validate_core(worker)


def scaled_object() -> Obj:
    return find(rendered("base"), "ScaledObject")


def scaled_job() -> Obj:
    return find(rendered("base"), "ScaledJob")


def trigger_auth() -> Obj:
    return find(rendered("base"), "TriggerAuthentication")


Mutation = Callable[[], Obj]


def mutated(make: Mutation, change: Callable[[Obj], Any]) -> Obj:
    obj = copy.deepcopy(make())
    change(obj)
    return obj


BROKEN = {
    "metadata key misspelt": mutated(
        scaled_object,
        lambda o: o["spec"]["triggers"][0]["metadata"].update(targetQueryValu="10"),
    ),
    "target as a number, not a string": mutated(
        scaled_object,
        lambda o: o["spec"]["triggers"][0]["metadata"].update(targetQueryValue=10),
    ),
    "target of zero": mutated(
        scaled_object,
        lambda o: o["spec"]["triggers"][0]["metadata"].update(targetQueryValue="0"),
    ),
    "no query": mutated(scaled_object, lambda o: o["spec"]["triggers"][0]["metadata"].pop("query")),
    "unknown metricType": mutated(
        scaled_object, lambda o: o["spec"]["triggers"][1].update(metricType="Average")
    ),
    "HPA field name instead of KEDA's": mutated(
        scaled_object, lambda o: o["spec"].update(minReplicas=0)
    ),
    "scaleTargetRef without a name": mutated(
        scaled_object, lambda o: o["spec"]["scaleTargetRef"].pop("name")
    ),
    "authenticationRef misspelt": mutated(
        scaled_object,
        lambda o: o["spec"]["triggers"][0].update(
            authenticationRefs=o["spec"]["triggers"][0].pop("authenticationRef")
        ),
    ),
    "unknown scaling strategy": mutated(
        scaled_job, lambda o: o["spec"]["scalingStrategy"].update(strategy="acurate")
    ),
    "history limit as text": mutated(
        scaled_job, lambda o: o["spec"].update(successfulJobsHistoryLimit="5")
    ),
    "no jobTargetRef": mutated(scaled_job, lambda o: o["spec"].pop("jobTargetRef")),
    "secretTargetRef without a key": mutated(
        trigger_auth, lambda o: o["spec"]["secretTargetRef"][0].pop("key")
    ),
    "secretTargetRef field misspelt": mutated(
        trigger_auth, lambda o: o["spec"]["secretTargetRef"][0].update(parameters="x")
    ),
    "wrong apiVersion": mutated(trigger_auth, lambda o: o.update(apiVersion="keda.sh/v1")),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_keda_schema_catches(case: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(BROKEN[case])


def test_a_broken_job_template_fails_as_a_job() -> None:
    job = scaled_job()
    job["spec"]["jobTargetRef"]["template"]["spec"]["restartPolicy"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(as_job(job))
