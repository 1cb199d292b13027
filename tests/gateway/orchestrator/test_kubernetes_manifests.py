"""The training Jobs the gateway builds, as pure functions of the chart's Job template (no cluster).

Every built Job is validated strictly (unknown fields are errors) against the Kubernetes 1.32
schemas with ``kubernetes-validate``, for the chart's defaults and every ``ci/`` scenario, and
differs from the template only in the per-project fields. Also: names (DNS-1123 Jobs, DNS-1035
InferenceServices, 63-character limits), the follow-up name rule, and the readers of Job and
InferenceService status.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from charts.chartutil import DNS1035, DNS1123, JOB_TEMPLATE_KEY, changed_paths, render, scenarios, templates_configmap, validate_k8s

from gateway.orchestrator.kubernetes import (
    CREATED_AT_ANNOTATION,
    FOLLOW_UP_OF_ANNOTATION,
    MAX_ISVC_NAME,
    PROJECT_LABEL,
    REASON_ANNOTATION,
    build_training_job,
    check_isvc_name_prefix,
    follow_up_suffix,
    isvc_name,
    isvc_ready,
    isvc_url,
    job_failure,
    job_name_base,
    job_phase,
    job_project,
    load_manifest,
    random_suffix,
    training_job_name,
)
from tscore.errors import InvalidInput

PROJECTS = [0, 47, 2**31 - 1]


def job_template(scenario: str | None = None, **render_kwargs: Any) -> dict[str, Any]:
    """The Job template the chart renders for a scenario."""
    return templates_configmap(render(scenario=scenario, **render_kwargs))[JOB_TEMPLATE_KEY]


@pytest.fixture(scope="module")
def default_template() -> dict[str, Any]:
    return job_template()


@pytest.mark.parametrize("scenario", scenarios())
@pytest.mark.parametrize("project", PROJECTS)
def test_built_jobs_validate_strictly(scenario, project):
    template = job_template(scenario)
    name = training_job_name(job_name_base(template), project, random_suffix())
    job = build_training_job(template, project, name, reason="START_TRAINING", follow_up_of="tss-ts-segmenter-train-1-bcdfg")
    validate_k8s(job)


def test_a_misspelled_field_fails_validation(default_template):
    """The strict validation above can fail."""
    job = build_training_job(default_template, 1, "j-1-abcde")
    job["spec"]["template"]["spec"]["containers"][0]["argz"] = ["x"]
    with pytest.raises(AssertionError, match="argz"):
        validate_k8s(job)


def test_only_the_per_project_fields_change(default_template):
    before = copy.deepcopy(default_template)
    job = build_training_job(default_template, 47, "tss-ts-segmenter-train-47-bcdfg", reason="START_TRAINING", follow_up_of="old-job")
    assert default_template == before, "the template itself must not be modified"
    allowed = {
        "/metadata/name",
        f"/metadata/labels/{PROJECT_LABEL}",
        "/metadata/annotations",
        f"/spec/template/metadata/labels/{PROJECT_LABEL}",
        "/spec/template/spec/containers[0]/args",
    }
    changed = changed_paths(default_template, job)
    assert {path for path in changed if not any(path.startswith(a) for a in allowed)} == set()
    assert {a for a in allowed if any(path.startswith(a) for path in changed)} == allowed
    assert job["metadata"]["name"] == "tss-ts-segmenter-train-47-bcdfg"
    assert job["metadata"]["labels"][PROJECT_LABEL] == "47"
    assert job["spec"]["template"]["metadata"]["labels"][PROJECT_LABEL] == "47"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--project", "47"]
    annotations = job["metadata"]["annotations"]
    assert annotations[REASON_ANNOTATION] == "START_TRAINING"
    assert annotations[FOLLOW_UP_OF_ANNOTATION] == "old-job"
    assert annotations[CREATED_AT_ANNOTATION].endswith("Z")
    assert job_project(job) == 47


def test_the_template_carries_what_the_training_needs(default_template):
    """The chart's essentials survive: PVC, templates mount, LS secret, settings ConfigMap, limits."""
    job = build_training_job(default_template, 3, "tss-ts-segmenter-train-3-bcdfg")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["tss-ts-segmenter-models"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert not mounts["models"].get("readOnly"), "the trainer writes versions to the PVC"
    env = {e["name"]: e for e in container["env"]}
    assert env["LABEL_STUDIO_API_KEY"]["valueFrom"]["secretKeyRef"]["key"]
    assert env["PUBLISHER"]["value"] == "kubernetes"
    assert container["envFrom"][0]["configMapRef"]["name"] == "tss-ts-segmenter-training"
    assert container["command"] == ["python", "-m", "trainer"]
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["activeDeadlineSeconds"] > 0
    assert pod["restartPolicy"] == "Never"


def test_gpu_scenario_keeps_the_gpu_settings():
    job = build_training_job(job_template("gpu"), 5, "j-5-bcdfg")
    pod = job["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" in pod["containers"][0]["resources"]["limits"]
    assert pod.get("nodeSelector") or pod.get("tolerations")


@pytest.mark.parametrize("release", ["tss", "r" * 53, "a-very-long-release-name-for-the-ts-segmenter"])
@pytest.mark.parametrize("project", PROJECTS)
def test_job_names_are_dns1123_labels_of_at_most_63_characters(release, project):
    template = job_template(release=release)
    base = job_name_base(template)
    for suffix in (random_suffix(), follow_up_suffix("some-previous-job")):
        name = training_job_name(base, project, suffix)
        assert DNS1123.match(name) and len(name) <= 63, name
        assert name.endswith(f"-{project}-{suffix}")
        built = build_training_job(template, project, name)
        validate_k8s(built)


def test_job_name_follows_the_chart_naming(default_template):
    assert job_name_base(default_template) == "tss-ts-segmenter-train"
    assert training_job_name("tss-ts-segmenter-train", 47, "bcdfg") == "tss-ts-segmenter-train-47-bcdfg"


def test_suffixes():
    drawn = {random_suffix() for _ in range(200)}
    assert len(drawn) > 190, "random suffixes must rarely collide"
    assert all(len(s) == 5 and DNS1123.match(s) for s in drawn)
    assert follow_up_suffix("job-a") == follow_up_suffix("job-a"), "a follow-up's name is a function of its predecessor"
    assert follow_up_suffix("job-a") != follow_up_suffix("job-b")


@pytest.mark.parametrize("project", PROJECTS)
def test_isvc_names_are_dns1035_labels(project):
    name = isvc_name("tss-ts-segmenter-p", project)
    assert name == f"tss-ts-segmenter-p-{project}"
    assert DNS1035.match(name) and len(f"{name}-predictor") <= 63


@pytest.mark.parametrize("prefix", ["7eleven", "Upper", "-lead", "a.b", "a_b", "x" * (MAX_ISVC_NAME - 10)])
def test_unusable_isvc_prefixes_are_refused_at_start_up(prefix):
    with pytest.raises(ValueError, match="ISVC_NAME_PREFIX"):
        check_isvc_name_prefix(prefix)
    with pytest.raises(InvalidInput):
        isvc_name(prefix, 2**31 - 1)


def test_longest_usable_prefix_is_accepted():
    check_isvc_name_prefix("p" * (MAX_ISVC_NAME - 11))


def test_load_manifest_checks_the_kind(tmp_path, default_template):
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(default_template))
    assert load_manifest(path, "batch/v1", "Job") == default_template
    with pytest.raises(ValueError, match="must hold one serving.kserve.io/v1beta1 InferenceService"):
        load_manifest(path, "serving.kserve.io/v1beta1", "InferenceService")
    with pytest.raises(ValueError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml", "batch/v1", "Job")


def _job(*conditions: dict) -> dict:
    return {"metadata": {"name": "j", "labels": {PROJECT_LABEL: "4"}}, "status": {"conditions": list(conditions)}}


def test_job_phase_and_failure_reason():
    assert job_phase(_job()) == "active"
    assert job_phase(_job({"type": "Complete", "status": "False"})) == "active"
    assert job_phase(_job({"type": "Complete", "status": "True"})) == "succeeded"
    failed = _job({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})
    assert job_phase(failed) == "failed"
    assert job_failure(failed) == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert job_failure(_job({"type": "Complete", "status": "True"})) is None
    assert job_project(_job()) == 4
    assert job_project({"metadata": {"labels": {PROJECT_LABEL: "x"}}}) is None


def test_isvc_readiness_needs_the_current_generation():
    ready = {"type": "Ready", "status": "True"}
    assert not isvc_ready({"metadata": {"generation": 1}})
    assert not isvc_ready({"metadata": {"generation": 1}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert isvc_ready({"metadata": {"generation": 1}, "status": {"conditions": [ready], "observedGeneration": 1}})
    assert not isvc_ready({"metadata": {"generation": 2}, "status": {"conditions": [ready], "observedGeneration": 1}})
    assert isvc_ready({"metadata": {"generation": 2}, "status": {"conditions": [ready]}})
    assert isvc_url({"status": {"address": {"url": "http://a.ns.svc.cluster.local"}, "url": "http://b"}}) == "http://a.ns.svc.cluster.local"
    assert isvc_url({"status": {"url": "http://b"}}) == "http://b"
    assert isvc_url({}) is None
