"""The LS protocol against a deployed gateway (``make kind-e2e``): runs only with ``-m kind``.

A kind cluster needs Docker, which no test machine here has; these tests are deselected by
default (``-m "not kind"`` in pyproject) and run by ``k8s/kind-e2e.sh`` with TS_SEGMENTER_URL
pointing at the gateway behind the cluster's ingress or a port-forward.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

pytestmark = pytest.mark.kind

LABEL_CONFIG = (
    '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Run"/></TimeSeriesLabels>'
    '<TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time"><Channel column="a"/></TimeSeries></View>'
)


@pytest.fixture(scope="module")
def gateway() -> httpx.Client:
    url = os.environ.get("TS_SEGMENTER_URL")
    if not url:
        pytest.fail("TS_SEGMENTER_URL must point at the deployed gateway (k8s/kind-e2e.sh sets it)")
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_health_and_setup_answer_within_label_studios_timeouts(gateway):
    started = time.perf_counter()
    assert gateway.get("/health").json()["status"] == "UP"
    version = gateway.post("/setup", json={"project": "900001.1795556495", "schema": LABEL_CONFIG}).json()["model_version"]
    assert version.startswith("p900001-")
    assert time.perf_counter() - started < 1.0


def test_predict_for_a_project_without_model_returns_one_empty_result_per_task(gateway):
    body = {"tasks": [{"id": 1, "data": {"csv_url": "http://example.invalid/a.csv"}}, {"id": 2, "data": {"csv_url": "x"}}], "project": "900001.1", "label_config": LABEL_CONFIG}
    results = gateway.post("/predict", json=body).json()["results"]
    assert [r["result"] for r in results] == [[], []]


def test_webhook_acknowledges_and_launches_a_training_job(gateway):
    assert gateway.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 900001}}).status_code == 200
    response = gateway.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 900001}})
    assert response.status_code == 201 and response.json() == {"status": "ok"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = gateway.get("/status/900001").json()
        if status["trainings_started"] or status["state"] != "idle" or status["last_result"]:
            return
        time.sleep(1)
    pytest.fail(f"no training launched: {status}")


def test_malformed_json_is_a_400(gateway):
    response = gateway.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()
