"""Prove that the ``apiserver`` fixture is a real Kubernetes API server.

Each test works in its own namespace and checks behaviour only a real server
has: label selectors, the Job status subresource, the job controller creating
Pods, RBAC decisions for a ServiceAccount token, and CRD patch semantics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import kubernetes.client
import kubernetes.config
import pytest
from kubernetes.client.rest import ApiException

if TYPE_CHECKING:  # the plugin imports it at run time (keeps assertion rewriting happy)
    from support.apiserver import ApiServer

pytest_plugins = ["support.apiserver"]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    """A fresh namespace, deleted (asynchronously) after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    apiserver.create_namespace(name)
    yield name
    kubernetes.client.CoreV1Api(apiserver.api_client()).delete_namespace(name)


def make_job(name: str, labels: dict[str, str], claim: str) -> kubernetes.client.V1Job:
    """A one-shot Job whose Pod mounts PVC ``claim``."""
    k = kubernetes.client
    return k.V1Job(
        metadata=k.V1ObjectMeta(name=name, labels=labels),
        spec=k.V1JobSpec(
            backoff_limit=0,
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=labels),
                spec=k.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        k.V1Container(
                            name="main",
                            image="busybox:1.36",
                            command=["true"],
                            volume_mounts=[k.V1VolumeMount(name="data", mount_path="/data")],
                        )
                    ],
                    volumes=[
                        k.V1Volume(
                            name="data",
                            persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                                claim_name=claim
                            ),
                        )
                    ],
                ),
            ),
        ),
    )


def create_pvc(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> None:
    """Create a 1Gi ReadWriteOnce PVC (it stays Pending: nothing provisions it)."""
    k = kubernetes.client
    core.create_namespaced_persistent_volume_claim(
        namespace,
        k.V1PersistentVolumeClaim(
            metadata=k.V1ObjectMeta(name=name),
            spec=k.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=k.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )


def test_kubeconfig_reaches_a_real_1_20_server(apiserver: ApiServer) -> None:
    """The written admin kubeconfig works with the official client loader."""
    client = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig_path))
    version = kubernetes.client.VersionApi(client).get_code()
    assert version.git_version.startswith("v1.20.")
    assert apiserver.server_url.startswith("https://127.0.0.1:")
    names = {ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_job_with_pvc_labels_selector_and_status(apiserver: ApiServer, namespace: str) -> None:
    """Jobs keep PVC volumes, filter by label selector and take status patches."""
    client = apiserver.api_client()
    core = kubernetes.client.CoreV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    create_pvc(core, namespace, "shared-data")
    batch.create_namespaced_job(
        namespace, make_job("seg-a", {"app": "ts-segmenter", "shard": "a"}, "shared-data")
    )
    batch.create_namespaced_job(
        namespace, make_job("seg-b", {"app": "ts-segmenter", "shard": "b"}, "shared-data")
    )
    batch.create_namespaced_job(namespace, make_job("other", {"app": "other"}, "shared-data"))

    selected = batch.list_namespaced_job(namespace, label_selector="app=ts-segmenter")
    assert sorted(j.metadata.name for j in selected.items) == ["seg-a", "seg-b"]
    only_b = batch.list_namespaced_job(namespace, label_selector="app=ts-segmenter,shard=b")
    assert [j.metadata.name for j in only_b.items] == ["seg-b"]

    job = batch.read_namespaced_job("seg-a", namespace)
    volume = job.spec.template.spec.volumes[0]
    assert volume.persistent_volume_claim.claim_name == "shared-data"
    assert core.read_namespaced_persistent_volume_claim("shared-data", namespace).status.phase == "Pending"

    now = "2024-01-01T00:00:00Z"
    batch.patch_namespaced_job_status(
        "seg-a",
        namespace,
        {
            "status": {
                "succeeded": 1,
                "startTime": now,
                "completionTime": now,
                "conditions": [
                    {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
                ],
            }
        },
    )
    status = batch.read_namespaced_job_status("seg-a", namespace).status
    assert status.succeeded == 1
    assert [(c.type, c.status) for c in status.conditions] == [("Complete", "True")]
    # The status subresource must not have touched the other Job.
    assert not batch.read_namespaced_job_status("seg-b", namespace).status.conditions


def test_job_controller_creates_pod_and_completes_job(apiserver: ApiServer, namespace: str) -> None:
    """Playing the kubelet (Pod phase Succeeded) makes the job controller complete the Job."""
    client = apiserver.api_client()
    core = kubernetes.client.CoreV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    create_pvc(core, namespace, "data")
    batch.create_namespaced_job(namespace, make_job("run", {"app": "ts-segmenter"}, "data"))

    pods = wait_for(
        lambda: core.list_namespaced_pod(namespace, label_selector="job-name=run").items,
        "the job controller to create the Job's Pod",
    )
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.phase == "Pending"
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "data"

    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"phase": "Succeeded"}})

    def complete() -> bool:
        conditions = batch.read_namespaced_job_status("run", namespace).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conditions)

    wait_for(complete, "the job controller to mark the Job Complete")
    assert batch.read_namespaced_job_status("run", namespace).status.succeeded == 1


def test_service_account_token_is_bound_by_rbac(apiserver: ApiServer, namespace: str) -> None:
    """A Role lets the SA list Jobs; anything unbound is a 403."""
    client = apiserver.api_client()
    k = kubernetes.client
    core = k.CoreV1Api(client)
    rbac = k.RbacAuthorizationV1Api(client)
    k.BatchV1Api(client).create_namespaced_job(namespace, make_job("visible", {"app": "x"}, "none"))

    core.create_namespaced_service_account(
        namespace, k.V1ServiceAccount(metadata=k.V1ObjectMeta(name="segmenter"))
    )
    rbac.create_namespaced_role(
        namespace,
        k.V1Role(
            metadata=k.V1ObjectMeta(name="job-reader"),
            rules=[k.V1PolicyRule(api_groups=["batch"], resources=["jobs"], verbs=["get", "list", "watch"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k.V1RoleBinding(
            metadata=k.V1ObjectMeta(name="segmenter-job-reader"),
            role_ref=k.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="job-reader"),
            subjects=[k.RbacV1Subject(kind="ServiceAccount", name="segmenter", namespace=namespace)],
        ),
    )

    token = apiserver.service_account_token(namespace, "segmenter")
    sa_client = apiserver.api_client(token)
    jobs = k.BatchV1Api(sa_client).list_namespaced_job(namespace)
    assert [j.metadata.name for j in jobs.items] == ["visible"]

    with pytest.raises(ApiException) as denied:
        k.CoreV1Api(sa_client).create_namespaced_secret(
            namespace, k.V1Secret(metadata=k.V1ObjectMeta(name="nope"), string_data={"a": "b"})
        )
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:segmenter" in denied.value.body

    with pytest.raises(ApiException) as other_ns:
        k.BatchV1Api(sa_client).list_namespaced_job("default")
    assert other_ns.value.status == 403

    with pytest.raises(ApiException) as unbound_user:
        k.BatchV1Api(apiserver.api_client(apiserver.user_token)).list_namespaced_job(namespace)
    assert unbound_user.value.status == 403


def test_inferenceservice_crd_create_and_patch(apiserver: ApiServer, namespace: str) -> None:
    """The permissive InferenceService CRD takes creates, merge patches and JSON patches."""
    apiserver.install_isvc_crd()
    apiserver.install_isvc_crd()  # idempotent
    custom = kubernetes.client.CustomObjectsApi(apiserver.api_client())
    group, version, plural = apiserver.ISVC_GROUP, apiserver.ISVC_VERSION, apiserver.ISVC_PLURAL
    args = (group, version, namespace, plural)
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "InferenceService",
        "metadata": {"name": "segmenter", "labels": {"app": "ts-segmenter"}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {"modelFormat": {"name": "pytorch"}, "storageUri": "pvc://models/v1"},
            }
        },
    }
    created = custom.create_namespaced_custom_object(*args, body)
    assert created["metadata"]["uid"]
    assert created["spec"]["predictor"]["model"]["storageUri"] == "pvc://models/v1"

    merged = custom.patch_namespaced_custom_object(
        *args,
        "segmenter",
        {"spec": {"predictor": {"minReplicas": 2, "model": {"storageUri": "pvc://models/v2"}}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["spec"]["predictor"]["minReplicas"] == 2
    assert merged["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "pytorch"},
        "storageUri": "pvc://models/v2",
    }

    patched = custom.patch_namespaced_custom_object(
        *args,
        "segmenter",
        [
            {"op": "test", "path": "/spec/predictor/minReplicas", "value": 2},
            {"op": "replace", "path": "/spec/predictor/minReplicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/stage", "value": "canary"},
        ],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["predictor"]["minReplicas"] == 3
    assert patched["metadata"]["labels"] == {"app": "ts-segmenter", "stage": "canary"}

    with pytest.raises(ApiException) as failed_test_op:
        custom.patch_namespaced_custom_object(
            *args,
            "segmenter",
            [{"op": "test", "path": "/spec/predictor/minReplicas", "value": 99}],
            _content_type="application/json-patch+json",
        )
    assert failed_test_op.value.status == 422

    # The status subresource writes status only; its spec changes are dropped.
    custom.patch_namespaced_custom_object_status(
        *args,
        "segmenter",
        {"spec": {"predictor": {"minReplicas": 9}}, "status": {"url": "http://segmenter.example"}},
        _content_type="application/merge-patch+json",
    )
    stored = custom.get_namespaced_custom_object(*args, "segmenter")
    assert stored["status"]["url"] == "http://segmenter.example"
    assert stored["spec"]["predictor"]["minReplicas"] == 3

    listed = custom.list_namespaced_custom_object(*args, label_selector="stage=canary")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["segmenter"]
