"""The real trainer, run the way its Job runs it, rolls the project's InferenceService out.

Everything comes from the Helm chart's rendering: the trainer's command, arguments and
environment are those of the Job template (``envFrom`` the training ConfigMap, the Label Studio
API key from the chart's Secret, ``KUBERNETES_NAMESPACE`` from the downward API,
``PUBLISHER=kubernetes``, ...). What a cluster would provide is stood in for: the models PVC and the
templates ConfigMap mounts are temp directories (``MODEL_DIR`` etc. are remapped onto them), the
in-cluster ServiceAccount is ``KUBECONFIG`` for the test API server (``tests/support/apiserver.py``),
and Label Studio is the real one of ``tests/support/labelstudio.py`` holding synthetic labelled series.

Nothing runs KServe's controller here, so the test plays it: it writes the InferenceService's
``/status`` (``Ready``, ``observedGeneration``, ``address.url``) and, for routing, starts the real
predictor with the ISVC container's own arguments on the version directory STORAGE_URI names.

Checked: the first run creates the ISVC pointing at the new version; the gateway serves that
version only once the ISVC is Ready and routes ``/predict`` to its address; the second run patches
the ISVC to the second version (the first stays on disk), and ``/setup`` keeps answering the first
until the ISVC is Ready for the new generation; ``python -m trainer.rollback`` points it back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import kubernetes.client
import pytest
from charts.chartutil import JOB_TEMPLATE_KEY, find, render, templates_configmap

from fixtures import LABEL_CONFIG, async_wait_until, free_port, synthetic_csv
from gateway.app import create_app
from gateway.orchestrator.kubernetes import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION, MODEL_VERSION_ANNOTATION, PREVIOUS_VERSION_ANNOTATION
from gateway.settings import GatewaySettings
from tscore.artifacts import ArtifactStore

if TYPE_CHECKING:
    from support.apiserver import ApiServer
    from support.labelstudio import LabelStudio

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

RESULT_PREFIX = "TS_SEGMENTER_RESULT "
PREFIX = "tss-ts-segmenter-p"
CLAIM = "tss-ts-segmenter-models"


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    with apiserver.fresh_namespace("tr") as name:
        yield name


@pytest.fixture(scope="module")
def ls_project(label_studio: LabelStudio, tmp_path_factory) -> dict[str, Any]:
    """A Label Studio project with three annotated synthetic series; its id and task references."""
    project = label_studio.create_project(f"rollout {uuid.uuid4().hex[:6]}", LABEL_CONFIG)
    directory = tmp_path_factory.mktemp("csv")
    tasks = []
    for seed in range(3):
        text, regions = synthetic_csv(seed=seed)
        path = directory / f"series-{seed}.csv"
        path.write_text(text)
        task = label_studio.import_csv_task(project, path)
        label_studio.annotate(task, [
            {"id": f"r{seed}-{i}", "from_name": "label", "to_name": "ts", "type": "timeserieslabels", "value": value}
            for i, value in enumerate(regions)
        ])
        tasks.append(label_studio.task(task))
    return {"id": project, "tasks": tasks}


def rendered_chart(label_studio: LabelStudio) -> list[dict[str, Any]]:
    """The chart for this Label Studio, with a training small enough for a test."""
    return render({
        "labelStudio": {"url": label_studio.url, "apiKey": label_studio.api_key},
        "training": {"epochs": 5, "sequenceSize": 40, "hiddenSize": 16, "validationGateMargin": 1},
    })


def container_env(container: dict[str, Any], objects: list[dict[str, Any]], *, namespace: str, mounts: dict[str, Path]) -> dict[str, str]:
    """A container's environment as the kubelet would build it from the rendered objects.

    ``mounts`` maps volume mount paths to the local directories standing in for them; values
    under a mount path are rewritten onto the stand-in.
    """

    def config_map(name: str) -> dict[str, str]:
        (found,) = find(objects, "ConfigMap", name)
        return found["data"]

    def secret(name: str) -> dict[str, str]:
        (found,) = find(objects, "Secret", name)
        return {k: base64.b64decode(v).decode() for k, v in found.get("data", {}).items()} | found.get("stringData", {})

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(secret(source["secretRef"]["name"]))
    for entry in container.get("env", []):
        if "value" in entry:
            value = str(entry["value"])
        else:
            ref = entry["valueFrom"]
            if "fieldRef" in ref:
                assert ref["fieldRef"]["fieldPath"] == "metadata.namespace", ref
                value = namespace
            elif "secretKeyRef" in ref:
                value = secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            else:
                value = config_map(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path + "/"):
                value = str(mounts[mount_path]) + value[len(mount_path):]
                break
        env[entry["name"]] = value
    return env


def base_env() -> dict[str, str]:
    """What a container image provides besides the pod's env (no settings leak in from the test run)."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def python_command(command: list[str]) -> list[str]:
    """The image's ``python`` is this test's interpreter."""
    return [sys.executable if part == "python" else part for part in command]


class TrainerJob:
    """Runs ``python -m trainer`` (or another entry point) with the Job template's command and env."""

    def __init__(self, objects: list[dict[str, Any]], namespace: str, kubeconfig: Path, workdir: Path) -> None:
        templates = templates_configmap(objects)
        self.job = templates[JOB_TEMPLATE_KEY]
        self.container = self.job["spec"]["template"]["spec"]["containers"][0]
        self.models = workdir / "pvc"
        self.templates_dir = workdir / "templates"
        self.models.mkdir()
        self.templates_dir.mkdir()
        (templates_map,) = [o for o in find(objects, "ConfigMap") if o["metadata"]["labels"].get("app.kubernetes.io/component") == "templates"]
        for key, text in templates_map["data"].items():  # the ConfigMap as the kubelet mounts it
            (self.templates_dir / key).write_text(text)
        volumes = {v["name"]: v for v in self.job["spec"]["template"]["spec"]["volumes"]}
        mounts: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] == CLAIM
                mounts[mount["mountPath"]] = self.models
            elif "configMap" in volume:
                mounts[mount["mountPath"]] = self.templates_dir
            else:
                mounts[mount["mountPath"]] = workdir
        self.env = base_env() | container_env(self.container, objects, namespace=namespace, mounts=mounts) | {"KUBECONFIG": str(kubeconfig)}
        self.workdir = workdir

    def run(self, project: int, command: list[str] | None = None, args: list[str] | None = None) -> subprocess.CompletedProcess:
        argv = python_command(command or self.container["command"]) + (args if args is not None else ["--project", str(project)])
        return subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600)

    def train(self, project: int) -> dict[str, Any]:
        """One training run; its result line."""
        assert self.container["args"] == ["--project", "placeholder"]  # the gateway sets these per project
        done = self.run(project)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        line = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)][-1]
        return json.loads(line[len(RESULT_PREFIX):])


class Isvcs:
    """Test-side access to InferenceServices (admin), off the event loop."""

    def __init__(self, apiserver: ApiServer, namespace: str) -> None:
        self.api = kubernetes.client.CustomObjectsApi(apiserver.api_client())
        self.namespace = namespace

    async def get(self, name: str) -> dict[str, Any]:
        response = await asyncio.to_thread(
            self.api.get_namespaced_custom_object, ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL, name, _preload_content=False
        )
        return json.loads(response.data)

    async def mark_ready(self, name: str, url: str) -> dict[str, Any]:
        """Play KServe's controller: the ISVC is Ready for its current generation at ``url``."""
        generation = (await self.get(name))["metadata"]["generation"]
        status = {
            "observedGeneration": generation,
            "address": {"url": url},
            "url": url,
            "conditions": [
                {"type": "PredictorReady", "status": "True", "lastTransitionTime": "2026-11-24T21:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-24T21:00:00Z"},
            ],
        }
        response = await asyncio.to_thread(
            self.api.patch_namespaced_custom_object_status, ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL, name,
            {"status": status}, _content_type="application/merge-patch+json", _preload_content=False,
        )
        return json.loads(response.data)


def storage_uri(isvc: dict[str, Any]) -> str:
    env = isvc["spec"]["predictor"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "STORAGE_URI")


async def setup_version(client: httpx.AsyncClient, project: int) -> str:
    response = await client.post("/setup", json={"project": f"{project}.1795556495", "schema": LABEL_CONFIG})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


async def start_predictor(isvc: dict[str, Any], models: Path, port: int, workdir: Path) -> asyncio.subprocess.Process:
    """The predictor as KServe would run it: the ISVC container's command, args and env; STORAGE_URI's directory as /mnt/models."""
    container = isvc["spec"]["predictor"]["containers"][0]
    uri = storage_uri(isvc)
    claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
    assert claim == CLAIM
    mount = str(models / sub_path)
    args = [mount if a == "/mnt/models" else a for a in container["args"]] + ["--http_port", str(port), "--enable_grpc", "false"]
    env = base_env() | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return await asyncio.create_subprocess_exec(
        *python_command(container["command"]), *args, cwd=workdir, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def test_trainer_rolls_the_isvc_and_the_gateway_follows_readiness(apiserver, label_studio, ls_project, namespace, tmp_path, monkeypatch):
    project = ls_project["id"]
    name = f"{PREFIX}-{project}"
    objects = rendered_chart(label_studio)
    trainer = TrainerJob(objects, namespace, apiserver.kubeconfig_path, tmp_path)
    assert trainer.env["PUBLISHER"] == "kubernetes" and trainer.env["KUBERNETES_NAMESPACE"] == namespace
    assert trainer.env["MODELS_PVC_NAME"] == CLAIM and trainer.env["ISVC_NAME_PREFIX"] == PREFIX
    isvcs = Isvcs(apiserver, namespace)
    store = ArtifactStore(trainer.models)

    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = GatewaySettings(
        orchestrator="kubernetes", job_template_path=str(trainer.templates_dir / JOB_TEMPLATE_KEY), kubernetes_namespace=namespace,
        isvc_name_prefix=PREFIX, label_studio_url=label_studio.url, label_studio_api_key=label_studio.api_key,
        predictor_retry_seconds=30, _env_file=None,
    )
    app = create_app(settings)
    predictor = None
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        orchestrator = app.state.orchestrator
        try:
            # First training: the ISVC appears, pointing at the new version; nothing is served until it is Ready.
            first = await asyncio.to_thread(trainer.train, project)
            assert first["status"] == "published", first
            v1 = first["version"]
            isvc = await isvcs.get(name)
            assert isvc["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == v1
            assert storage_uri(isvc) == f"pvc://{CLAIM}/project-{project}/{v1}"
            assert isvc["spec"]["predictor"]["containers"][0]["args"] == ["--model_name", name, "--model_dir", "/mnt/models"]
            assert (trainer.models / f"project-{project}" / v1 / "model.pt").is_file()
            assert store.current(project) == v1

            await async_wait_until(lambda: orchestrator.project_status(project).details.get("rolling_out_version") == v1, timeout=15, message="the gateway to see the new ISVC")
            assert orchestrator.served_version(project) is None
            assert await setup_version(client, project) == f"p{project}-untrained"

            port = free_port()
            await isvcs.mark_ready(name, f"http://127.0.0.1:{port}")
            async def served_first():
                return await setup_version(client, project) == v1

            await async_wait_until(served_first, timeout=15, message="/setup to report the first version")
            endpoint = orchestrator.predictor_endpoint(project)
            assert (endpoint.base_url, endpoint.model_name) == (f"http://127.0.0.1:{port}", name)

            # /predict goes to the ISVC's address, model name = ISVC name.
            predictor = await start_predictor(isvc, trainer.models, port, tmp_path)
            task = ls_project["tasks"][0]
            response = await client.post("/predict", json={"tasks": [task], "label_config": LABEL_CONFIG, "project": f"{project}.1795556495"})
            assert response.status_code == 200, response.text
            (prediction,) = response.json()["results"]
            assert prediction["model_version"] == v1 and prediction["result"], prediction

            # Second training: the ISVC is patched in place; the first version stays on disk.
            second = await asyncio.to_thread(trainer.train, project)
            assert second["status"] == "published", second
            v2 = second["version"]
            assert v2 != v1
            rolled = await isvcs.get(name)
            assert rolled["metadata"]["uid"] == isvc["metadata"]["uid"]
            assert rolled["metadata"]["generation"] == isvc["metadata"]["generation"] + 1
            assert rolled["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == v2
            assert rolled["metadata"]["annotations"][PREVIOUS_VERSION_ANNOTATION] == v1
            assert storage_uri(rolled) == f"pvc://{CLAIM}/project-{project}/{v2}"
            assert store.versions(project) == [v1, v2] and store.current(project) == v2

            # Still Ready for the OLD generation: the gateway keeps serving v1 until KServe reports the new one.
            await async_wait_until(lambda: orchestrator.project_status(project).details.get("rolling_out_version") == v2, timeout=15, message="the gateway to see the patched ISVC")
            assert await setup_version(client, project) == v1
            await isvcs.mark_ready(name, f"http://127.0.0.1:{port}")

            async def switched():
                return await setup_version(client, project) == v2

            await async_wait_until(switched, timeout=15, message="/setup to report the second version")
            metrics = (await client.get("/metrics")).text
            assert f'ts_segmenter_served_version_info{{project="{project}",version="{v2}"}} 1.0' in metrics
            assert f'version="{v1}"' not in metrics

            # Rollback: the documented helper, with the trainer's own environment.
            done = await asyncio.to_thread(trainer.run, project, ["python", "-m", "trainer.rollback"], ["--project", str(project), "--version", v1])
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            back = await isvcs.get(name)
            assert back["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == v1
            assert back["metadata"]["annotations"][PREVIOUS_VERSION_ANNOTATION] == v2
            assert storage_uri(back) == f"pvc://{CLAIM}/project-{project}/{v1}"
            assert store.current(project) == v1 and store.versions(project) == [v1, v2]
            missing = await asyncio.to_thread(trainer.run, project, ["python", "-m", "trainer.rollback"], ["--project", str(project), "--version", "p1-v0099-20260101T000000Z"])
            assert missing.returncode == 2
        finally:
            if predictor is not None and predictor.returncode is None:
                predictor.terminate()
                try:
                    await asyncio.wait_for(predictor.wait(), 10)
                except TimeoutError:
                    predictor.kill()
                    await predictor.wait()
