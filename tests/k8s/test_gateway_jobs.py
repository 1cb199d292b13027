"""The gateway in Kubernetes mode against a REAL kube-apiserver (``tests/support/apiserver.py``).

The app is built by ``create_app`` with ``ORCHESTRATOR=kubernetes`` and ``KUBECONFIG`` pointing at
the test API server, and driven over ASGI (lifespan included) with httpx. The Job template is the
one the Helm chart renders. Nothing runs Pods here (no kubelet): the tests play the job controller
by writing the Job's ``/status`` subresource (``Complete``/``Failed`` conditions), the way the
real controller reports a finished training.

Checked: a START_TRAINING webhook creates the expected Job at once; events during an active Job
create no second Job but one follow-up, recorded on the Job, which is launched exactly once when
the Job completes - also across gateway restarts; a failed Job shows in ``/status`` and
``/metrics``; an API server that refuses (RBAC 403) or is down never slows the webhook, shows in
``/status`` and ``/metrics``, and is retried with back-off.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import kubernetes.client
import pytest
import yaml
from charts.chartutil import JOB_TEMPLATE_KEY, render, templates_configmap

from fixtures import async_wait_until, free_port
from gateway.app import create_app
from gateway.orchestrator.kubernetes import (
    FOLLOW_UP_JOB_ANNOTATION,
    FOLLOW_UP_OF_ANNOTATION,
    FOLLOW_UP_REQUESTED_ANNOTATION,
    PROJECT_LABEL,
    REASON_ANNOTATION,
)
from gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from support.apiserver import ApiServer

pytestmark = pytest.mark.k8s

PREFIX = "tss-ts-segmenter-p"
WEBHOOK_BUDGET_S = 1.0  # Label Studio's webhook timeout


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def job_template() -> dict[str, Any]:
    """The training Job template rendered by the chart (release ``tss``)."""
    return templates_configmap(render())[JOB_TEMPLATE_KEY]


@pytest.fixture
def job_template_path(tmp_path: Path, job_template) -> Path:
    """The template where the chart mounts it for the gateway (here: a temp file)."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_template))
    return path


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    """A fresh namespace (InferenceService CRD installed), deleted after the test."""
    with apiserver.fresh_namespace("gw") as name:
        yield name


def project_id() -> int:
    """A project id no other test uses."""
    return int(uuid.uuid4().int % 900_000) + 100_000


def gateway_settings(namespace: str, job_template_path: Path) -> GatewaySettings:
    return GatewaySettings(
        orchestrator="kubernetes", job_template_path=str(job_template_path), kubernetes_namespace=namespace,
        isvc_name_prefix=PREFIX, model_dir="/nonexistent", _env_file=None,
    )


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The real app with its lifespan (orchestrator start/stop), and an httpx client on it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, app.state.orchestrator


async def webhook(client: httpx.AsyncClient, project: int, action: str = "START_TRAINING") -> httpx.Response:
    """Send an event like Label Studio does and check it is answered at once with 201."""
    started = time.perf_counter()
    body: dict[str, Any] = {"action": action, "project": {"id": project, "title": "t"}}
    if action.startswith("ANNOTATION"):
        body["annotation"] = {"id": 1, "project": project, "result": []}
    response = await client.post("/webhook", json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    assert elapsed < WEBHOOK_BUDGET_S, f"webhook took {elapsed:.2f} s"
    return response


class Cluster:
    """Test-side API calls (admin), run in worker threads so the gateway's event loop keeps going."""

    def __init__(self, apiserver: ApiServer, namespace: str) -> None:
        self.namespace = namespace
        self.batch = kubernetes.client.BatchV1Api(apiserver.api_client())

    async def jobs(self, project: int) -> list[dict[str, Any]]:
        """The project's Jobs, oldest first."""
        response = await asyncio.to_thread(
            self.batch.list_namespaced_job, self.namespace, label_selector=f"{PROJECT_LABEL}={project}", _preload_content=False
        )
        items = json.loads(response.data)["items"]
        return sorted(items, key=lambda j: (j["metadata"]["creationTimestamp"], j["metadata"].get("annotations", {}).get("ts-segmenter.io/created-at", "")))

    async def job(self, name: str) -> dict[str, Any]:
        response = await asyncio.to_thread(self.batch.read_namespaced_job, name, self.namespace, _preload_content=False)
        return json.loads(response.data)

    async def finish(self, name: str, *, failed: bool = False) -> None:
        """Play the job controller: mark the Job Complete (succeeded=1) or Failed through /status."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if failed:
            status = {
                "failed": 2, "conditions": [{
                    "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now,
                }],
            }
        else:
            status = {"succeeded": 1, "completionTime": now, "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}]}
        status["startTime"] = now
        await asyncio.to_thread(
            self.batch.patch_namespaced_job_status, name, self.namespace, {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False,
        )


@pytest.fixture
def cluster(apiserver: ApiServer, namespace: str) -> Cluster:
    return Cluster(apiserver, namespace)


@pytest.fixture
def admin_kubeconfig(apiserver: ApiServer, monkeypatch) -> Path:
    """``KUBECONFIG`` for the gateway: the admin user (least-privilege Roles are the chart tests' topic)."""
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return apiserver.kubeconfig_path


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_part = sample.partition("{")
        if metric_name != name:
            continue
        found = ",".join(sorted(label_part.rstrip("}").split(","))) if label_part else ""
        if found == wanted:
            return float(value)
    return None


async def status_of(client: httpx.AsyncClient, project: int) -> dict[str, Any]:
    response = await client.get(f"/status/{project}")
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- tests


async def test_start_training_creates_the_expected_job(namespace, job_template_path, job_template, cluster, admin_kubeconfig):
    project = project_id()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, orchestrator):
        assert (await client.get("/health")).json()["orchestrator"] == "kubernetes"
        await webhook(client, project)
        jobs = await async_wait_until(lambda: cluster.jobs(project), timeout=15, message="the training Job")
        assert len(jobs) == 1
        job = jobs[0]
        name = job["metadata"]["name"]
        assert name.startswith(f"tss-ts-segmenter-train-{project}-") and len(name) <= 63
        assert job["metadata"]["labels"][PROJECT_LABEL] == str(project)
        assert job["metadata"]["annotations"][REASON_ANNOTATION] == "START_TRAINING"
        pod = job["spec"]["template"]
        assert pod["metadata"]["labels"][PROJECT_LABEL] == str(project), "kubectl logs -l ts-segmenter.io/project=<id> must find the Pod"
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "trainer"]
        assert container["args"] == ["--project", str(project)]
        assert container["image"] == job_template["spec"]["template"]["spec"]["containers"][0]["image"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"models": "tss-ts-segmenter-models"}
        assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]
        assert job["spec"]["backoffLimit"] == job_template["spec"]["backoffLimit"]

        status = await async_wait_until(lambda: _running(client, project), timeout=10, message="status running")
        assert status["details"]["active_job"] == name
        assert status["follow_up_pending"] is False
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_trainings_started_total", project=str(project)) == 1
        assert metric(text, "ts_segmenter_training_active", project=str(project)) == 1


async def _running(client: httpx.AsyncClient, project: int) -> dict[str, Any] | None:
    status = await status_of(client, project)
    return status if status["state"] == "running" else None


async def test_events_during_a_job_give_exactly_one_follow_up(namespace, job_template_path, cluster, admin_kubeconfig):
    project = project_id()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, orchestrator):
        await webhook(client, project)
        (first,) = await async_wait_until(lambda: cluster.jobs(project), timeout=15, message="the first Job")
        first_name = first["metadata"]["name"]
        await async_wait_until(lambda: _running(client, project), timeout=10, message="the gateway to see the Job")

        await webhook(client, project, "ANNOTATION_CREATED")
        await webhook(client, project, "START_TRAINING")

        async def marked():
            job = await cluster.job(first_name)
            return job if FOLLOW_UP_REQUESTED_ANNOTATION in job["metadata"].get("annotations", {}) else None

        await async_wait_until(marked, timeout=15, message="the follow-up request on the running Job")
        assert [j["metadata"]["name"] for j in await cluster.jobs(project)] == [first_name], "no second Job while one is active"
        status = await status_of(client, project)
        assert status["state"] == "running" and status["follow_up_pending"] is True

        await cluster.finish(first_name)

        async def two_jobs():
            jobs = await cluster.jobs(project)
            return jobs if len(jobs) >= 2 else None

        jobs = await async_wait_until(two_jobs, timeout=15, message="the follow-up Job")
        follow_up = jobs[1]
        assert follow_up["metadata"]["annotations"][FOLLOW_UP_OF_ANNOTATION] == first_name

        async def handled():
            job = await cluster.job(first_name)
            return job["metadata"]["annotations"].get(FOLLOW_UP_JOB_ANNOTATION) == follow_up["metadata"]["name"]

        await async_wait_until(handled, timeout=15, message="the finished Job marked as followed up")
        status = await async_wait_until(lambda: _running(client, project), timeout=10, message="the follow-up running")
        assert status["details"]["active_job"] == follow_up["metadata"]["name"]
        assert status["follow_up_pending"] is False
        assert status["last_result"] == "succeeded"

        await cluster.finish(follow_up["metadata"]["name"])

        async def idle():
            status = await status_of(client, project)
            return status if status["state"] == "idle" and status["details"].get("last_job") == follow_up["metadata"]["name"] else None

        await async_wait_until(idle, timeout=15, message="the project idle after the follow-up")
        assert len(await cluster.jobs(project)) == 2, "exactly one follow-up"
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_trainings_total", project=str(project), result="succeeded") == 2
        assert metric(text, "ts_segmenter_trainings_started_total", project=str(project)) == 2


async def test_a_restart_still_launches_the_pending_follow_up_once(namespace, job_template_path, cluster, admin_kubeconfig):
    project = project_id()
    settings = gateway_settings(namespace, job_template_path)
    async with running_gateway(settings) as (client, _):
        await webhook(client, project)
        (first,) = await async_wait_until(lambda: cluster.jobs(project), timeout=15, message="the first Job")
        await async_wait_until(lambda: _running(client, project), timeout=10, message="the gateway to see the Job")
        await webhook(client, project)

        async def marked():
            return FOLLOW_UP_REQUESTED_ANNOTATION in (await cluster.job(first["metadata"]["name"]))["metadata"].get("annotations", {})

        await async_wait_until(marked, timeout=15, message="the follow-up request on the Job")

    # The gateway is down while the Job finishes.
    await cluster.finish(first["metadata"]["name"])
    assert len(await cluster.jobs(project)) == 1

    async with running_gateway(settings) as (client, _):
        async def two_jobs():
            jobs = await cluster.jobs(project)
            return jobs if len(jobs) >= 2 else None

        jobs = await async_wait_until(two_jobs, timeout=15, message="the follow-up after the restart")
        follow_up = jobs[1]["metadata"]["name"]
        await async_wait_until(lambda: _running(client, project), timeout=10, message="the follow-up running")

    async with running_gateway(settings) as (client, _):
        status = await async_wait_until(lambda: _running(client, project), timeout=10, message="a third gateway to see the follow-up")
        assert status["details"]["active_job"] == follow_up
        assert status["follow_up_pending"] is False
        assert [j["metadata"]["name"] for j in await cluster.jobs(project)] == [first["metadata"]["name"], follow_up], "launched once"


async def test_a_finished_job_with_a_follow_up_request_is_followed_up_at_start(namespace, job_template_path, job_template, cluster, apiserver, admin_kubeconfig):
    """The level-triggered state alone (a finished Job annotated by someone else, e.g. another replica) is enough."""
    from gateway.orchestrator.kubernetes import build_training_job

    project = project_id()
    name = f"tss-ts-segmenter-train-{project}-bcdfg"
    job = build_training_job(job_template, project, name, reason="START_TRAINING")
    job["metadata"]["annotations"][FOLLOW_UP_REQUESTED_ANNOTATION] = "2026-11-24T21:00:00Z ANNOTATION_CREATED"
    await asyncio.to_thread(cluster.batch.create_namespaced_job, namespace, job, _preload_content=False)
    await cluster.finish(name)
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, _):
        async def two_jobs():
            jobs = await cluster.jobs(project)
            return jobs if len(jobs) == 2 else None

        jobs = await async_wait_until(two_jobs, timeout=15, message="the follow-up Job")
        assert jobs[1]["metadata"]["annotations"][FOLLOW_UP_OF_ANNOTATION] == name


async def test_a_failed_job_shows_in_status_and_metrics(namespace, job_template_path, cluster, admin_kubeconfig):
    project = project_id()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, _):
        await webhook(client, project)
        (job,) = await async_wait_until(lambda: cluster.jobs(project), timeout=15, message="the Job")
        await async_wait_until(lambda: _running(client, project), timeout=10, message="the gateway to see the Job")
        await cluster.finish(job["metadata"]["name"], failed=True)

        async def failed():
            status = await status_of(client, project)
            return status if status["last_result"] == "failed" else None

        status = await async_wait_until(failed, timeout=15, message="the failure in /status")
        assert status["state"] == "idle"
        assert status["last_error"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"
        assert status["details"]["last_job"] == job["metadata"]["name"]
        assert status["last_finished_at"]
        listed = (await client.get("/status")).json()
        assert project in [p["project"] for p in listed["projects"]]
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_trainings_total", project=str(project), result="failed") == 1
        assert metric(text, "ts_segmenter_training_active", project=str(project)) == 0
        assert (await client.get("/health")).status_code == 200


def _service_account(apiserver: ApiServer, namespace: str, name: str, rules: list[dict] | None) -> str:
    """A ServiceAccount bound to a Role with ``rules`` (none: no rights at all); returns its token."""
    client = apiserver.api_client()
    kubernetes.client.CoreV1Api(client).create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    if rules is not None:
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        })
    return apiserver.service_account_token(namespace, name)


READ_ONLY = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "list", "watch"]},
]


async def test_a_token_without_rights_is_reported_and_the_webhook_still_answers(apiserver, namespace, job_template_path, tmp_path, monkeypatch):
    token = await asyncio.to_thread(_service_account, apiserver, namespace, "nobody", None)
    monkeypatch.setenv("KUBECONFIG", str(apiserver.write_kubeconfig(tmp_path / "nobody.kubeconfig", token)))
    project = project_id()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, _):
        await webhook(client, project)
        await webhook(client, project)
        status = await status_of(client, project)
        assert status["state"] == "queued"
        errors = status["details"]["cluster_errors"]
        assert any(e.startswith("list_jobs: 403") and "forbidden" in e for e in errors), errors
        assert "403" in status["last_error"]
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_orchestrator_errors_total", operation="list_jobs") >= 1
        assert metric(text, "ts_segmenter_orchestrator_errors_total", operation="list_inferenceservices") >= 1
        assert (await client.get("/health")).status_code == 200
        setup = await client.post("/setup", json={"project": str(project), "schema": "<View/>"})
        assert setup.status_code == 200 and setup.json()["model_version"] == f"p{project}-untrained"


async def test_a_refused_create_is_reported_and_retried(apiserver, namespace, job_template_path, cluster, tmp_path, monkeypatch):
    """The gateway may read but not create Jobs: the error shows, the request waits; once granted, the Job appears."""
    token = await asyncio.to_thread(_service_account, apiserver, namespace, "reader", READ_ONLY)
    monkeypatch.setenv("KUBECONFIG", str(apiserver.write_kubeconfig(tmp_path / "reader.kubeconfig", token)))
    project = project_id()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, _):
        await webhook(client, project)

        async def refused():
            status = await status_of(client, project)
            return status if status["last_error"] and status["last_error"].startswith("create_job: 403") else None

        status = await async_wait_until(refused, timeout=15, message="the refusal in /status")
        assert status["state"] == "queued"
        assert "cannot create resource \"jobs\"" in status["last_error"]
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_orchestrator_errors_total", operation="create_job") >= 1
        assert await cluster.jobs(project) == []

        rbac = kubernetes.client.RbacAuthorizationV1Api(apiserver.api_client())
        granted = READ_ONLY + [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "patch"]}]
        await asyncio.to_thread(rbac.patch_namespaced_role, "reader", namespace, {"rules": granted})
        jobs = await async_wait_until(lambda: cluster.jobs(project), timeout=40, message="the Job after the grant (back-off retry)")
        assert len(jobs) == 1

        async def running_without_errors():
            status = await _running(client, project)
            return status if status and "cluster_errors" not in status["details"] else None

        # The Job can reach the watch cache a moment before the create call that made it returns.
        status = await async_wait_until(running_without_errors, timeout=10, message="status running, the refusal gone")
        assert status["last_error"] is None or not status["last_error"].startswith("create_job")


async def test_an_unreachable_api_server_never_takes_the_gateway_down(apiserver, namespace, job_template_path, tmp_path, monkeypatch):
    kubeconfig = yaml.safe_load(apiserver.kubeconfig_path.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path = tmp_path / "down.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    project = project_id()
    started = time.perf_counter()
    async with running_gateway(gateway_settings(namespace, job_template_path)) as (client, _):
        assert time.perf_counter() - started < 10, "start-up must not wait long on a dead API server"
        await webhook(client, project)
        assert (await client.get("/health")).status_code == 200
        status = await status_of(client, project)
        assert status["state"] == "queued"
        assert any(e.startswith("list_jobs:") for e in status["details"]["cluster_errors"])
        text = (await client.get("/metrics")).text
        assert metric(text, "ts_segmenter_orchestrator_errors_total", operation="list_jobs") >= 1
