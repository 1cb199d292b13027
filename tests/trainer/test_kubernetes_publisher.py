"""The trainer's Kubernetes publisher: InferenceServices built from the chart's template and applied.

Unit part (no cluster): every built InferenceService validates against KServe's CRD schema (the
excerpt in tests/testdata/crds, made strict), survives a round trip through the kserve SDK's
models unchanged (nothing unknown or misspelled), and its pod part validates as a Kubernetes 1.32
PodSpec; only the per-project fields differ from the template.

``k8s`` part, against the real kube-apiserver of ``tests/support/apiserver.py`` (with a permissive
InferenceService CRD; nothing runs KServe's controller): the first rollout creates the ISVC, the
next one updates it by server-side apply under the field manager ``ts-segmenter-trainer``; an API
server that refuses (a ServiceAccount token without rights) gives ``PublishError``, and a training
whose rollout is refused leaves the previous version current.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes.client
import pytest
import yaml
from charts.chartutil import (
    ISVC_TEMPLATE_KEY,
    changed_paths,
    isvc_crd_validator,
    kserve_roundtrip,
    predictor_pod,
    render,
    scenarios,
    templates_configmap,
    validate_k8s,
)

from gateway.orchestrator.kubernetes import (
    ISVC_GROUP,
    ISVC_PLURAL,
    ISVC_VERSION,
    MODEL_VERSION_ANNOTATION,
    PREVIOUS_VERSION_ANNOTATION,
    PROJECT_LABEL,
)
from trainer.kubernetes import FIELD_MANAGER, KubernetesPublisher, build_inference_service, storage_uri
from trainer.publish import PublishError
from trainer.settings import TrainingSettings

if TYPE_CHECKING:
    from support.apiserver import ApiServer

VERSION = "p47-v0003-20261124T210501Z"
NAME = "tss-ts-segmenter-p-47"
CLAIM = "tss-ts-segmenter-models"


def isvc_template(scenario: str | None = None) -> dict[str, Any]:
    """The InferenceService template the chart renders for a scenario."""
    return templates_configmap(render(scenario=scenario))[ISVC_TEMPLATE_KEY]


def container(isvc: dict[str, Any]) -> dict[str, Any]:
    return isvc["spec"]["predictor"]["containers"][0]


def env_value(isvc: dict[str, Any], name: str) -> str | None:
    return next((e.get("value") for e in container(isvc).get("env", []) if e["name"] == name), None)


# --------------------------------------------------------------------------- pure builder


@pytest.fixture(scope="module")
def default_template() -> dict[str, Any]:
    return isvc_template()


@pytest.mark.parametrize("scenario", scenarios())
def test_built_isvcs_validate_against_the_kserve_crd(scenario):
    isvc = build_inference_service(isvc_template(scenario), 47, VERSION, name=NAME, claim=CLAIM, previous_version="p47-v0002-20261124T200000Z")
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in isvc_crd_validator().iter_errors(isvc)]
    assert errors == []


@pytest.mark.parametrize("scenario", scenarios())
def test_built_isvcs_survive_a_kserve_sdk_round_trip(scenario):
    isvc = build_inference_service(isvc_template(scenario), 47, VERSION, name=NAME, claim=CLAIM)
    assert changed_paths(isvc, kserve_roundtrip(isvc)) == set()


@pytest.mark.parametrize("scenario", scenarios())
def test_built_isvc_predictor_validates_as_a_pod_spec(scenario):
    validate_k8s(predictor_pod(build_inference_service(isvc_template(scenario), 47, VERSION, name=NAME, claim=CLAIM)))


def test_the_checks_above_can_fail(default_template):
    isvc = build_inference_service(default_template, 47, VERSION, name=NAME, claim=CLAIM)
    container(isvc)["env"][0]["valu"] = "x"
    assert "/spec/predictor/containers[0]/env[0]/valu" in changed_paths(isvc, kserve_roundtrip(isvc))
    assert list(isvc_crd_validator().iter_errors(isvc))


def test_only_the_per_project_fields_change(default_template):
    before = copy.deepcopy(default_template)
    isvc = build_inference_service(default_template, 47, VERSION, name=NAME, claim=CLAIM, previous_version="p47-v0002-20261124T200000Z")
    assert default_template == before, "the template itself must not be modified"
    storage_index = [e["name"] for e in container(default_template)["env"]].index("STORAGE_URI")
    allowed = {
        "/metadata/name",
        f"/metadata/labels/{PROJECT_LABEL}",
        f"/metadata/annotations/{MODEL_VERSION_ANNOTATION}",
        f"/metadata/annotations/{PREVIOUS_VERSION_ANNOTATION}",
        f"/spec/predictor/labels/{PROJECT_LABEL}",
        "/spec/predictor/containers[0]/args",
        f"/spec/predictor/containers[0]/env[{storage_index}]/value",
        "/spec/predictor/containers[0]/readinessProbe/httpGet/path",
    }
    changed = changed_paths(default_template, isvc)
    assert {p for p in changed if not any(p.startswith(a) for a in allowed)} == set()
    assert {a for a in allowed if any(p.startswith(a) for p in changed)} == allowed

    assert isvc["metadata"]["name"] == NAME
    assert isvc["metadata"]["labels"][PROJECT_LABEL] == "47"
    assert isvc["spec"]["predictor"]["labels"][PROJECT_LABEL] == "47"
    assert isvc["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == VERSION
    assert container(isvc)["name"] == "kserve-container"
    assert container(isvc)["args"] == ["--model_name", NAME, "--model_dir", "/mnt/models"]
    assert env_value(isvc, "STORAGE_URI") == f"pvc://{CLAIM}/project-47/{VERSION}" == storage_uri(CLAIM, 47, VERSION)
    assert env_value(isvc, "PROTOCOL") == "v2"
    assert container(isvc)["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{NAME}/ready"


def test_storage_uri_is_added_or_replaced(default_template):
    template = copy.deepcopy(default_template)
    container(template)["env"] = [e for e in container(template)["env"] if e["name"] != "STORAGE_URI"]
    assert env_value(build_inference_service(template, 1, VERSION, name="p-1", claim="c"), "STORAGE_URI") == f"pvc://c/project-1/{VERSION}"
    container(template)["env"].append({"name": "STORAGE_URI", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}})
    built = build_inference_service(template, 1, VERSION, name="p-1", claim="c")
    assert [e for e in container(built)["env"] if e["name"] == "STORAGE_URI"] == [{"name": "STORAGE_URI", "value": f"pvc://c/project-1/{VERSION}"}]


def test_template_without_the_kserve_container_is_refused(default_template):
    template = copy.deepcopy(default_template)
    container(template)["name"] = "predictor"
    with pytest.raises(ValueError, match="kserve-container"):
        build_inference_service(template, 1, VERSION, name="p-1", claim="c")


def test_missing_template_is_a_publish_error(tmp_path):
    settings = TrainingSettings(isvc_template_path=str(tmp_path / "nope.yaml"), publisher="kubernetes", _env_file=None)
    with pytest.raises(PublishError, match="cannot read the InferenceService template"):
        KubernetesPublisher.from_settings(settings)


# --------------------------------------------------------------------------- against the real API server


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    """A fresh namespace with the (permissive) InferenceService CRD installed."""
    with apiserver.fresh_namespace("pub") as name:
        yield name


def read_isvc(apiserver: ApiServer, namespace: str, name: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(apiserver.api_client())
    return json.loads(custom.get_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, _preload_content=False).data)


def token_without_rights(apiserver: ApiServer, namespace: str) -> str:
    """The token of a fresh ServiceAccount that no Role is bound to."""
    core = kubernetes.client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    return apiserver.service_account_token(namespace, "nobody")


@pytest.mark.k8s
def test_rollout_creates_then_applies(apiserver, namespace, default_template):
    publisher = KubernetesPublisher(apiserver.api_client, default_template, namespace=namespace, name_prefix="tss-ts-segmenter-p", claim=CLAIM)
    first, second = "p47-v0001-20261124T200000Z", "p47-v0002-20261124T210000Z"
    publisher.rollout(47, first)
    created = read_isvc(apiserver, namespace, NAME)
    assert created["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == first
    assert PREVIOUS_VERSION_ANNOTATION not in created["metadata"]["annotations"]
    assert env_value(created, "STORAGE_URI") == f"pvc://{CLAIM}/project-47/{first}"

    publisher.rollout(47, second)
    updated = read_isvc(apiserver, namespace, NAME)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"], "updated in place, not re-created"
    assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert updated["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == second
    assert updated["metadata"]["annotations"][PREVIOUS_VERSION_ANNOTATION] == first
    assert env_value(updated, "STORAGE_URI") == f"pvc://{CLAIM}/project-47/{second}"
    assert [e["name"] for e in container(updated)["env"]].count("STORAGE_URI") == 1
    assert {m["manager"] for m in updated["metadata"]["managedFields"]} == {FIELD_MANAGER}
    assert all(m["operation"] == "Apply" for m in updated["metadata"]["managedFields"])


@pytest.mark.k8s
def test_rollout_keeps_fields_other_managers_own(apiserver, namespace, default_template):
    """Server-side apply leaves what others (KServe's controller, an operator) added to the ISVC."""
    publisher = KubernetesPublisher(apiserver.api_client, default_template, namespace=namespace, name_prefix="tss-ts-segmenter-p", claim=CLAIM)
    publisher.rollout(47, "p47-v0001-20261124T200000Z")
    custom = kubernetes.client.CustomObjectsApi(apiserver.api_client())
    custom.patch_namespaced_custom_object(
        ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, NAME, {"metadata": {"annotations": {"example.com/owner": "ops"}}},
        _content_type="application/merge-patch+json", field_manager="kubectl",
    )
    publisher.rollout(47, "p47-v0002-20261124T210000Z")
    annotations = read_isvc(apiserver, namespace, NAME)["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "ops"
    assert annotations[MODEL_VERSION_ANNOTATION] == "p47-v0002-20261124T210000Z"


@pytest.mark.k8s
def test_refusal_is_a_publish_error(apiserver, namespace, default_template):
    token = token_without_rights(apiserver, namespace)
    publisher = KubernetesPublisher(lambda: apiserver.api_client(token), default_template, namespace=namespace, name_prefix="tss-ts-segmenter-p", claim=CLAIM)
    with pytest.raises(PublishError, match="403"):
        publisher.rollout(47, VERSION)


def test_unreachable_api_server_is_a_publish_error(default_template, tmp_path):
    from fixtures import free_port

    def client():
        configuration = kubernetes.client.Configuration()
        configuration.host = f"https://127.0.0.1:{free_port()}"
        configuration.retries = 0
        return kubernetes.client.ApiClient(configuration)

    publisher = KubernetesPublisher(client, default_template, namespace="default", name_prefix="p", claim=CLAIM, timeout=5)
    with pytest.raises(PublishError, match="cannot read InferenceService|refused"):
        publisher.rollout(1, VERSION)


@pytest.mark.k8s
def test_refused_rollout_keeps_the_previous_version_current(apiserver, namespace, default_template, trained_model_dir, tmp_path):
    """train_project publishes CURRENT, the rollout is refused, CURRENT goes back; the new version stays as a candidate on disk."""
    from fixtures import LABEL_CONFIG, as_annotation, synthetic_csv
    from trainer.fit import LabelledSeries
    from trainer.labelstudio import TrainingData
    from trainer.run import train_project
    from tscore.artifacts import ArtifactStore
    from tscore.labelconfig import parse_label_config
    from tscore.labels import annotations_to_rows
    from tscore.series import read_series

    root = tmp_path / "models"
    shutil.copytree(trained_model_dir, root)
    store = ArtifactStore(root)
    previous = store.current(7)
    assert previous is not None
    config = parse_label_config(LABEL_CONFIG)
    samples = []
    for seed in range(2):
        text, regions = synthetic_csv(seed=seed)
        series = read_series(text, config)
        samples.append(LabelledSeries(series.values, annotations_to_rows([as_annotation(regions)], series, config), f"s{seed}"))
    settings = TrainingSettings(
        model_dir=root, train_epochs=3, sequence_size=40, hidden_size=16, validation_gate_margin=1.0,
        publisher="kubernetes", kubernetes_namespace=namespace, _env_file=None,
    )
    token = token_without_rights(apiserver, namespace)
    publisher = KubernetesPublisher(lambda: apiserver.api_client(token), default_template, namespace=namespace, name_prefix="tss-ts-segmenter-p", claim=CLAIM)
    with pytest.raises(PublishError, match="403"):
        asyncio.run(train_project(7, settings, publisher, TrainingData(config, samples)))
    assert store.current(7) == previous
    versions = store.versions(7)
    assert len(versions) == 2 and versions[0] == previous
    assert store.read_status(7)["status"] == "failed"
    assert store.read_status(7)["served_version"] == previous


def test_from_settings_reads_the_chart_template(tmp_path, default_template):
    path = tmp_path / "inferenceservice.yaml"
    path.write_text(yaml.safe_dump(default_template))
    settings = TrainingSettings(
        isvc_template_path=str(path), publisher="kubernetes", kubernetes_namespace="ml", isvc_name_prefix="seg",
        models_pvc_name="claim", _env_file=None,
    )
    publisher = KubernetesPublisher.from_settings(settings)
    assert (publisher.namespace, publisher.name_prefix, publisher.claim) == ("ml", "seg", "claim")
    assert publisher.template == default_template
    assert Path(settings.isvc_template_path).is_file()
