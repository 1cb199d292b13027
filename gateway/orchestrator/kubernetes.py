"""Kubernetes mode: trainings are ``batch/v1`` Jobs, each project is served by a KServe InferenceService.

State lives in the cluster, not in the gateway (level-triggered):

* A training request while no Job of the project is active creates a Job from the template the
  Helm chart renders (``JOB_TEMPLATE_PATH``), named ``<prefix>-train-<project>-<suffix>``.
* A request while a Job is active is recorded on that Job as the annotation
  ``ts-segmenter.io/follow-up-requested``. When the Job has finished, exactly one follow-up Job is
  created; its name is derived from the finished Job's name, so a second attempt (another
  gateway, a restart half-way) gets 409 instead of a duplicate. The follow-up carries
  ``ts-segmenter.io/follow-up-of: <finished Job>`` and the finished Job is then annotated
  ``ts-segmenter.io/follow-up-job: <follow-up>``.
* Jobs and InferenceServices are listed and watched by two background threads (the Kubernetes
  client is synchronous); every event is applied to in-memory caches on the event loop, so
  ``/setup``, ``/health``, ``/status`` and routing never wait on the API server. Cluster writes
  run in worker threads (``asyncio.to_thread``) and are retried with back-off; failures are
  logged, counted in ``ts_segmenter_orchestrator_errors_total`` and shown by ``/status``.
* The served version of a project is the ``ts-segmenter.io/model-version`` annotation of its
  InferenceService ``<ISVC_NAME_PREFIX>-<project>`` once that ISVC reports ``Ready=True`` for its
  current generation; until then the previously ready version stays the served one.

The naming helpers and annotation keys here are shared with the trainer's publisher
(:mod:`trainer.kubernetes`).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gateway.metrics import GatewayMetrics
from gateway.orchestrator.base import Orchestrator, PredictorEndpoint, ProjectTraining
from gateway.settings import GatewaySettings
from tscore.errors import InvalidInput

log = logging.getLogger(__name__)

# -- the vocabulary shared with the trainer ----------------------------------------------------
PROJECT_LABEL = "ts-segmenter.io/project"
"""Label on training Jobs, their Pods and InferenceServices: ``kubectl logs -l ts-segmenter.io/project=47``."""
MODEL_VERSION_ANNOTATION = "ts-segmenter.io/model-version"
"""InferenceService annotation: the version its STORAGE_URI points at."""
PREVIOUS_VERSION_ANNOTATION = "ts-segmenter.io/previous-model-version"
"""InferenceService annotation: the version it pointed at before the last rollout."""
FOLLOW_UP_REQUESTED_ANNOTATION = "ts-segmenter.io/follow-up-requested"
"""Job annotation: training was requested while this Job ran (value: time and reason)."""
FOLLOW_UP_JOB_ANNOTATION = "ts-segmenter.io/follow-up-job"
"""Job annotation: the follow-up Job created for this Job's follow-up request."""
FOLLOW_UP_OF_ANNOTATION = "ts-segmenter.io/follow-up-of"
"""Job annotation: the finished Job whose follow-up request this Job serves."""
REASON_ANNOTATION = "ts-segmenter.io/reason"
"""Job annotation: the event that caused the training."""
CREATED_AT_ANNOTATION = "ts-segmenter.io/created-at"
"""Job annotation: creation time with microseconds (orders Jobs created within one second)."""
INSTANCE_LABEL = "app.kubernetes.io/instance"

ISVC_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
TEMPLATE_PLACEHOLDER_SUFFIX = "-placeholder"
MAX_PROJECT_DIGITS = len(str(2**31 - 1))
SUFFIX_LENGTH = 5

# KServe names the predictor's Service ``<isvc>-predictor``: a DNS-1035 label of at most 63 characters.
MAX_ISVC_NAME = 63 - len("-predictor")
MAX_NAME = 63
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels: no words in generated names


def isvc_name(prefix: str, project: int) -> str:
    """Name of the InferenceService serving ``project``: ``<prefix>-<project>`` (a DNS-1035 label).

    Raises:
        InvalidInput: the name would not be a valid InferenceService name.
    """
    name = f"{prefix}-{project}"
    if not _DNS1035.match(name) or len(name) > MAX_ISVC_NAME:
        raise InvalidInput(
            f"project {project!r} gives the InferenceService name {name!r}, which is not a DNS-1035 label of at most "
            f"{MAX_ISVC_NAME} characters (lower-case letters, digits and '-', starting with a letter)"
        )
    return name


def check_isvc_name_prefix(prefix: str) -> None:
    """Fail at start-up when some valid project id would give an invalid InferenceService name.

    Raises:
        ValueError: with a message naming the setting.
    """
    try:
        isvc_name(prefix, 2**31 - 1)
    except InvalidInput as exc:
        raise ValueError(f"ISVC_NAME_PREFIX {prefix!r} is unusable: {exc.message}") from None


def job_name_base(template: dict) -> str:
    """Prefix of training Job names: the template's own name without its ``-placeholder`` suffix.

    The chart names the template ``<fullname>-train-placeholder``, so Jobs are called
    ``<fullname>-train-<project>-<suffix>``.
    """
    name = str((template.get("metadata") or {}).get("name") or "ts-segmenter-train")
    return name.removesuffix(TEMPLATE_PLACEHOLDER_SUFFIX).strip("-") or "ts-segmenter-train"


def training_job_name(base: str, project: int, suffix: str) -> str:
    """``<base>-<project>-<suffix>``: a DNS-1123 label of at most 63 characters (``base`` is cut to fit)."""
    tail = f"-{project}-{suffix}"
    name = base[: MAX_NAME - len(tail)].rstrip("-") + tail
    if not _DNS1123.match(name):
        raise InvalidInput(f"training Job name {name!r} is not a DNS-1123 label")
    return name


def random_suffix() -> str:
    """A short random name suffix for a fresh training Job."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def follow_up_suffix(previous_job: str) -> str:
    """The name suffix of the follow-up of ``previous_job``: derived from its name, so creating it twice gives 409."""
    digest = int.from_bytes(hashlib.sha256(previous_job.encode()).digest()[:8], "big")
    chars = []
    for _ in range(SUFFIX_LENGTH):
        digest, index = divmod(digest, len(_SUFFIX_ALPHABET))
        chars.append(_SUFFIX_ALPHABET[index])
    return "".join(chars)


def load_manifest(path: str | os.PathLike[str], api_version: str, kind: str) -> dict:
    """Read one manifest (YAML) rendered by the chart and check its kind.

    Raises:
        ValueError: the file is missing, unreadable or holds another kind of object.
    """
    try:
        manifest = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the {kind} template {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("apiVersion") != api_version or manifest.get("kind") != kind:
        found = f"{manifest.get('apiVersion')}/{manifest.get('kind')}" if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} must hold one {api_version} {kind}, found {found}")
    return manifest


def build_training_job(template: dict, project: int, name: str, *, reason: str | None = None, follow_up_of: str | None = None) -> dict:
    """The training Job of ``project``: a copy of ``template`` with only the per-project fields set.

    Overwritten: ``metadata.name``, the project label on the Job and on its Pod template, and the
    first container's ``args`` (``--project <id>``). Added: annotations with the reason, the
    creation time and, for a follow-up, the Job it follows. Everything else (image, PVC, Secret
    and ConfigMap references, resources, GPU, deadlines) is the chart's.
    """
    job = copy.deepcopy(template)
    metadata = job.setdefault("metadata", {})
    metadata["name"] = name
    metadata.pop("generateName", None)
    (metadata.get("labels") or metadata.setdefault("labels", {}))[PROJECT_LABEL] = str(project)
    annotations = metadata.get("annotations") or metadata.setdefault("annotations", {})
    annotations[CREATED_AT_ANNOTATION] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if reason:
        annotations[REASON_ANNOTATION] = reason[:256]
    if follow_up_of:
        annotations[FOLLOW_UP_OF_ANNOTATION] = follow_up_of
    pod = job.setdefault("spec", {}).setdefault("template", {})
    pod_metadata = pod.get("metadata") or pod.setdefault("metadata", {})
    (pod_metadata.get("labels") or pod_metadata.setdefault("labels", {}))[PROJECT_LABEL] = str(project)
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        raise ValueError("the Job template has no containers")
    containers[0]["args"] = ["--project", str(project)]
    return job


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _condition(obj: dict, kind: str) -> dict | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and str(condition.get("status")) == "True":
            return condition
    return None


def job_phase(job: dict) -> str:
    """``active``, ``succeeded`` or ``failed``, from the Job's terminal conditions (Complete / Failed)."""
    if _condition(job, "Failed"):
        return "failed"
    if _condition(job, "Complete"):
        return "succeeded"
    return "active"


def job_failure(job: dict) -> str | None:
    """Why a failed Job failed (``<reason>: <message>`` of its Failed condition), or None."""
    condition = _condition(job, "Failed")
    if condition is None:
        return None
    reason, message = condition.get("reason") or "Failed", condition.get("message") or ""
    return f"{reason}: {message}" if message else reason


def job_project(job: dict) -> int | None:
    """The project of a Job or InferenceService (its project label), or None."""
    value = ((job.get("metadata") or {}).get("labels") or {}).get(PROJECT_LABEL, "")
    return int(value) if value.isdigit() else None


def isvc_ready(isvc: dict) -> bool:
    """Whether an InferenceService is Ready for its current spec.

    ``Ready=True`` counts only when ``status.observedGeneration`` (set by KServe) has caught up
    with ``metadata.generation``; a status without ``observedGeneration`` is taken as it is.
    """
    if _condition(isvc, "Ready") is None:
        return False
    observed = (isvc.get("status") or {}).get("observedGeneration")
    generation = (isvc.get("metadata") or {}).get("generation")
    return observed is None or generation is None or int(observed) >= int(generation)


def isvc_url(isvc: dict) -> str | None:
    """In-cluster URL of an InferenceService: ``status.address.url``, else ``status.url``."""
    status = isvc.get("status") or {}
    return (status.get("address") or {}).get("url") or status.get("url") or None


def api_error_message(exc: BaseException) -> str:
    """A one-line description of a failed API call (the server's own message when it sent one)."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status is not None:
        message = ""
        if body:
            try:
                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                message = str(body)[:300]
        return f"{status} {getattr(exc, 'reason', '') or ''}: {message}".strip().rstrip(":")
    return f"{exc.__class__.__name__}: {exc}"[:500]


def load_api_client(config_file: str | None = None):
    """A Kubernetes ``ApiClient``: in-cluster service account first, else ``KUBECONFIG`` / ``~/.kube/config``."""
    import kubernetes.client
    import kubernetes.config
    from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, SERVICE_TOKEN_FILENAME

    if config_file is None and os.environ.get(SERVICE_HOST_ENV_NAME) and Path(SERVICE_TOKEN_FILENAME).exists():
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)
    # The client's default location is read from KUBECONFIG when it is imported; read it now instead.
    config_file = config_file or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return kubernetes.config.new_client_from_config(config_file=config_file, persist_config=False)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _resource_version(obj: dict) -> int:
    value = (obj.get("metadata") or {}).get("resourceVersion") or "0"
    return int(value) if value.isdigit() else 0


class ClusterCallFailed(Exception):
    """An API call failed (refused, invalid, unreachable); ``status`` is the HTTP status or None."""

    def __init__(self, operation: str, status: int | None, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.status = status
        self.message = message


class _Informer:
    """List, then watch, one kind of object in a thread; hands every change to the event loop.

    On any failure it waits (exponential back-off, capped) and lists again, so the caches are
    rebuilt from the cluster's state after an outage (level-triggered).
    """

    def __init__(
        self, kind: str, list_call: Callable[..., Any], loop: asyncio.AbstractEventLoop, *,
        on_replace: Callable[[list[dict], int], None], on_event: Callable[[str, dict], None],
        on_error: Callable[[str, BaseException], None], watch_timeout: int, request_timeout: float,
        backoff: tuple[float, float],
    ) -> None:
        self.kind = kind
        self.list_call = list_call
        self.loop = loop
        self.on_replace, self.on_event, self.on_error = on_replace, on_event, on_error
        self.watch_timeout = watch_timeout
        self.request_timeout = request_timeout
        self.backoff = backoff
        self._stop = threading.Event()
        self._response = None
        self._thread = threading.Thread(target=self._run, name=f"ts-segmenter-watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and break off a watch in progress."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the thread also ends at the watch timeout
                pass

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._stop.is_set():
            return
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody listens any more
            self._stop.set()

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            operation = f"list_{self.kind}"
            try:
                response = self.list_call(_preload_content=False, _request_timeout=self.request_timeout)
                listing = json.loads(response.data)
                self._post(self.on_replace, listing.get("items") or [], _resource_version(listing))
                delay = self.backoff[0]
                operation = f"watch_{self.kind}"
                self._watch(str(listing["metadata"]["resourceVersion"]))
            except Exception as exc:  # noqa: BLE001 - every failure is reported and retried
                if self._stop.is_set():
                    return
                self._post(self.on_error, operation, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])

    def _watch(self, resource_version: str) -> None:
        from kubernetes.client.rest import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        while not self._stop.is_set():
            response = self.list_call(
                watch=True, resource_version=resource_version, allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout,
                _preload_content=False, _request_timeout=(self.request_timeout, self.watch_timeout + 30),
            )
            self._response = response
            try:
                for line in iter_resp_lines(response):
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # our resourceVersion is too old: list again
                            return
                        raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
                    resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._post(self.on_event, kind, obj)
            finally:
                self._response = None
                response.release_conn()


class KubernetesOrchestrator(Orchestrator):
    """Training Jobs and per-project InferenceServices in one namespace (see the module docstring)."""

    name = "kubernetes"

    def __init__(
        self, settings: GatewaySettings, metrics: GatewayMetrics, *, api_client_factory: Callable[[], Any], job_template: dict,
        watch_timeout: int = 300, request_timeout: float = 30.0, sync_timeout: float = 5.0,
        retry_backoff: tuple[float, float] = (1.0, 60.0), watch_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        """Use :meth:`from_settings` in the gateway; tests may pass their own client factory and template.

        Args:
            api_client_factory: returns a new ``kubernetes.client.ApiClient`` (one per thread user).
            job_template: the training Job manifest (a dict) that :func:`build_training_job` fills in.
            watch_timeout: seconds of one watch request before it is renewed.
            request_timeout: seconds allowed for one (non-watch) API call.
            sync_timeout: how long :meth:`start` waits for the first listings (it never fails on them).
            retry_backoff: first and longest wait before a failed cluster write is retried.
            watch_backoff: first and longest wait before a failed list/watch is retried.
        """
        check_isvc_name_prefix(settings.isvc_name_prefix)
        self.settings = settings
        self.metrics = metrics
        self.namespace = settings.kubernetes_namespace
        self.prefix = settings.isvc_name_prefix
        self.job_template = job_template
        self.job_base = job_name_base(job_template)
        instance = ((job_template.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
        self.job_selector = PROJECT_LABEL + (f",{INSTANCE_LABEL}={instance}" if instance else "")
        self._client_factory = api_client_factory
        self.watch_timeout, self.request_timeout, self.sync_timeout = watch_timeout, request_timeout, sync_timeout
        self.retry_backoff, self.watch_backoff = retry_backoff, watch_backoff

        self._jobs: dict[str, dict] = {}
        self._isvcs: dict[int, dict] = {}
        self._jobs_synced = asyncio.Event()
        self._isvcs_synced = asyncio.Event()
        self._settled = {"jobs": asyncio.Event(), "inferenceservices": asyncio.Event()}
        self._wanted: dict[int, str] = {}
        self._requests_seen = 0  # numbers each request, so one arriving mid-call is not taken as served
        self._request_number: dict[int, int] = {}
        self._creating_for: dict[int, int] = {}  # project → request number whose Job is being created
        self._served: dict[int, str] = {}
        self._endpoints: dict[int, str] = {}
        self._project_errors: dict[int, str] = {}
        self._watch_errors: dict[str, str] = {}
        self._seen_active: set[str] = set()
        self._counted: set[str] = set()
        self._dirty: set[int] = set()
        self._reconcilers: dict[int, asyncio.Task] = {}
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._backoff: dict[int, float] = {}
        self._informers: list[_Informer] = []
        self._clients: list[Any] = []
        self._api = None
        self._started_at = time.time()
        self._stopping = False

    @classmethod
    def from_settings(cls, settings: GatewaySettings, metrics: GatewayMetrics) -> KubernetesOrchestrator:
        """The gateway's orchestrator: the chart's Job template, in-cluster credentials (else ``KUBECONFIG``).

        Raises:
            ValueError: the Job template is missing or malformed, or ISVC_NAME_PREFIX is unusable.
        """
        template = load_manifest(settings.job_template_path, "batch/v1", "Job")
        return cls(settings, metrics, api_client_factory=load_api_client, job_template=template)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the watches and wait (briefly, never failing) for the first listings."""
        import kubernetes.client

        loop = asyncio.get_running_loop()
        self._stopping = False
        try:
            self._api = self._new_client()
            job_client, isvc_client = self._new_client(), self._new_client()
        except Exception as exc:  # noqa: BLE001 - a broken kubeconfig must not keep the gateway down
            self._record_watch_error("load_config", exc)
            return
        batch = kubernetes.client.BatchV1Api(job_client)
        custom = kubernetes.client.CustomObjectsApi(isvc_client)

        def list_jobs(**kwargs):
            return batch.list_namespaced_job(self.namespace, label_selector=self.job_selector, **kwargs)

        def list_isvcs(**kwargs):
            return custom.list_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL, label_selector=PROJECT_LABEL, **kwargs)

        common = dict(watch_timeout=self.watch_timeout, request_timeout=self.request_timeout, backoff=self.watch_backoff, on_error=self._record_watch_error)
        self._informers = [
            _Informer("jobs", list_jobs, loop, on_replace=self._replace_jobs, on_event=self._job_event, **common),
            _Informer("inferenceservices", list_isvcs, loop, on_replace=self._replace_isvcs, on_event=self._isvc_event, **common),
        ]
        for informer in self._informers:
            informer.start()
        try:
            # Until the first listing (or its failure) /setup would report versions it has not read yet.
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._settled.values())), self.sync_timeout)
        except TimeoutError:
            log.warning("kubernetes: no answer to the first listings after %.0f s; serving from what is known", self.sync_timeout)

    async def stop(self) -> None:
        self._stopping = True
        for informer in self._informers:
            informer.stop()
        for handle in self._retries.values():
            handle.cancel()
        tasks = [t for t in self._reconcilers.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in self._clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a pool of a client still used by a stopping thread
                pass

    def _new_client(self):
        client = self._client_factory()
        self._clients.append(client)
        return client

    # -- the seam ----------------------------------------------------------------------------
    def request_training(self, project: int, reason: str) -> None:
        """Record the request and return; a background task creates the Job or the follow-up mark."""
        isvc_name(self.prefix, project)  # a project that cannot be named is refused before anything is recorded
        self._wanted[project] = reason
        self._requests_seen += 1
        self._request_number[project] = self._requests_seen
        self._update_gauges(project)
        log.info("project %s: training requested (%s)", project, reason)
        self._kick(project)

    def served_version(self, project: int) -> str | None:
        return self._served.get(project)

    def predictor_endpoint(self, project: int) -> PredictorEndpoint | None:
        url = self._endpoints.get(project)
        if project not in self._served or not url:
            return None
        return PredictorEndpoint(url.rstrip("/"), isvc_name(self.prefix, project))

    def projects(self) -> list[int]:
        known = {job_project(j) for j in self._jobs.values()} | set(self._isvcs) | set(self._wanted) | set(self._project_errors)
        return sorted(p for p in known if p is not None)

    def project_status(self, project: int) -> ProjectTraining:
        jobs = self._project_jobs(project)
        active = [j for j in jobs if job_phase(j) == "active"]
        finished = [j for j in jobs if job_phase(j) != "active"]
        latest = jobs[-1] if jobs else None
        status = ProjectTraining(project=project, served_version=self._served.get(project), trainings_started=len(jobs))
        pending = self._follow_up_pending(project, jobs)
        if active:
            status.state = "running"
        elif project in self._wanted or pending:
            status.state = "queued"
        status.follow_up_pending = pending
        if latest is not None:
            status.last_reason = _annotations(latest).get(REASON_ANNOTATION)
            status.last_started_at = (latest.get("status") or {}).get("startTime") or latest["metadata"].get("creationTimestamp")
        if finished:
            last = finished[-1]
            phase = job_phase(last)
            status.last_result = phase
            status.last_error = job_failure(last)
            started, ended = self._job_times(last)
            status.last_finished_at = datetime.fromtimestamp(ended, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ended else None
            status.last_duration_s = round(ended - started, 3) if started and ended else None
        isvc = self._isvcs.get(project)
        details: dict[str, Any] = {"inference_service": isvc_name(self.prefix, project)}
        if active:
            details["active_job"] = active[-1]["metadata"]["name"]
        if finished:
            details["last_job"] = finished[-1]["metadata"]["name"]
        if isvc is not None:
            details["isvc_ready"] = isvc_ready(isvc)
            details["predictor_url"] = self._endpoints.get(project)
            wanted_version = _annotations(isvc).get(MODEL_VERSION_ANNOTATION)
            if wanted_version and wanted_version != status.served_version:
                details["rolling_out_version"] = wanted_version
        errors = [f"{op}: {message}" for op, message in sorted(self._watch_errors.items())]
        if project in self._project_errors:
            errors.insert(0, self._project_errors[project])
        if errors:
            details["cluster_errors"] = errors
            status.last_error = errors[0]
        status.details = details
        return status

    # -- caches (always mutated on the event loop) -------------------------------------------
    def _project_jobs(self, project: int) -> list[dict]:
        """The project's Jobs, oldest first."""
        jobs = [j for j in self._jobs.values() if job_project(j) == project]
        return sorted(jobs, key=lambda j: (j["metadata"].get("creationTimestamp") or "", _annotations(j).get(CREATED_AT_ANNOTATION) or "", j["metadata"]["name"]))

    def _store_job(self, job: dict) -> None:
        name = job["metadata"]["name"]
        known = self._jobs.get(name)
        if known is not None and _resource_version(known) > _resource_version(job):
            return  # an older copy (e.g. our own create answer arriving after the watch's update)
        self._jobs[name] = job

    def _replace_jobs(self, items: list[dict], resource_version: int) -> None:
        before = {job_project(j) for j in self._jobs.values()}
        # Keep what is newer than the listing (a Job we created while the list was answered).
        self._jobs = {n: j for n, j in self._jobs.items() if _resource_version(j) > resource_version}
        for job in items:
            if job_project(job) is not None:
                self._store_job(job)
        self._watch_errors.pop("list_jobs", None)
        self._watch_errors.pop("watch_jobs", None)
        self._jobs_synced.set()
        self._settled["jobs"].set()
        for project in before | {job_project(j) for j in self._jobs.values()} | set(self._wanted):
            if project is not None:
                self._after_job_change(project)

    def _job_event(self, kind: str, job: dict) -> None:
        project = job_project(job)
        if project is None:
            return
        self._watch_errors.pop("watch_jobs", None)
        name = job["metadata"]["name"]
        if kind == "DELETED":
            self._jobs.pop(name, None)
            if self._unserved_follow_up(job, self._project_jobs(project)) and project not in self._wanted:
                # Its follow-up request would vanish with it: carry it over.
                self._wanted[project] = "follow-up of deleted Job " + name
        else:
            self._store_job(job)
        self._after_job_change(project)

    def _replace_isvcs(self, items: list[dict], resource_version: int) -> None:
        found: dict[int, dict] = {}
        for isvc in items:
            project = job_project(isvc)
            if project is not None and isvc["metadata"]["name"] == isvc_name(self.prefix, project):
                found[project] = isvc
        for project in set(self._isvcs) - set(found):
            self._apply_isvc(project, None)
        for project, isvc in found.items():
            self._apply_isvc(project, isvc)
        self._watch_errors.pop("list_inferenceservices", None)
        self._watch_errors.pop("watch_inferenceservices", None)
        self._isvcs_synced.set()
        self._settled["inferenceservices"].set()

    def _isvc_event(self, kind: str, isvc: dict) -> None:
        project = job_project(isvc)
        if project is None or isvc["metadata"]["name"] != isvc_name(self.prefix, project):
            return
        self._watch_errors.pop("watch_inferenceservices", None)
        self._apply_isvc(project, None if kind == "DELETED" else isvc)

    def _apply_isvc(self, project: int, isvc: dict | None) -> None:
        """Move the served version only when the InferenceService is Ready for its current spec."""
        old = self._served.get(project)
        if isvc is None:
            self._isvcs.pop(project, None)
            self._served.pop(project, None)
            self._endpoints.pop(project, None)
        else:
            self._isvcs[project] = isvc
            url = isvc_url(isvc)
            annotations = _annotations(isvc)
            if isvc_ready(isvc) and annotations.get(MODEL_VERSION_ANNOTATION):
                self._served[project] = annotations[MODEL_VERSION_ANNOTATION]
                if url:
                    self._endpoints[project] = url
            elif project not in self._served and url and annotations.get(PREVIOUS_VERSION_ANNOTATION):
                # Seen first mid-rollout (gateway restart): the previous version is what still answers.
                self._served[project] = annotations[PREVIOUS_VERSION_ANNOTATION]
                self._endpoints[project] = url
        new = self._served.get(project)
        if new != old:
            log.info("project %s: served version %s -> %s", project, old, new)
        self.metrics.set_served(project, old, new)

    def _record_watch_error(self, operation: str, exc: BaseException) -> None:
        message = api_error_message(exc)
        if self._watch_errors.get(operation) != message:
            retry = " (retrying with back-off)" if operation.startswith(("list_", "watch_")) else ""
            log.error("kubernetes: %s failed: %s%s", operation, message, retry)
        self._watch_errors[operation] = message
        self.metrics.orchestrator_errors.labels(operation).inc()
        kind = operation.partition("_")[2]
        if kind in self._settled:
            self._settled[kind].set()

    # -- derived state -------------------------------------------------------------------------
    @staticmethod
    def _unserved_follow_up(job: dict, jobs: list[dict]) -> bool:
        annotations = _annotations(job)
        if FOLLOW_UP_REQUESTED_ANNOTATION not in annotations or FOLLOW_UP_JOB_ANNOTATION in annotations:
            return False
        name = job["metadata"]["name"]
        return not any(_annotations(other).get(FOLLOW_UP_OF_ANNOTATION) == name for other in jobs)

    def _follow_up_pending(self, project: int, jobs: list[dict]) -> bool:
        active = [j for j in jobs if job_phase(j) == "active"]
        if active:
            # The request whose Job is being created is served by that Job, not pending after it.
            newer_request = project in self._wanted and self._request_number.get(project) != self._creating_for.get(project)
            return newer_request or FOLLOW_UP_REQUESTED_ANNOTATION in _annotations(active[-1])
        return bool(jobs) and self._unserved_follow_up(jobs[-1], jobs)

    @staticmethod
    def _job_times(job: dict) -> tuple[float | None, float | None]:
        status = job.get("status") or {}
        started = _parse_time(status.get("startTime") or job["metadata"].get("creationTimestamp"))
        ended = _parse_time(status.get("completionTime"))
        if ended is None:
            condition = _condition(job, "Failed") or _condition(job, "Complete") or {}
            ended = _parse_time(condition.get("lastTransitionTime"))
        return started, ended

    def _after_job_change(self, project: int) -> None:
        """Refresh the project's metrics, count newly finished Jobs, and reconcile."""
        for job in self._project_jobs(project):
            name = job["metadata"]["name"]
            phase = job_phase(job)
            if phase == "active":
                self._seen_active.add(name)
                continue
            if name in self._counted:
                continue
            started, ended = self._job_times(job)
            if name in self._seen_active or (ended is not None and ended >= self._started_at):
                self.metrics.trainings.labels(str(project), phase).inc()
                if started and ended and ended >= started:
                    self.metrics.training_seconds.observe(ended - started)
                level = logging.WARNING if phase == "failed" else logging.INFO
                log.log(level, "project %s: training Job %s %s%s", project, name, phase, f": {job_failure(job)}" if phase == "failed" else "")
            self._counted.add(name)
        self._update_gauges(project)
        self._kick(project)

    def _update_gauges(self, project: int) -> None:
        jobs = self._project_jobs(project)
        self.metrics.training_active.labels(str(project)).set(1 if any(job_phase(j) == "active" for j in jobs) else 0)
        self.metrics.training_pending.labels(str(project)).set(1 if self._follow_up_pending(project, jobs) else 0)

    # -- reconciling (one task per project at a time) --------------------------------------------
    def _kick(self, project: int) -> None:
        if self._stopping:
            return
        self._dirty.add(project)
        task = self._reconcilers.get(project)
        if task is None or task.done():
            self._reconcilers[project] = asyncio.get_running_loop().create_task(self._reconcile_loop(project))

    async def _reconcile_loop(self, project: int) -> None:
        while project in self._dirty and not self._stopping:
            self._dirty.discard(project)
            try:
                await self._reconcile(project)
            except ClusterCallFailed as failure:
                self._project_errors[project] = f"{failure.operation}: {failure.message}"
                delay = self._backoff.get(project, self.retry_backoff[0])
                self._backoff[project] = min(delay * 2, self.retry_backoff[1])
                log.error("project %s: %s failed: %s (retrying in %.0f s)", project, failure.operation, failure.message, delay)
                old = self._retries.pop(project, None)
                if old is not None:
                    old.cancel()
                self._retries[project] = asyncio.get_running_loop().call_later(delay, self._kick, project)
                return
            except Exception:  # noqa: BLE001 - a bug here must not end the gateway; the next event retries
                log.exception("project %s: reconciling failed", project)
                return
            finally:
                self._update_gauges(project)

    async def _reconcile(self, project: int) -> None:
        """Bring the cluster in line with what is wanted: one active Job, one follow-up after it."""
        if not self._jobs_synced.is_set():
            return  # decisions need the cluster's Jobs; the first listing kicks every project again
        jobs = self._project_jobs(project)
        active = [j for j in jobs if job_phase(j) == "active"]
        latest = jobs[-1] if jobs else None
        reason = self._wanted.get(project)
        number = self._request_number.get(project)
        if reason is not None:
            if active:
                recorded = await self._request_follow_up(project, active[-1], reason)
            else:
                follow_up_of = latest["metadata"]["name"] if latest is not None and self._unserved_follow_up(latest, jobs) else None
                self._creating_for[project] = number
                try:
                    recorded = await self._create_job(project, reason, follow_up_of)
                finally:
                    self._creating_for.pop(project, None)
            # A request that arrived during the call stays wanted: the next pass sees the Job it
            # created as active and records a follow-up, so events during a training are never lost.
            if recorded and self._request_number.get(project) == number:
                self._wanted.pop(project, None)
        elif latest is not None and job_phase(latest) != "active" and self._unserved_follow_up(latest, jobs):
            requested = _annotations(latest)[FOLLOW_UP_REQUESTED_ANNOTATION]
            await self._create_job(project, f"follow-up of {latest['metadata']['name']} ({requested})", latest["metadata"]["name"])
        self._project_errors.pop(project, None)
        self._backoff.pop(project, None)

    async def _call(self, operation: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        """Run one API call in a worker thread; its JSON answer, or :class:`ClusterCallFailed`."""
        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            response = await asyncio.to_thread(call, *args, **kwargs)
            return json.loads(response.data)
        except Exception as exc:  # noqa: BLE001 - refused, invalid, unreachable: all are reported the same way
            self.metrics.orchestrator_errors.labels(operation).inc()
            raise ClusterCallFailed(operation, getattr(exc, "status", None), api_error_message(exc)) from exc

    async def _request_follow_up(self, project: int, job: dict, reason: str) -> bool:
        """Mark the active Job as wanting a follow-up; False when it vanished meanwhile (decide again)."""
        import kubernetes.client

        name = job["metadata"]["name"]
        if FOLLOW_UP_REQUESTED_ANNOTATION in _annotations(job):
            return True
        batch = kubernetes.client.BatchV1Api(self._api)
        patch = {"metadata": {"annotations": {FOLLOW_UP_REQUESTED_ANNOTATION: f"{_now()} {reason}"[:256]}}}
        try:
            updated = await self._call("patch_job", batch.patch_namespaced_job, name, self.namespace, patch, _content_type="application/merge-patch+json")
        except ClusterCallFailed as failure:
            if failure.status == 404:  # gone meanwhile (deleted): forget it and decide again
                self._jobs.pop(name, None)
                self._dirty.add(project)
                return False
            raise
        self._store_job(updated)
        log.info("project %s: training Job %s is running; follow-up recorded on it (%s)", project, name, reason)
        return True

    async def _create_job(self, project: int, reason: str, follow_up_of: str | None) -> bool:
        """Create a training Job (the follow-up of ``follow_up_of`` when given); True once it exists."""
        import kubernetes.client

        batch = kubernetes.client.BatchV1Api(self._api)
        for _ in range(3):
            suffix = follow_up_suffix(follow_up_of) if follow_up_of else random_suffix()
            name = training_job_name(self.job_base, project, suffix)
            manifest = build_training_job(self.job_template, project, name, reason=reason, follow_up_of=follow_up_of)
            try:
                created = await self._call("create_job", batch.create_namespaced_job, self.namespace, manifest)
            except ClusterCallFailed as failure:
                if failure.status != 409:
                    raise
                if follow_up_of:
                    log.info("project %s: follow-up Job %s already exists", project, name)
                    break
                continue  # a random name taken: draw another
            self._project_errors.pop(project, None)  # the failure being retried was this create
            self._store_job(created)
            self._seen_active.add(name)
            self.metrics.trainings_started.labels(str(project)).inc()
            log.info("project %s: training Job %s created (%s)", project, name, reason)
            break
        else:
            raise ClusterCallFailed("create_job", 409, "no free Job name after 3 attempts")
        if follow_up_of:
            patch = {"metadata": {"annotations": {FOLLOW_UP_JOB_ANNOTATION: name}}}
            try:
                updated = await self._call("patch_job", batch.patch_namespaced_job, follow_up_of, self.namespace, patch, _content_type="application/merge-patch+json")
                self._store_job(updated)
            except ClusterCallFailed as failure:
                # The follow-up's deterministic name and its follow-up-of annotation already prevent a second one.
                log.warning("project %s: could not mark %s as followed up: %s", project, follow_up_of, failure.message)
        return True
