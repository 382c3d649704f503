"""JSON schemas (draft 2020-12) of the KEDA objects deploy/k8s uses: ScaledObject,
ScaledJob and TriggerAuthentication (keda.sh/v1alpha1).

Kubernetes' own schemas (kubernetes-validate) do not know custom resources, and a typo in a
KEDA field is silently ignored by nothing but the cluster's CRD validation, which we do not
have here. These schemas cover the fields of KEDA's CRDs and documentation that the tree
uses or might plausibly use, with ``additionalProperties: false`` wherever the set of keys
is closed, so that a misspelt field fails a test. The postgresql trigger's metadata follows
KEDA's postgresql scaler: every value is a string (the CRD says so), ``query`` and
``targetQueryValue`` are required, ``targetQueryValue`` must be positive.

A ScaledJob's ``jobTargetRef`` is a batch/v1 JobSpec: the tests validate it with
kubernetes-validate, wrapped in a Job, rather than here.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "keda.sh/v1alpha1"

# A Kubernetes object name (DNS-1123 subdomain), as for any namespaced object.
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
COUNT = {"type": "integer", "minimum": 0}
NUMBER = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}  # KEDA parses it as a float
POSITIVE_NUMBER = {**NUMBER, "not": {"pattern": r"^0+(\.0+)?$"}}

METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": NAME,
        "namespace": NAME,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "additionalProperties": False,
}

POSTGRESQL_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["query", "targetQueryValue"],
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "targetQueryValue": POSITIVE_NUMBER,
        "activationTargetQueryValue": NUMBER,
        # Connection without a TriggerAuthentication (not used here: the secret stays out
        # of the trigger), or its parts.
        "connectionFromEnv": {"type": "string"},
        "host": {"type": "string"},
        "port": {"type": "string"},
        "userName": {"type": "string"},
        "passwordFromEnv": {"type": "string"},
        "dbName": {"type": "string"},
        "sslmode": {"type": "string"},
    },
    "additionalProperties": False,
}

TRIGGER: dict[str, Any] = {
    "type": "object",
    "required": ["type", "metadata"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "metadata": STRING_MAP,
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": NAME,
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
    "if": {"properties": {"type": {"const": "postgresql"}}},
    "then": {"properties": {"metadata": POSTGRESQL_METADATA}},
}

TRIGGERS = {"type": "array", "minItems": 1, "items": TRIGGER}


def resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"KEDA {kind} ({API_VERSION}), as deploy/k8s uses it",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


SCALED_OBJECT = resource(
    "ScaledObject",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": NAME,
                    "envSourceContainerName": {"type": "string"},
                },
                "additionalProperties": False,
            },
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": COUNT,
            "initialCooldownPeriod": COUNT,
            "idleReplicaCount": COUNT,
            "minReplicaCount": COUNT,
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "fallback": {
                "type": "object",
                "required": ["failureThreshold", "replicas"],
                "properties": {"failureThreshold": COUNT, "replicas": COUNT},
                "additionalProperties": False,
            },
            # HPA tuning (behavior, restoreToOriginalReplicaCount): an open object.
            "advanced": {"type": "object"},
            "triggers": TRIGGERS,
        },
        "additionalProperties": False,
    },
)

SCALED_JOB = resource(
    "ScaledJob",
    {
        "type": "object",
        "required": ["jobTargetRef", "triggers"],
        "properties": {
            "jobTargetRef": {"type": "object", "required": ["template"]},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "successfulJobsHistoryLimit": COUNT,
            "failedJobsHistoryLimit": COUNT,
            "envSourceContainerName": {"type": "string"},
            "minReplicaCount": COUNT,
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "rolloutStrategy": {"enum": ["default", "gradual"]},
            "rollout": {
                "type": "object",
                "properties": {
                    "strategy": {"enum": ["default", "gradual"]},
                    "propagationPolicy": {"enum": ["background", "foreground"]},
                },
                "additionalProperties": False,
            },
            "scalingStrategy": {
                "type": "object",
                "properties": {
                    "strategy": {"enum": ["default", "custom", "accurate", "eager"]},
                    "customScalingQueueLengthDeduction": {"type": "integer"},
                    "customScalingRunningJobPercentage": {"type": "string"},
                    "pendingPodConditions": {"type": "array", "items": {"type": "string"}},
                    "multipleScalersCalculation": {"enum": ["max", "min", "avg", "sum"]},
                },
                "additionalProperties": False,
            },
            "triggers": TRIGGERS,
        },
        "additionalProperties": False,
    },
)

TRIGGER_AUTHENTICATION = resource(
    "TriggerAuthentication",
    {
        "type": "object",
        "minProperties": 1,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "properties": {
                        "parameter": {"type": "string", "minLength": 1},
                        "name": NAME,
                        "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                    },
                    "additionalProperties": False,
                },
            },
            "env": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name"],
                    "properties": {
                        "parameter": {"type": "string"},
                        "name": {"type": "string"},
                        "containerName": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": SCALED_OBJECT,
    "ScaledJob": SCALED_JOB,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION,
}
