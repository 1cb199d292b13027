"""The chart's RBAC, applied to a real kube-apiserver: each component can do exactly what it needs.

The ServiceAccounts, Roles and RoleBindings the chart renders are created in a fresh namespace
of the ``apiserver`` fixture (tests/support/apiserver.py). With each ServiceAccount's own token,
the tests then
- perform the operations the component needs, for real (the gateway creates a Job from the
  chart's Job template, lists/watches/gets/deletes it, reads pods and InferenceServices; the
  trainer creates an InferenceService from the chart's template, then patches and updates it),
- get 403 for the operations it must not do,
- and, through SubjectAccessReviews, show that the full verb matrix over the resources the
  chart touches is exactly the expected one, in this namespace and in no other.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kubernetes.client
import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from charts.chartutil import ISVC_TEMPLATE_KEY, JOB_TEMPLATE_KEY, find, render, templates_configmap

if TYPE_CHECKING:  # the plugin is registered by tests/conftest.py
    from support.apiserver import ApiServer

pytestmark = pytest.mark.k8s

RELEASE = "tss"
FULLNAME = f"{RELEASE}-ts-segmenter"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
#: (apiGroup, resource) pairs whose verb matrix is checked for every component.
RESOURCES = (
    ("batch", "jobs"),
    ("", "pods"),
    ("", "pods/log"),
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "services"),
    ("apps", "deployments"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("serving.kserve.io", "inferenceservices"),
)
EXPECTED = {
    "gateway": {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("serving.kserve.io", "inferenceservices"): {"get", "list", "watch"},
    },
    "trainer": {
        ("serving.kserve.io", "inferenceservices"): {"get", "list", "watch", "create", "patch", "update"},
    },
    "predictor": {},
}


@dataclass
class Installed:
    """The chart's RBAC objects applied in ``namespace``, with a client per component."""

    apiserver: ApiServer
    namespace: str
    objects: list[dict[str, Any]]
    clients: dict[str, kubernetes.client.ApiClient]

    def sa(self, component: str) -> str:
        """The ServiceAccount name of a component."""
        return f"{FULLNAME}-{component}"

    def username(self, component: str) -> str:
        """The user name a component's token authenticates as."""
        return f"system:serviceaccount:{self.namespace}:{self.sa(component)}"


def _apply(admin: kubernetes.client.ApiClient, namespace: str, obj: dict[str, Any]) -> None:
    """Create one rendered ServiceAccount/Role/RoleBinding as the cluster admin."""
    kind = obj["kind"]
    if kind == "ServiceAccount":
        kubernetes.client.CoreV1Api(admin).create_namespaced_service_account(namespace, obj)
    elif kind == "Role":
        kubernetes.client.RbacAuthorizationV1Api(admin).create_namespaced_role(namespace, obj)
    elif kind == "RoleBinding":
        kubernetes.client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(namespace, obj)
    else:  # pragma: no cover - guarded by the caller
        raise AssertionError(f"unexpected kind {kind}")


@pytest.fixture(scope="module")
def installed(apiserver: ApiServer) -> Installed:
    """The chart's ServiceAccounts, Roles and RoleBindings in a fresh namespace, and SA clients."""
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    apiserver.create_namespace(namespace)
    apiserver.install_isvc_crd()
    objects = render(release=RELEASE, namespace=namespace)
    admin = apiserver.api_client()
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    assert {o["kind"] for o in rbac} == {"ServiceAccount", "Role", "RoleBinding"}  # nothing cluster-wide
    for obj in sorted(rbac, key=lambda o: ["ServiceAccount", "Role", "RoleBinding"].index(o["kind"])):
        _apply(admin, namespace, obj)
    clients = {
        component: apiserver.api_client(apiserver.service_account_token(namespace, f"{FULLNAME}-{component}")) for component in EXPECTED
    }
    return Installed(apiserver, namespace, objects, clients)


def expect_forbidden(call: Callable[[], Any]) -> None:
    """Assert that an API call is refused by authorization (HTTP 403)."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value


def first_watch_event(list_call: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Open a watch and return its first event (the initial ADDED of an existing object).

    A watch the caller may not open fails with 403 before any event arrives.
    """
    stream = watch.Watch()
    try:
        for event in stream.stream(list_call, *args, timeout_seconds=10):
            return event
    finally:
        stream.stop()
    raise AssertionError("the watch ended without an event")


def job_from_template(installed: Installed, project: str) -> dict[str, Any]:
    """A training Job made from the chart's template the way the gateway makes it."""
    job = copy.deepcopy(templates_configmap(installed.objects)[JOB_TEMPLATE_KEY])
    job["metadata"]["name"] = f"{FULLNAME}-train-{project}-{uuid.uuid4().hex[:5]}"
    job["metadata"]["labels"]["ts-segmenter.io/project"] = project
    job["spec"]["template"]["metadata"]["labels"]["ts-segmenter.io/project"] = project
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["--project", project]
    return job


def isvc_from_template(installed: Installed, project: str) -> dict[str, Any]:
    """An InferenceService made from the chart's template the way the trainer makes it."""
    isvc = copy.deepcopy(templates_configmap(installed.objects)[ISVC_TEMPLATE_KEY])
    name = isvc["metadata"]["name"].removesuffix("-0") + f"-{project}"
    isvc["metadata"]["name"] = name
    isvc["metadata"]["labels"]["ts-segmenter.io/project"] = project
    isvc["metadata"]["annotations"]["ts-segmenter.io/model-version"] = "v1"
    predictor = isvc["spec"]["predictor"]
    predictor["labels"]["ts-segmenter.io/project"] = project
    server = predictor["containers"][0]
    server["args"] = ["--model_name", name, "--model_dir", "/mnt/models"]
    server["readinessProbe"]["httpGet"]["path"] = f"/v2/models/{name}/ready"
    for env in server["env"]:
        if env["name"] == "STORAGE_URI":
            env["value"] = f"pvc://{FULLNAME}-models/{project}/v1"
    return isvc


def allowed_verbs(installed: Installed, component: str, namespace: str) -> dict[tuple[str, str], set[str]]:
    """The verbs a component may use on each of RESOURCES in ``namespace`` (SubjectAccessReviews)."""
    authz = kubernetes.client.AuthorizationV1Api(installed.apiserver.api_client())
    result: dict[tuple[str, str], set[str]] = {}
    for group, resource in RESOURCES:
        plural, _, subresource = resource.partition("/")
        verbs = set()
        for verb in VERBS:
            review = authz.create_subject_access_review(
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": installed.username(component),
                        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{installed.namespace}", "system:authenticated"],
                        "resourceAttributes": {
                            "namespace": namespace,
                            "group": group,
                            "resource": plural,
                            "subresource": subresource,
                            "verb": verb,
                        },
                    },
                }
            )
            if review.status.allowed:
                verbs.add(verb)
        if verbs:
            result[(group, resource)] = verbs
    return result


# --------------------------------------------------------------------------- exact matrix


@pytest.mark.parametrize("component", EXPECTED)
def test_verb_matrix_is_exactly_what_the_component_needs(installed, component):
    assert allowed_verbs(installed, component, installed.namespace) == EXPECTED[component]


@pytest.mark.parametrize("component", EXPECTED)
def test_no_rights_in_other_namespaces(installed, component):
    other = f"other-{uuid.uuid4().hex[:8]}"
    installed.apiserver.create_namespace(other, wait_for_default_service_account=False)
    assert allowed_verbs(installed, component, other) == {}


@pytest.mark.parametrize("component", EXPECTED)
def test_nobody_lists_namespaces_or_cluster_wide_objects(installed, component):
    client = installed.clients[component]
    expect_forbidden(lambda: kubernetes.client.CoreV1Api(client).list_namespace())
    expect_forbidden(lambda: kubernetes.client.BatchV1Api(client).list_job_for_all_namespaces())
    expect_forbidden(lambda: kubernetes.client.CustomObjectsApi(client).list_cluster_custom_object(*ISVC))
    expect_forbidden(lambda: kubernetes.client.CoreV1Api(client).list_pod_for_all_namespaces())


# --------------------------------------------------------------------------- real operations


def test_gateway_runs_training_jobs(installed):
    batch = kubernetes.client.BatchV1Api(installed.clients["gateway"])
    ns = installed.namespace
    job = job_from_template(installed, "47")
    name = job["metadata"]["name"]
    created = batch.create_namespaced_job(ns, job)
    assert created.spec.template.spec.service_account_name == f"{FULLNAME}-trainer"
    assert batch.read_namespaced_job(name, ns).metadata.labels["ts-segmenter.io/project"] == "47"
    listed = batch.list_namespaced_job(ns, label_selector="ts-segmenter.io/project=47")
    assert [j.metadata.name for j in listed.items] == [name]
    event = first_watch_event(batch.list_namespaced_job, ns)
    assert event["type"] == "ADDED" and event["object"].metadata.name == name
    core = kubernetes.client.CoreV1Api(installed.clients["gateway"])
    core.list_namespaced_pod(ns, label_selector="ts-segmenter.io/project=47")
    batch.delete_namespaced_job(name, ns, propagation_policy="Background")


def test_gateway_may_not_change_jobs_isvcs_or_read_secrets(installed):
    ns = installed.namespace
    client = installed.clients["gateway"]
    batch = kubernetes.client.BatchV1Api(client)
    admin_batch = kubernetes.client.BatchV1Api(installed.apiserver.api_client())
    job = admin_batch.create_namespaced_job(ns, job_from_template(installed, "48"))
    expect_forbidden(lambda: batch.patch_namespaced_job(job.metadata.name, ns, {"spec": {"suspend": True}}))
    custom = kubernetes.client.CustomObjectsApi(client)
    isvc = isvc_from_template(installed, "48")
    expect_forbidden(lambda: custom.create_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], isvc))
    core = kubernetes.client.CoreV1Api(client)
    expect_forbidden(lambda: core.list_namespaced_secret(ns))
    expect_forbidden(lambda: core.read_namespaced_secret("anything", ns))
    expect_forbidden(lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}}))


def test_gateway_reads_but_does_not_patch_inference_services(installed):
    ns = installed.namespace
    admin = kubernetes.client.CustomObjectsApi(installed.apiserver.api_client())
    isvc = isvc_from_template(installed, "49")
    name = isvc["metadata"]["name"]
    admin.create_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], isvc)
    custom = kubernetes.client.CustomObjectsApi(installed.clients["gateway"])
    assert custom.get_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name)["metadata"]["name"] == name
    listed = custom.list_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], label_selector="ts-segmenter.io/project=49")
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]
    event = first_watch_event(custom.list_namespaced_custom_object, *ISVC[:2], ns, ISVC[2])
    assert event["type"] == "ADDED"
    patch = {"metadata": {"annotations": {"ts-segmenter.io/model-version": "v9"}}}
    expect_forbidden(lambda: custom.patch_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name, patch))
    expect_forbidden(lambda: custom.delete_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name))


def test_trainer_publishes_inference_services(installed):
    ns = installed.namespace
    custom = kubernetes.client.CustomObjectsApi(installed.clients["trainer"])
    isvc = isvc_from_template(installed, "50")
    name = isvc["metadata"]["name"]
    custom.create_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], isvc)
    patch = {"metadata": {"annotations": {"ts-segmenter.io/model-version": "v2"}}}
    patched = custom.patch_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name, patch)
    assert patched["metadata"]["annotations"]["ts-segmenter.io/model-version"] == "v2"
    current = custom.get_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name)
    current["spec"]["predictor"]["maxReplicas"] = 2
    replaced = custom.replace_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name, current)
    assert replaced["spec"]["predictor"]["maxReplicas"] == 2
    listed = custom.list_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], label_selector="ts-segmenter.io/project=50")
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]
    assert first_watch_event(custom.list_namespaced_custom_object, *ISVC[:2], ns, ISVC[2])["type"] == "ADDED"
    expect_forbidden(lambda: custom.delete_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], name))


def test_trainer_may_not_create_jobs_or_read_pods_and_secrets(installed):
    ns = installed.namespace
    client = installed.clients["trainer"]
    expect_forbidden(lambda: kubernetes.client.BatchV1Api(client).create_namespaced_job(ns, job_from_template(installed, "51")))
    expect_forbidden(lambda: kubernetes.client.BatchV1Api(client).list_namespaced_job(ns))
    expect_forbidden(lambda: kubernetes.client.CoreV1Api(client).list_namespaced_pod(ns))
    expect_forbidden(lambda: kubernetes.client.CoreV1Api(client).list_namespaced_secret(ns))


def test_predictor_can_do_nothing(installed):
    ns = installed.namespace
    client = installed.clients["predictor"]
    core = kubernetes.client.CoreV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    batch = kubernetes.client.BatchV1Api(client)
    expect_forbidden(lambda: core.list_namespaced_pod(ns))
    expect_forbidden(lambda: core.list_namespaced_secret(ns))
    expect_forbidden(lambda: core.list_namespaced_config_map(ns))
    expect_forbidden(lambda: batch.list_namespaced_job(ns))
    expect_forbidden(lambda: batch.create_namespaced_job(ns, job_from_template(installed, "52")))
    expect_forbidden(lambda: custom.list_namespaced_custom_object(*ISVC[:2], ns, ISVC[2]))
    expect_forbidden(lambda: custom.create_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], isvc_from_template(installed, "52")))


def test_the_chart_binds_only_its_own_service_accounts(installed):
    bindings = find(installed.objects, "RoleBinding")
    subjects = {(s["kind"], s["namespace"], s["name"]) for b in bindings for s in b["subjects"]}
    assert subjects == {
        ("ServiceAccount", installed.namespace, installed.sa("gateway")),
        ("ServiceAccount", installed.namespace, installed.sa("trainer")),
    }
