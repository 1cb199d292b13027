"""Tests of the Helm chart in charts/ts-segmenter, rendered by the real Helm engine.

What is checked, for the defaults and every ci/*-values.yaml scenario:
- ``helm lint --strict`` is clean and values.schema.json rejects bad values;
- every rendered object validates strictly (unknown fields are errors) against the Kubernetes
  1.32 OpenAPI schemas (kubernetes-validate), and so does the training Job template;
- the InferenceService template validates against KServe's CRD schema (an excerpt of the full
  CRD, made strict), its predictor fields are known to the kserve SDK, it survives a round trip
  through the SDK's models unchanged, and its pod part validates as a Kubernetes PodSpec;
- the essentials of each scenario (GPU, Knative scale to zero, existing claim/secret, ingress TLS).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kserve
import kserve.models
import pytest
import yaml

from charts.chartutil import (
    CHART_DIR,
    DNS1035,
    DNS1123,
    ISVC_TEMPLATE_KEY,
    JOB_TEMPLATE_KEY,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    containers,
    env_map,
    find,
    isvc_crd_validator,
    kserve_roundtrip,
    load_chart,
    notes,
    one,
    predictor_pod,
    render,
    render_manifests,
    scenario_values,
    scenarios,
    templates_configmap,
    validate_k8s,
)

SCENARIOS = scenarios()
FULLNAME = f"{RELEASE}-ts-segmenter"
NON_HELM_KINDS = {"InferenceService"}


# --------------------------------------------------------------------------- helpers


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """A Role's rules flattened to ``{(apiGroup, resource, verb)}``."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def gateway_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway Deployment."""
    return one(objects, "Deployment", f"{FULLNAME}-gateway")


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"lost {path}/{key}")
            elif key not in a:
                out.append(f"added {path}/{key}")
            else:
                out += _diff(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [f"length {path}: {len(a)} != {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            out += _diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"changed {path}: {a!r} -> {b!r}"]


# --------------------------------------------------------------------------- scenarios, lint, schema


def test_ci_scenarios_are_the_documented_ones():
    assert set(SCENARIOS) == {
        "default",
        "gpu",
        "knative-scale-to-zero",
        "existing-claim-secret",
        "ingress-tls",
    }


def test_chart_metadata():
    meta = load_chart().metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "ts-segmenter"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["appVersion"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_is_clean(scenario):
    report = helm.lint(CHART_DIR, scenario_values(scenario), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_schema_violations():
    report = helm.lint(CHART_DIR, {"predictor": {"deploymentMode": "Foo"}}, strict=True)
    assert any("deploymentMode" in e for e in report["errors"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_values_pass_the_schema(scenario):
    load_chart().validate_schema(scenario_values(scenario))


BAD_VALUES = {
    "unknown deployment mode": {"predictor": {"deploymentMode": "Foo"}},
    "negative gateway replicas": {"gateway": {"replicas": -1}},
    "scale to zero in Standard mode": {"predictor": {"minReplicas": 0}},
    "zero max replicas": {"predictor": {"maxReplicas": 0}},
    "negative min replicas": {"predictor": {"deploymentMode": "Knative", "minReplicas": -1}},
    "unknown device": {"training": {"device": "tpu"}},
    "threshold above 1": {"training": {"balancedAccuracyThreshold": 1.5}},
    "zero epochs": {"training": {"epochs": 0}},
    "one-row windows": {"training": {"sequenceSize": 1}},
    "string where an integer belongs": {"trainer": {"backoffLimit": "1"}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad access mode": {"persistence": {"accessModes": ["ReadWriteSometimes"]}},
    "bad size": {"persistence": {"size": "lots"}},
    "ISVC prefix starting with a digit": {"isvcNamePrefix": "1abc"},
    "ISVC prefix with capitals": {"isvcNamePrefix": "Models"},
    "ISVC prefix too long": {"isvcNamePrefix": "a" * 43},
    "Label Studio URL without scheme": {"labelStudio": {"url": "label-studio:8080"}},
    "misspelled top-level key": {"gatway": {"replicas": 2}},
    "misspelled nested key": {"trainer": {"gpu": {"enable": True}}},
    "zero GPUs": {"trainer": {"gpu": {"enabled": True, "count": 0}}},
    "bad ingress path type": {"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Any"}]}]}},
    "bad service type": {"gateway": {"service": {"type": "Headless"}}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_schema_accepts_scale_to_zero_in_knative_mode():
    render({"predictor": {"deploymentMode": "Knative", "minReplicas": 0}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"predictor": {"minReplicas": 3, "maxReplicas": 2}}, "must not exceed"),
        ({"basicAuth": {"enabled": True}}, "basicAuth.username is required"),
        ({"basicAuth": {"enabled": True, "username": "u"}}, "basicAuth.password is required"),
    ],
)
def test_template_guards_fail_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)


# --------------------------------------------------------------------------- Kubernetes validation


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_validates_strictly(scenario):
    objects = render(scenario=scenario)
    assert objects
    for obj in objects:
        assert obj["kind"] not in NON_HELM_KINDS
        validate_k8s(obj)


def test_strict_validation_catches_a_misspelled_field():
    deployment = copy.deepcopy(gateway_deployment(render()))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate_k8s(deployment)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_job_template_validates_strictly(scenario):
    job = templates_configmap(render(scenario=scenario))[JOB_TEMPLATE_KEY]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    validate_k8s(job)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_isvc_template_validates_against_the_kserve_crd(scenario):
    isvc = templates_configmap(render(scenario=scenario))[ISVC_TEMPLATE_KEY]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in isvc_crd_validator().iter_errors(isvc)]
    assert errors == []


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda p: p.update(minReplicas="one"), "minReplicas"),
        (lambda p: p["containers"][0].update(readinessprobe={}), "readinessprobe"),
        (lambda p: p["containers"][0]["ports"][0].pop("containerPort"), "containerPort"),
        (lambda p: p["containers"][0]["env"].append({"value": "x"}), "name"),
        (lambda p: p.update(labels={"a": 1}), "labels"),
    ],
    ids=["wrong type", "unknown container field", "missing required", "env without name", "label not a string"],
)
def test_crd_validation_catches_broken_isvcs(mutate, where):
    isvc = templates_configmap(render())[ISVC_TEMPLATE_KEY]
    mutate(isvc["spec"]["predictor"])
    messages = [f"{list(e.absolute_path)} {e.message}" for e in isvc_crd_validator().iter_errors(isvc)]
    assert any(where in m for m in messages), messages


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_isvc_predictor_fields_are_known_to_the_kserve_sdk(scenario):
    """Covers the predictor properties the CRD excerpt elides (preserve-unknown-fields there)."""
    isvc = templates_configmap(render(scenario=scenario))[ISVC_TEMPLATE_KEY]
    known = set(kserve.V1beta1PredictorSpec.attribute_map.values())
    assert set(isvc["spec"]["predictor"]) - known == set()
    assert set(isvc["spec"]) - set(kserve.V1beta1InferenceServiceSpec.attribute_map.values()) == set()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_isvc_template_survives_a_kserve_sdk_round_trip(scenario):
    isvc = templates_configmap(render(scenario=scenario))[ISVC_TEMPLATE_KEY]
    assert _diff(isvc, kserve_roundtrip(isvc)) == []


def test_kserve_round_trip_exposes_unknown_fields():
    isvc = templates_configmap(render())[ISVC_TEMPLATE_KEY]
    isvc["spec"]["predictor"]["minReplica"] = 2
    isvc["spec"]["predictor"]["deploymentStrategy"]["rollingUpdate"]["maxUnavail"] = 0
    isvc["spec"]["predictor"]["containers"][0]["env"][0]["valu"] = "x"
    assert sorted(_diff(isvc, kserve_roundtrip(isvc))) == [
        "lost /spec/predictor/containers[0]/env[0]/valu",
        "lost /spec/predictor/deploymentStrategy/rollingUpdate/maxUnavail",
        "lost /spec/predictor/minReplica",
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_isvc_predictor_pod_part_validates_as_a_pod_spec(scenario):
    isvc = templates_configmap(render(scenario=scenario))[ISVC_TEMPLATE_KEY]
    pod = predictor_pod(isvc)
    assert pod["spec"]["containers"]
    validate_k8s(pod)


# --------------------------------------------------------------------------- default scenario essentials


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    """The objects the chart renders with its default values."""
    return render()


@pytest.fixture(scope="module")
def default_templates(default_objects) -> dict[str, dict[str, Any]]:
    """The Job and InferenceService templates rendered with the default values."""
    return templates_configmap(default_objects)


def test_default_renders_the_expected_objects(default_objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted(
        [
            ("ConfigMap", f"{FULLNAME}-templates"),
            ("ConfigMap", f"{FULLNAME}-training"),
            ("Deployment", f"{FULLNAME}-gateway"),
            ("NetworkPolicy", f"{FULLNAME}-predictor"),
            ("PersistentVolumeClaim", f"{FULLNAME}-models"),
            ("Pod", f"{FULLNAME}-test-connection"),
            ("Role", f"{FULLNAME}-gateway"),
            ("Role", f"{FULLNAME}-trainer"),
            ("RoleBinding", f"{FULLNAME}-gateway"),
            ("RoleBinding", f"{FULLNAME}-trainer"),
            ("Secret", f"{FULLNAME}-label-studio"),
            ("Service", f"{FULLNAME}-gateway"),
            ("ServiceAccount", f"{FULLNAME}-gateway"),
            ("ServiceAccount", f"{FULLNAME}-predictor"),
            ("ServiceAccount", f"{FULLNAME}-trainer"),
        ]
    )
    assert all(o["metadata"]["namespace"] == NAMESPACE for o in default_objects)


def test_gateway_deployment(default_objects):
    deployment = gateway_deployment(default_objects)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-gateway"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    gateway = containers(spec)["gateway"]
    assert gateway["command"] == ["python", "-m", "gateway"]
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    assert gateway["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert gateway["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    env = env_map(gateway)
    assert env["ORCHESTRATOR"]["value"] == "kubernetes"
    assert env["KUBERNETES_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["JOB_TEMPLATE_PATH"]["value"] == "/etc/ts-segmenter/templates/job.yaml"
    assert env["PORT"]["value"] == "9090"
    assert env["LOG_LEVEL"]["value"] == "INFO"
    assert env["ISVC_NAME_PREFIX"]["value"] == f"{FULLNAME}-p"
    assert env["LABEL_STUDIO_URL"]["value"] == "http://label-studio:8080"
    assert env["LABEL_STUDIO_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-label-studio",
        "key": "api-key",
    }
    assert env["START_TRAINING_EACH_N_UPDATES"]["valueFrom"]["configMapKeyRef"] == {
        "name": f"{FULLNAME}-training",
        "key": "START_TRAINING_EACH_N_UPDATES",
    }
    assert "BASIC_AUTH_USER" not in env and "BASIC_AUTH_PASS" not in env
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert mounts["templates"]["mountPath"] == "/etc/ts-segmenter/templates"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["templates"]["configMap"]["name"] == f"{FULLNAME}-templates"
    assert {"checksum/training", "checksum/templates", "checksum/secrets"} <= set(pod["metadata"]["annotations"])


def test_gateway_service_selects_the_gateway_pods(default_objects):
    service = one(default_objects, "Service")
    pod_labels = gateway_deployment(default_objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize(
    "values, annotation",
    [
        ({"training": {"epochs": 5}}, "checksum/training"),
        ({"predictor": {"maxReplicas": 4}}, "checksum/templates"),
        ({"trainer": {"backoffLimit": 4}}, "checksum/templates"),
        ({"labelStudio": {"apiKey": "new"}}, "checksum/secrets"),
    ],
)
def test_config_changes_roll_the_gateway(values, annotation):
    def checksums(objects):
        return gateway_deployment(objects)["spec"]["template"]["metadata"]["annotations"]

    before, after = checksums(render()), checksums(render(values))
    assert before[annotation] != after[annotation]
    assert all(before[k] == after[k] for k in before if k != annotation)


def test_rbac_is_least_privilege(default_objects):
    gateway_role = one(default_objects, "Role", f"{FULLNAME}-gateway")
    trainer_role = one(default_objects, "Role", f"{FULLNAME}-trainer")
    assert rules_of(gateway_role) == {
        *{("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")},
        *{("", "pods", v) for v in ("get", "list", "watch")},
        *{("serving.kserve.io", "inferenceservices", v) for v in ("get", "list", "watch")},
    }
    assert rules_of(trainer_role) == {
        ("serving.kserve.io", "inferenceservices", v) for v in ("get", "list", "watch", "create", "patch", "update")
    }
    assert not find(default_objects, "ClusterRole") and not find(default_objects, "ClusterRoleBinding")
    bindings = {b["metadata"]["name"]: b for b in find(default_objects, "RoleBinding")}
    subjects = {s["name"] for b in bindings.values() for s in b["subjects"]}
    assert subjects == {f"{FULLNAME}-gateway", f"{FULLNAME}-trainer"}  # the predictor gets nothing
    for binding in bindings.values():
        assert binding["roleRef"]["kind"] == "Role"
        assert one(default_objects, "Role", binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE
            assert one(default_objects, "ServiceAccount", subject["name"])


def test_only_the_gateway_and_trainer_get_api_tokens(default_objects):
    accounts = {sa["metadata"]["name"]: sa for sa in find(default_objects, "ServiceAccount")}
    assert accounts[f"{FULLNAME}-predictor"]["automountServiceAccountToken"] is False
    assert accounts[f"{FULLNAME}-gateway"]["automountServiceAccountToken"] is True
    assert accounts[f"{FULLNAME}-trainer"]["automountServiceAccountToken"] is True


def test_models_claim_and_secret(default_objects):
    pvc = one(default_objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in pvc["spec"]
    secret = one(default_objects, "Secret")
    assert set(secret["data"]) == {"api-key"}


@pytest.mark.parametrize("storage_class, expected", [("-", ""), ("fast-ssd", "fast-ssd")])
def test_storage_class_convention(storage_class, expected):
    pvc = one(render({"persistence": {"storageClass": storage_class}}), "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == expected


def test_training_settings_configmap(default_objects):
    data = one(default_objects, "ConfigMap", f"{FULLNAME}-training")["data"]
    assert data == {
        "TRAIN_EPOCHS": "1000",
        "SEQUENCE_SIZE": "50",
        "HIDDEN_SIZE": "64",
        "BATCH_SIZE": "64",
        "LEARNING_RATE": "0.003",
        "BALANCED_ACCURACY_THRESHOLD": "0.85",
        "MIN_CLASS_F1_THRESHOLD": "0.7",
        "VALIDATION_GATE_MARGIN": "0.05",
        "USE_CLASS_WEIGHTS": "true",
        "START_TRAINING_EACH_N_UPDATES": "1",
        "DEVICE": "auto",
    }


def test_job_template_essentials(default_templates):
    job = default_templates[JOB_TEMPLATE_KEY]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "ts-segmenter"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert labels["app.kubernetes.io/component"] == "trainer"
    assert "ts-segmenter.io/project" in labels  # overwritten by the gateway
    assert "app.kubernetes.io/managed-by" not in labels  # created by the gateway, not Helm
    assert "namespace" not in job["metadata"]  # the gateway creates it in its own namespace
    assert job["spec"]["backoffLimit"] == 1
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    template = job["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer"
    assert "ts-segmenter.io/project" in template["metadata"]["labels"]
    spec = template["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-trainer"
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["name"] == "trainer"
    trainer = spec["containers"][0]
    assert trainer["command"] == ["python", "-m", "trainer"]
    assert trainer["args"][0] == "--project" and len(trainer["args"]) == 2
    assert trainer["envFrom"] == [{"configMapRef": {"name": f"{FULLNAME}-training"}}]
    env = env_map(trainer)
    assert env["MODEL_DIR"]["value"] == "/models"
    assert env["MODELS_PVC_NAME"]["value"] == f"{FULLNAME}-models"
    assert env["PUBLISHER"]["value"] == "kubernetes"
    assert env["ISVC_TEMPLATE_PATH"]["value"] == "/etc/ts-segmenter/templates/inferenceservice.yaml"
    assert env["ISVC_NAME_PREFIX"]["value"] == f"{FULLNAME}-p"
    assert env["KEEP_VERSIONS"]["value"] == "5"
    assert env["KUBERNETES_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["LABEL_STUDIO_URL"]["value"] == "http://label-studio:8080"
    assert env["LABEL_STUDIO_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-label-studio"
    assert "DEVICE" not in env  # from the ConfigMap unless the GPU is on
    mounts = {m["name"]: m["mountPath"] for m in trainer["volumeMounts"]}
    assert mounts["models"] == "/models"
    assert mounts["templates"] == "/etc/ts-segmenter/templates"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-models"
    assert volumes["templates"]["configMap"]["name"] == f"{FULLNAME}-templates"
    assert "resources" not in trainer and "nodeSelector" not in spec


def test_isvc_template_essentials(default_templates):
    isvc = default_templates[ISVC_TEMPLATE_KEY]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    name = isvc["metadata"]["name"]
    assert DNS1035.match(name) and name.startswith(f"{FULLNAME}-p-")
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert "ts-segmenter.io/model-version" in annotations
    assert isvc["metadata"]["labels"]["app.kubernetes.io/component"] == "predictor"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 1 and predictor["maxReplicas"] == 1
    assert predictor["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert predictor["labels"]["app.kubernetes.io/component"] == "predictor"
    assert "ts-segmenter.io/project" in predictor["labels"]
    assert predictor["serviceAccountName"] == f"{FULLNAME}-predictor"
    assert predictor["automountServiceAccountToken"] is False
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert len(predictor["containers"]) == 1
    server = predictor["containers"][0]
    assert server["name"] == "kserve-container"
    assert server["command"] == ["python", "-m", "predictor"]
    assert server["args"] == ["--model_name", name, "--model_dir", "/mnt/models"]
    env = env_map(server)
    assert env["PROTOCOL"]["value"] == "v2"
    assert env["STORAGE_URI"]["value"].startswith(f"pvc://{FULLNAME}-models/")
    assert server["ports"][0]["containerPort"] == 8080
    assert server["readinessProbe"]["httpGet"] == {"path": f"/v2/models/{name}/ready", "port": 8080}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert "resources" not in server


def test_network_policy_lets_only_gateway_pods_reach_predictors(default_objects, default_templates):
    policy = one(default_objects, "NetworkPolicy")
    predictor_labels = default_templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]["labels"]
    gateway_labels = gateway_deployment(default_objects)["spec"]["template"]["metadata"]["labels"]
    trainer_labels = default_templates[JOB_TEMPLATE_KEY]["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= predictor_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}
    allowed = peer["podSelector"]["matchLabels"]
    assert allowed.items() <= gateway_labels.items()
    assert not allowed.items() <= trainer_labels.items()
    assert not allowed.items() <= predictor_labels.items()


def test_toggles_turn_objects_off():
    objects = render(
        {
            "networkPolicy": {"enabled": False},
            "rbac": {"create": False},
            "serviceAccounts": {
                "gateway": {"create": False, "name": "my-gateway"},
                "trainer": {"create": False, "name": "my-trainer"},
                "predictor": {"create": False, "name": "my-predictor"},
            },
        }
    )
    for kind in ("NetworkPolicy", "Role", "RoleBinding", "ServiceAccount"):
        assert not find(objects, kind), kind
    templates = templates_configmap(objects)
    assert gateway_deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "my-gateway"
    assert templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]["serviceAccountName"] == "my-trainer"
    assert templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]["serviceAccountName"] == "my-predictor"


def test_basic_auth_secret_created_by_the_chart():
    objects = render({"basicAuth": {"enabled": True, "username": "ls", "password": "s3cret"}})
    secret = one(objects, "Secret", f"{FULLNAME}-basic-auth")
    assert set(secret["data"]) == {"username", "password"}
    env = env_map(containers(gateway_deployment(objects)["spec"]["template"]["spec"])["gateway"])
    assert env["BASIC_AUTH_USER"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-basic-auth", "key": "username"}
    assert env["BASIC_AUTH_PASS"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-basic-auth", "key": "password"}


# --------------------------------------------------------------------------- scenario essentials


def _assert_gpu(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    """A GPU workload: GPU limit, GPU node selector and toleration, CUDA image."""
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert container["image"].endswith(":0.1.0-cuda")


def test_gpu_scenario():
    objects = render(scenario="gpu")
    templates = templates_configmap(objects)
    job_spec = templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]
    trainer = job_spec["containers"][0]
    _assert_gpu(job_spec, trainer)
    assert trainer["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert trainer["resources"]["limits"]["memory"] == "16Gi"
    assert env_map(trainer)["DEVICE"]["value"] == "cuda"
    predictor = templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]
    _assert_gpu(predictor, predictor["containers"][0])
    assert env_map(predictor["containers"][0])["DEVICE"]["value"] == "cuda"
    gateway = containers(gateway_deployment(objects)["spec"]["template"]["spec"])["gateway"]
    assert gateway["image"] == "ts-segmenter:0.1.0"  # the gateway never needs CUDA


def test_gpu_settings_stay_out_of_cpu_workloads():
    templates = templates_configmap(render({"trainer": {"gpu": {"enabled": True}}}))
    predictor = templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]
    assert "tolerations" not in predictor and "nodeSelector" not in predictor
    assert not predictor["containers"][0]["image"].endswith("-cuda")
    job_spec = templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]
    assert job_spec["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert job_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_knative_scale_to_zero_scenario():
    objects = render(scenario="knative-scale-to-zero")
    isvc = templates_configmap(objects)[ISVC_TEMPLATE_KEY]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 0
    assert predictor["maxReplicas"] == 3
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] == 4
    assert "deploymentStrategy" not in predictor  # a Deployment strategy means nothing to Knative
    assert "automountServiceAccountToken" not in predictor  # set on the predictor ServiceAccount instead
    sa = one(objects, "ServiceAccount", predictor["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False
    peers = one(objects, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-serving"}}} in peers


def test_existing_claim_and_secret_scenario():
    objects = render(scenario="existing-claim-secret")
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "Secret")
    templates = templates_configmap(objects)
    job_spec = templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in job_spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "shared-models"
    trainer_env = env_map(job_spec["containers"][0])
    assert trainer_env["MODELS_PVC_NAME"]["value"] == "shared-models"
    assert trainer_env["LABEL_STUDIO_URL"]["value"] == "https://label-studio.example.com"
    storage_uri = env_map(templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]["containers"][0])["STORAGE_URI"]
    assert storage_uri["value"].startswith("pvc://shared-models/")
    gateway_env = env_map(containers(gateway_deployment(objects)["spec"]["template"]["spec"])["gateway"])
    for env in (gateway_env, trainer_env):
        assert env["LABEL_STUDIO_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "label-studio-credentials",
            "key": "token",
        }
    assert gateway_env["BASIC_AUTH_USER"]["valueFrom"]["secretKeyRef"] == {"name": "ml-backend-basic-auth", "key": "user"}
    assert gateway_env["BASIC_AUTH_PASS"]["valueFrom"]["secretKeyRef"] == {"name": "ml-backend-basic-auth", "key": "pass"}


def test_ingress_tls_scenario():
    objects = render(scenario="ingress-tls")
    ingress = one(objects, "Ingress")
    service = one(objects, "Service")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "ts-segmenter-tls", "hosts": ["ts-segmenter.example.com"]}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "ts-segmenter.example.com"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"number": service["spec"]["ports"][0]["port"]},
    }
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"


def test_ingress_rule_without_host_matches_every_host():
    ingress = one(
        render({"ingress": {"enabled": True, "hosts": [{"host": "", "paths": [{"path": "/", "pathType": "Prefix"}]}]}}), "Ingress"
    )
    assert "host" not in ingress["spec"]["rules"][0]
    validate_k8s(ingress)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("release", ["a" * 53, "x-" + "long-release-name-" * 2 + "ts-segmenter-ish", "7eleven"])
def test_names_fit_kubernetes_limits(release):
    objects = render(release=release)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and DNS1123.match(name), name
    templates = templates_configmap(objects)
    isvc_name = templates[ISVC_TEMPLATE_KEY]["metadata"]["name"]
    prefix = isvc_name.removesuffix("-0")
    assert len(prefix) <= 42 and DNS1035.match(prefix), prefix
    assert len(f"{prefix}-4294967295-predictor") <= 63
    assert DNS1123.match(templates[JOB_TEMPLATE_KEY]["metadata"]["name"])


def test_isvc_name_prefix_override_reaches_gateway_trainer_and_template():
    objects = render({"isvcNamePrefix": "seg"})
    templates = templates_configmap(objects)
    gateway_env = env_map(containers(gateway_deployment(objects)["spec"]["template"]["spec"])["gateway"])
    trainer_env = env_map(templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]["containers"][0])
    assert gateway_env["ISVC_NAME_PREFIX"]["value"] == trainer_env["ISVC_NAME_PREFIX"]["value"] == "seg"
    assert templates[ISVC_TEMPLATE_KEY]["metadata"]["name"] == "seg-0"


def test_image_tag_override():
    objects = render(
        {
            "image": {"repository": "registry.example.com/tss", "tag": "1.2.3", "cudaTagSuffix": "-gpu"},
            "trainer": {"gpu": {"enabled": True}},
        }
    )
    templates = templates_configmap(objects)
    gateway = containers(gateway_deployment(objects)["spec"]["template"]["spec"])["gateway"]
    assert gateway["image"] == "registry.example.com/tss:1.2.3"
    assert templates[JOB_TEMPLATE_KEY]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/tss:1.2.3-gpu"
    assert templates[ISVC_TEMPLATE_KEY]["spec"]["predictor"]["containers"][0]["image"] == "registry.example.com/tss:1.2.3"


# --------------------------------------------------------------------------- helm test, NOTES


def test_helm_test_pod_checks_gateway_health(default_objects):
    [pod] = [o for o in find(default_objects, "Pod") if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    [container] = pod["spec"]["containers"]
    service = one(default_objects, "Service")
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/health"
    assert url in "\n".join(container["command"] + container["args"])
    rendered = render_manifests()
    assert any(path.endswith("templates/tests/test-connection.yaml") for path in rendered)


def test_notes_tell_what_to_do_next():
    text = notes()
    assert f"http://{FULLNAME}-gateway.{NAMESPACE}.svc.cluster.local:9090" in text
    assert "http://label-studio:8080" in text
    assert "kubectl -n ml get jobs -l ts-segmenter.io/project=<id>" in text
    assert "kubectl -n ml logs -f -l ts-segmenter.io/project=<id>" in text
    assert "labelStudio.apiKey is empty" in text
    assert "labelStudio.apiKey is empty" not in notes({"labelStudio": {"apiKey": "token"}})


def test_notes_show_the_ingress_url():
    text = notes(scenario="ingress-tls")
    assert "https://ts-segmenter.example.com/" in text
    assert "basic authentication" in notes(scenario="existing-claim-secret")


# --------------------------------------------------------------------------- values.yaml documentation


def _values_nodes() -> yaml.MappingNode:
    """values.yaml as a YAML node tree (with line numbers)."""
    return yaml.compose((CHART_DIR / "values.yaml").read_text())


def _documented(lines: list[str], line: int) -> bool:
    """Whether the key on 0-based ``line`` has a comment on the line above or at its end."""
    above = line > 0 and lines[line - 1].strip().startswith("#")
    return above or "#" in lines[line]


def _undocumented_leaves(node: yaml.Node, lines: list[str], path: str, inherited: bool) -> list[str]:
    """Paths of values.yaml leaves with no comment on themselves or on any enclosing key."""
    missing = []
    for key_node, value_node in node.value:
        here = f"{path}.{key_node.value}" if path else key_node.value
        documented = inherited or _documented(lines, key_node.start_mark.line)
        if isinstance(value_node, yaml.MappingNode) and value_node.value:
            missing += _undocumented_leaves(value_node, lines, here, documented)
        elif not documented:
            missing.append(here)
    return missing


def test_every_value_is_documented():
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    assert _undocumented_leaves(_values_nodes(), lines, "", False) == []


def test_undocumented_value_would_be_caught():
    text = "image:\n  # -- documented\n  tag: x\n  pullPolicy: Always\n"
    assert _undocumented_leaves(yaml.compose(text), text.splitlines(), "", False) == ["image.pullPolicy"]


def _schema_gaps(values: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    """Keys of values.yaml that values.schema.json does not describe (free-form maps end the walk)."""
    gaps = []
    props = schema.get("properties")
    if props is None:
        return gaps
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        if key not in props:
            gaps.append(here)
        elif isinstance(value, dict):
            gaps += _schema_gaps(value, props[key], here)
    return gaps


def test_schema_describes_every_value():
    chart = load_chart()
    assert chart.schema is not None
    assert _schema_gaps(chart.values, chart.schema, "") == []
    # and the schema has no stale entries either
    assert set(chart.schema["properties"]) == set(chart.values)


def test_default_values_pass_the_schema_unchanged():
    chart = load_chart()
    chart.validate_schema(chart.values)
    jsonschema.Draft7Validator.check_schema(chart.schema)
    assert isinstance(json.loads(Path(CHART_DIR / "values.schema.json").read_text()), dict)
