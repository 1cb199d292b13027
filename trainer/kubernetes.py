"""Rolling a new version out on Kubernetes: the project's KServe InferenceService points at it.

The trainer runs as a Job with the models PVC mounted at ``MODEL_DIR``. After the version is
written (atomically) and marked current, :class:`KubernetesPublisher` builds the project's
InferenceService from the template the Helm chart renders (``ISVC_TEMPLATE_PATH``) and applies
it with server-side apply (field manager ``ts-segmenter-trainer``). Only the per-project fields
change, among them ``STORAGE_URI=pvc://<claim>/project-<id>/<version>`` and the
``ts-segmenter.io/model-version`` annotation; KServe then rolls the predictor over while the
previous version keeps serving, and the gateway switches ``/setup``'s version once the
InferenceService is Ready.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

from gateway.orchestrator.kubernetes import (
    ISVC_GROUP,
    ISVC_PLURAL,
    ISVC_VERSION,
    MODEL_VERSION_ANNOTATION,
    PREVIOUS_VERSION_ANNOTATION,
    PROJECT_LABEL,
    api_error_message,
    isvc_name,
    load_api_client,
    load_manifest,
)
from trainer.publish import PublishError
from trainer.settings import TrainingSettings
from tscore.artifacts import project_dirname

log = logging.getLogger(__name__)

FIELD_MANAGER = "ts-segmenter-trainer"
PREDICTOR_CONTAINER = "kserve-container"
MODEL_MOUNT = "/mnt/models"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


def storage_uri(claim: str, project: int, version: str) -> str:
    """Where KServe finds a version on the models PVC: ``pvc://<claim>/project-<id>/<version>``."""
    return f"pvc://{claim}/{project_dirname(project)}/{version}"


def build_inference_service(template: dict, project: int, version: str, *, name: str, claim: str, previous_version: str | None = None) -> dict:
    """The InferenceService serving ``version`` of ``project``: ``template`` with only the per-project fields set.

    Overwritten: ``metadata.name``, the project label (on the ISVC and on ``spec.predictor``), the
    model-version annotation (and the previous-version one when given), the predictor container's
    ``args`` (``--model_name <name> --model_dir /mnt/models``), its ``STORAGE_URI`` and its
    readiness probe path (``/v2/models/<name>/ready``). Everything else is the chart's.

    Raises:
        ValueError: the template has no predictor container.
    """
    isvc = copy.deepcopy(template)
    metadata = isvc.setdefault("metadata", {})
    metadata["name"] = name
    (metadata.get("labels") or metadata.setdefault("labels", {}))[PROJECT_LABEL] = str(project)
    annotations = metadata.get("annotations") or metadata.setdefault("annotations", {})
    annotations[MODEL_VERSION_ANNOTATION] = version
    if previous_version:
        annotations[PREVIOUS_VERSION_ANNOTATION] = previous_version
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    containers = predictor.get("containers") or []
    if not containers:
        raise ValueError("the InferenceService template has no spec.predictor.containers")
    (predictor.get("labels") or predictor.setdefault("labels", {}))[PROJECT_LABEL] = str(project)
    container = containers[0]
    if container.get("name") != PREDICTOR_CONTAINER:
        raise ValueError(f"the InferenceService template's first container must be named {PREDICTOR_CONTAINER!r}, not {container.get('name')!r}")
    container["args"] = ["--model_name", name, "--model_dir", MODEL_MOUNT]
    uri = storage_uri(claim, project, version)
    env = container.get("env") or container.setdefault("env", [])
    entries = [e for e in env if e.get("name") == "STORAGE_URI"]
    if entries:
        for entry in entries:
            entry.pop("valueFrom", None)
            entry["value"] = uri
    else:
        env.append({"name": "STORAGE_URI", "value": uri})
    probe = container.get("readinessProbe")
    ready_path = f"/v2/models/{name}/ready"
    if probe and "httpGet" in probe:
        probe["httpGet"]["path"] = ready_path
    elif not probe:
        container["readinessProbe"] = {"httpGet": {"path": ready_path, "port": 8080}}
    return isvc


class KubernetesPublisher:
    """Creates or updates (server-side apply) the project's InferenceService to serve a new version."""

    def __init__(self, api_client_factory: Callable[[], Any], template: dict, *, namespace: str, name_prefix: str, claim: str, timeout: float = 30.0) -> None:
        """Use :meth:`from_settings` in the trainer; tests may pass their own client factory and template."""
        self._client_factory = api_client_factory
        self.template = template
        self.namespace = namespace
        self.name_prefix = name_prefix
        self.claim = claim
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: TrainingSettings) -> KubernetesPublisher:
        """The chart's InferenceService template, in-cluster credentials (else ``KUBECONFIG``).

        Raises:
            PublishError: the template cannot be read (the trainer then keeps the previous version).
        """
        try:
            template = load_manifest(settings.isvc_template_path, f"{ISVC_GROUP}/{ISVC_VERSION}", "InferenceService")
        except ValueError as exc:
            raise PublishError(str(exc)) from exc
        return cls(
            load_api_client, template, namespace=settings.kubernetes_namespace,
            name_prefix=settings.isvc_name_prefix, claim=settings.models_pvc_name,
        )

    def rollout(self, project: int, version: str) -> None:
        """Point the project's InferenceService at ``version``; KServe rolls the predictor over.

        Raises:
            PublishError: the API server refused or could not be reached; nothing was changed.
        """
        import kubernetes.client

        name = isvc_name(self.name_prefix, project)
        try:
            client = self._client_factory()
        except Exception as exc:  # noqa: BLE001 - a broken kubeconfig is a failed rollout, not a crash
            raise PublishError(f"no Kubernetes credentials: {exc}") from exc
        with client:
            api = kubernetes.client.CustomObjectsApi(client)
            previous = self._current_version(api, name)
            body = build_inference_service(self.template, project, version, name=name, claim=self.claim, previous_version=previous)
            try:
                response = api.patch_namespaced_custom_object(
                    ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL, name, body,
                    field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_CONTENT_TYPE,
                    _preload_content=False, _request_timeout=self.timeout,
                )
            except Exception as exc:  # noqa: BLE001 - refused, invalid or unreachable: the rollout failed
                raise PublishError(f"Kubernetes refused InferenceService {self.namespace}/{name} for {version}: {api_error_message(exc)}") from exc
        applied = json.loads(response.data)
        log.info(
            "project %s: InferenceService %s/%s now points at %s (generation %s, was %s); KServe rolls it out",
            project, self.namespace, name, version, applied.get("metadata", {}).get("generation"), previous or "nothing",
        )

    def _current_version(self, api, name: str) -> str | None:
        """The version the InferenceService points at now (None when it does not exist yet)."""
        try:
            response = api.get_namespaced_custom_object(
                ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL, name, _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 404:
                return None
            raise PublishError(f"cannot read InferenceService {self.namespace}/{name}: {api_error_message(exc)}") from exc
        return ((json.loads(response.data).get("metadata") or {}).get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)
