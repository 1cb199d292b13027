"""Render the ts-segmenter Helm chart with the real Helm engine, for tests.

The chart is rendered in-process by Helm v4 itself through the PyPI package
``helm-python-sdk`` (module ``helm_python``): no helm binary and no cluster are needed.
Rendering enforces ``values.schema.json`` exactly as ``helm install``/``helm template`` do.

Other test suites (e.g. the gateway's Job builder) import this module to get the Job and
InferenceService templates the chart renders::

    from chartutil import render, templates_configmap
    templates = templates_configmap(render(scenario="gpu"))
    job, isvc = templates["job.yaml"], templates["inferenceservice.yaml"]
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kserve
import kserve.models
import kubernetes.client
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "ts-segmenter"
CI_DIR = CHART_DIR / "ci"

#: Release name and namespace used for every render unless a test passes others.
RELEASE = "tss"
NAMESPACE = "ml"

#: Kubernetes version the rendered objects are validated against.
KUBE_VERSION = "1.32"

#: Keys of the templates ConfigMap (``<fullname>-templates``).
JOB_TEMPLATE_KEY = "job.yaml"
ISVC_TEMPLATE_KEY = "inferenceservice.yaml"


def scenarios() -> list[str]:
    """Names of the CI scenario files in ``charts/ts-segmenter/ci`` (``gpu`` for ``gpu-values.yaml``)."""
    return sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))


def scenario_values(scenario: str) -> dict[str, Any]:
    """The values of one CI scenario file; ``scenario`` is ``gpu``, ``gpu-values`` or ``gpu-values.yaml``."""
    name = scenario.removesuffix(".yaml").removesuffix("-values")
    path = CI_DIR / f"{name}-values.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no CI scenario {scenario!r} (looked for {path}); known: {scenarios()}")
    return yaml.safe_load(path.read_text()) or {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base`` like Helm merges values files (maps merge, the rest replaces)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.lru_cache(maxsize=1)
def load_chart() -> helm.Chart:
    """The chart, loaded once per test session (Helm charts are immutable and thread-safe)."""
    return helm.Chart.load(CHART_DIR)


def effective_values(values: dict[str, Any] | None = None, scenario: str | None = None) -> dict[str, Any]:
    """User-supplied values for a render: the scenario file's values, then ``values`` merged over them."""
    merged = scenario_values(scenario) if scenario else {}
    return deep_merge(merged, values or {})


def render_manifests(
    values: dict[str, Any] | None = None,
    scenario: str | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Render the chart like ``helm template`` and return ``{template path: rendered text}``.

    Raises ``helm_python.HelmValuesError`` when the values break ``values.schema.json`` and
    ``helm_python.HelmRenderError`` when a template fails (e.g. a ``fail``/``required`` guard).
    """
    return load_chart().render(effective_values(values, scenario), name=release, namespace=namespace, is_install=True)


def render(
    values: dict[str, Any] | None = None,
    scenario: str | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_tests: bool = True,
) -> list[dict[str, Any]]:
    """Render the chart and return every Kubernetes object it produces, parsed.

    ``scenario`` picks a CI values file (``"gpu"``, ``"knative-scale-to-zero"``, ...); ``values``
    are merged over it. NOTES.txt is not an object and is left out; ``helm test`` hook objects
    (``templates/tests/``) are included unless ``include_tests`` is false.
    """
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_manifests(values, scenario, release=release, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        if not include_tests and "/templates/tests/" in path:
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any] | None = None, scenario: str | None = None) -> str:
    """The rendered NOTES.txt."""
    manifests = render_manifests(values, scenario)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of one kind (and, if given, one name)."""
    return [o for o in objects if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of one kind (and name); fails loudly when there are none or several."""
    found = find(objects, kind, name)
    if len(found) != 1:
        names = [o["metadata"]["name"] for o in find(objects, kind)]
        raise AssertionError(f"expected exactly one {kind} {name or ''}, found {len(found)} among {names}")
    return found[0]


def templates_configmap(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Job and InferenceService templates from the ``<fullname>-templates`` ConfigMap, parsed.

    Returns ``{"job.yaml": <Job dict>, "inferenceservice.yaml": <InferenceService dict>}``.
    """
    maps = [o for o in find(objects, "ConfigMap") if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "templates"]
    if len(maps) != 1:
        raise AssertionError(f"expected one templates ConfigMap, found {[m['metadata']['name'] for m in maps]}")
    data = maps[0]["data"]
    return {key: yaml.safe_load(data[key]) for key in (JOB_TEMPLATE_KEY, ISVC_TEMPLATE_KEY)}


def containers(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{container name: container}`` of a pod spec (or an InferenceService predictor spec)."""
    return {c["name"]: c for c in pod_spec.get("containers", [])}


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{env var name: EnvVar}`` of a container (the last definition wins, as in Kubernetes)."""
    return {e["name"]: e for e in container.get("env", [])}


CRD_PATH = REPO_ROOT / "tests" / "testdata" / "crds" / "serving.kserve.io_inferenceservices.yaml"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --------------------------------------------------------------------------- validation


def validate_k8s(obj: dict[str, Any]) -> None:
    """Validate one built-in object strictly (unknown fields fail) against Kubernetes KUBE_VERSION.

    A kind without a schema is an error too, so a typo in apiVersion/kind cannot pass silently.
    """
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError as exc:  # pragma: no cover - message only
        raise AssertionError(exc.message) from exc
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj['kind']}/{obj['metadata'].get('name')} invalid at {path}: {exc.message}") from exc


def _strict_crd_schema(schema: Any) -> Any:
    """Copy a CRD openAPIV3Schema, forbidding unknown fields where the API server would prune them.

    A CRD schema has no ``additionalProperties: false``: the API server silently drops unknown
    fields (or rejects them with fieldValidation=Strict, what ``kubectl apply`` does by default).
    JSON Schema would accept them, so every object schema with ``properties`` and without
    ``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false`` here.
    """
    if isinstance(schema, list):
        return [_strict_crd_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict_crd_schema(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def isvc_crd_validator() -> jsonschema.Draft7Validator:
    """A JSON Schema validator for InferenceServices built from the KServe CRD excerpt (strict).

    ``predictor.containers`` is validated with the CRD's ``predictor.initContainers.items`` schema:
    both are ``[]corev1.Container`` in KServe's Go types, so controller-gen emits the same schema.
    """
    crd = yaml.safe_load(CRD_PATH.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    predictor = schema["properties"]["spec"]["properties"]["predictor"]
    predictor["properties"]["containers"] = {
        "items": copy.deepcopy(predictor["properties"]["initContainers"]["items"]),
        "type": "array",
    }
    schema["properties"]["spec"]["required"] = ["predictor"]
    return jsonschema.Draft7Validator(_strict_crd_schema(schema))


class _KServeAndKubernetesApiClient(kserve.ApiClient):
    """kserve's ApiClient, taught to deserialize the Kubernetes types its models refer to.

    kserve's generated models name Kubernetes types (``V1Container``, ``V1Toleration``, ...) that
    live in ``kubernetes.client.models``, and one alias, ``K8sIoApiAppsV1DeploymentStrategy``
    (= apps/v1 DeploymentStrategy). Those are handed to the Kubernetes client's own deserializer.
    """

    _ALIASES = {"K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy"}

    def __init__(self) -> None:
        super().__init__()
        self._k8s = kubernetes.client.ApiClient()

    def _ApiClient__deserialize(self, data: Any, klass: Any) -> Any:  # noqa: N802 - overrides a mangled name
        if isinstance(klass, str):
            klass = self._ALIASES.get(klass, klass)
            if not hasattr(kserve.models, klass) and hasattr(kubernetes.client.models, klass):
                return self._k8s._ApiClient__deserialize(data, klass)
        return super()._ApiClient__deserialize(data, klass)


def kserve_roundtrip(isvc: dict[str, Any]) -> dict[str, Any]:
    """Deserialize an InferenceService into kserve's ``V1beta1InferenceService`` and serialize it back.

    The generated models keep only the fields they know, so anything misspelled or unknown
    (at any depth) is missing from the result.
    """
    client = _KServeAndKubernetesApiClient()
    model = client._ApiClient__deserialize(json.loads(json.dumps(isvc)), "V1beta1InferenceService")
    assert isinstance(model, kserve.V1beta1InferenceService)
    return client.sanitize_for_serialization(model)


def predictor_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """A Pod made of the PodSpec fields of an InferenceService's predictor (KServe inlines a PodSpec)."""
    pod_fields = set(kubernetes.client.V1PodSpec.attribute_map.values())
    predictor = isvc["spec"]["predictor"]
    spec = {k: v for k, v in predictor.items() if k in pod_fields}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": isvc["metadata"]["name"]}, "spec": spec}


def changed_paths(a: Any, b: Any, path: str = "") -> set[str]:
    """Paths (``/a/b[0]/c``) where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            if key not in a or key not in b:
                out.add(f"{path}/{key}")
            else:
                out |= changed_paths(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return set().union(*(changed_paths(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))))
    return set() if a == b else {path}
