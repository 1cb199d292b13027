"""The gateway app over HTTP (httpx + ASGI transport) with the real LocalOrchestrator and a real predictor.

The predictor is a real ``python -m predictor`` subprocess that the orchestrator finds through
PREDICTOR_URL (so it starts none of its own); every test gets its own copy of the session's
models root (project 7 serves a trained model), and task CSVs are local files under
LOCAL_FILES_ROOT. Label Studio is unreachable, so a real trainer run fails fast, visibly.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from fixtures import LABEL_CONFIG, async_wait_until, free_port, predictor_server, synthetic_csv
from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.orchestrator.local import LocalOrchestrator
from gateway.settings import GatewaySettings
from tscore.artifacts import ArtifactStore

TESTDATA = Path(__file__).resolve().parents[1] / "testdata" / "ls"
DATED_CONFIG = LABEL_CONFIG.replace('timeColumn="time"', 'timeColumn="when"')
NO_SERIES_CONFIG = '<View><Text name="text" value="$text"/><Labels name="label" toName="text"><Label value="Run"/></Labels></View>'


def canned(name: str) -> dict:
    return json.loads((TESTDATA / name).read_text())


@pytest.fixture(scope="module")
def predictor_url(trained_model_dir, tmp_path_factory):
    """``python -m predictor`` serving a copy of the session's models root."""
    root = tmp_path_factory.mktemp("gateway-predictor") / "models"
    shutil.copytree(trained_model_dir, root)
    with predictor_server(root) as (url, _):
        yield url


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory) -> Path:
    """Task CSVs: two good ones with disjoint time ranges, a date-time one, and broken ones."""
    root = tmp_path_factory.mktemp("csvs")
    for name, seed, offset in (("first.csv", 10, 0), ("second.csv", 11, 1000)):
        text, _ = synthetic_csv(rows=400, seed=seed)
        lines = text.splitlines()
        shifted = [lines[0]] + [f"{round(float(t) + offset, 1)},{rest}" for t, rest in (line.split(",", 1) for line in lines[1:])]
        (root / name).write_text("\n".join(shifted) + "\n")
    text, _ = synthetic_csv(rows=400, seed=12)
    lines = text.splitlines()
    dated = ["when,a,b"] + [f"2024-03-01 08:{i // 60:02d}:{i % 60:02d},{line.split(',', 1)[1]}" for i, line in enumerate(lines[1:])]
    (root / "dated.csv").write_text("\n".join(dated) + "\n")
    (root / "missing_b.csv").write_text("time,a\n0,1\n1,2\n")
    (root / "words.csv").write_text("time,a,b\n0,1,2\n1,fast,3\n")
    (root / "empty.csv").write_text("")
    (root.parent / "secret.csv").write_text("time,a,b\n0,1,2\n")
    return root


def csv_times(root: Path, name: str) -> list:
    lines = (root / name).read_text().splitlines()[1:]
    first = [line.split(",")[0] for line in lines]
    return first if name == "dated.csv" else [float(t) if "." in t else int(t) for t in first]


@pytest.fixture
def instant_trainer(tmp_path) -> Path:
    """A stand-in for ``python -m trainer`` that fails at once, as the real one does without Label Studio.

    Used where a test needs to see that a training was launched but not to wait seconds for the
    real trainer to import torch and find Label Studio unreachable (one test does run the real one).
    """
    script = tmp_path / "instant-trainer"
    script.write_text('#!/bin/sh\necho \'TS_SEGMENTER_RESULT {"status": "error", "error": "ConnectError: Label Studio unreachable"}\'\nexit 1\n')
    script.chmod(0o755)
    return script


@pytest.fixture
async def gateway(trained_model_dir, predictor_url, csv_root, tmp_path):
    """Factory of running gateways: ``await gateway(**settings)`` → (client, app, settings)."""
    stack = contextlib.AsyncExitStack()
    count = iter(range(100))

    async def make(*, trainer: Path | None = None, **overrides):
        models = tmp_path / f"models-{next(count)}"
        shutil.copytree(trained_model_dir, models)
        options = dict(
            model_dir=models, predictor_url=predictor_url, local_files_root=csv_root,
            label_studio_url=f"http://127.0.0.1:{free_port()}", label_studio_api_key="k" * 40,
            predictor_retry_seconds=1.0, _env_file=None,
        )
        settings = GatewaySettings(**{**options, **overrides})
        metrics = GatewayMetrics()
        orchestrator = LocalOrchestrator(settings, metrics, **({"python": str(trainer)} if trainer else {}))
        app = create_app(settings, orchestrator, metrics)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway"))
        return client, app, settings

    yield make
    await stack.aclose()


def predict_body(*files: str, project="7.1795557232", config: str = LABEL_CONFIG) -> dict:
    body = canned("predict.json")
    template = body["tasks"][0]
    body["tasks"] = [{**copy.deepcopy(template), "id": i + 1, "project": 7, "data": {"csv_url": name}} for i, name in enumerate(files)]
    body.update(project=project, label_config=config)
    return body


def tree_digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


# -- health and setup -------------------------------------------------------------------------


async def test_health(gateway):
    client, _, _ = await gateway()
    for path in ("/", "/health"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json()["status"] == "UP"


@pytest.mark.parametrize("name", ["setup.json", "setup_project_int.json", "setup_project_object.json"])
async def test_setup_reports_the_served_version(gateway, name):
    client, _, settings = await gateway()
    served = ArtifactStore(settings.model_dir).current(7)
    body = canned(name)
    assert (await client.post("/setup", json=body)).json() == {"model_version": "p1-untrained"}
    body["project"] = {"setup.json": "7.123", "setup_project_int.json": 7, "setup_project_object.json": {"id": 7}}[name]
    response = await client.post("/setup", json=body)
    assert response.status_code == 200
    assert response.json() == {"model_version": served}


async def test_setup_and_health_never_wait_on_the_predictor(gateway):
    client, _, settings = await gateway(predictor_url=f"http://127.0.0.1:{free_port()}", predictor_retry_seconds=0.5)
    served = ArtifactStore(settings.model_dir).current(7)
    started = time.monotonic()
    setup = await client.post("/setup", json={"project": "7.123", "schema": LABEL_CONFIG})
    health = await client.get("/health")
    assert time.monotonic() - started < 0.5
    assert setup.json() == {"model_version": served} and health.status_code == 200
    # /predict does need it: a bounded wait, then 503 with Retry-After.
    response = await client.post("/predict", json=predict_body("first.csv"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "unreachable" in response.json()["error"]


# -- predict ------------------------------------------------------------------------------------


def check_regions(result: dict, times: list, version: str) -> None:
    assert result["model_version"] == version
    assert result["result"], "the trained model finds segments in a synthetic series"
    for region in result["result"]:
        assert region["from_name"] == "label" and region["to_name"] == "ts" and region["type"] == "timeserieslabels"
        assert 0 < region["score"] <= 1
        value = region["value"]
        assert value["start"] in times and value["end"] in times
        assert times.index(value["start"]) <= times.index(value["end"])
        assert value["instant"] == (value["start"] == value["end"])
        assert len(value["timeserieslabels"]) == 1 and value["timeserieslabels"][0] in ("Run", "Walk", "Fall")
    assert 0 < result["score"] <= 1


async def test_predict_one_result_per_task_in_order(gateway, csv_root):
    client, _, settings = await gateway()
    served = ArtifactStore(settings.model_dir).current(7)
    response = await client.post("/predict", json=predict_body("second.csv", "first.csv", "second.csv"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for result, name in zip(results, ["second.csv", "first.csv", "second.csv"]):
        check_regions(result, csv_times(csv_root, name), served)
    assert all(r["value"]["start"] >= 1000 for r in results[0]["result"])
    assert all(r["value"]["start"] < 1000 for r in results[1]["result"])
    assert results[0] == results[2]
    assert "Run" in {r["value"]["timeserieslabels"][0] for r in results[1]["result"]}


async def test_predict_with_a_datetime_time_column(gateway, csv_root):
    client, _, settings = await gateway()
    response = await client.post("/predict", json=predict_body("dated.csv", config=DATED_CONFIG))
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    check_regions(result, csv_times(csv_root, "dated.csv"), ArtifactStore(settings.model_dir).current(7))
    assert all(isinstance(r["value"]["start"], str) and r["value"]["start"].startswith("2024-03-01 08:") for r in result["result"])


async def test_a_bad_task_gets_an_empty_result_and_the_others_are_answered(gateway, csv_root):
    client, app, settings = await gateway()
    served = ArtifactStore(settings.model_dir).current(7)
    body = predict_body("first.csv", "missing_b.csv", "second.csv", "nowhere.csv", "words.csv")
    response = await client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 5
    assert [bool(r["result"]) for r in results] == [True, False, True, False, False]
    assert all(r["model_version"] == served for r in results)
    metrics = (await client.get("/metrics")).text
    assert 'ts_segmenter_predicted_tasks_total{outcome="ok"} 2.0' in metrics
    assert 'ts_segmenter_predicted_tasks_total{outcome="InvalidSeries"} 2.0' in metrics


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("missing_b.csv", 422, "lacks column(s) 'b'"),
        ("words.csv", 422, "'a' has a non-numeric value 'fast' at row 1"),
        ("empty.csv", 422, "empty"),
        ("../secret.csv", 400, "outside LOCAL_FILES_ROOT"),
        ("nowhere.csv", 424, "cannot read task CSV 'nowhere.csv'"),
        ("/data/upload/7/x.csv", 424, "failed: ConnectError"),
        ("ftp://host/x.csv", 400, "unsupported scheme"),
    ],
)
async def test_when_every_task_fails_the_answer_names_the_problem(gateway, name, status, words):
    client, _, _ = await gateway()
    response = await client.post("/predict", json=predict_body(name))
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


async def test_unreachable_csv_url(gateway):
    client, _, _ = await gateway()
    response = await client.post("/predict", json=predict_body(f"http://127.0.0.1:{free_port()}/ts_static.csv"))
    assert response.status_code == 424
    assert "ts_static.csv failed" in response.json()["error"]


async def test_malformed_requests(gateway):
    client, _, _ = await gateway()
    response = await client.post("/predict", content=b'{"tasks": [', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]

    response = await client.post("/predict", json={"label_config": LABEL_CONFIG, "project": "7.1"})
    assert response.status_code == 422
    assert "tasks" in response.json()["error"]

    response = await client.post("/predict", json=predict_body("first.csv", config=NO_SERIES_CONFIG))
    assert response.status_code == 422
    assert "<TimeSeries>" in response.json()["error"]

    body = predict_body("first.csv")
    del body["label_config"]
    response = await client.post("/predict", json=body)
    assert response.status_code == 400
    assert "label_config" in response.json()["error"]

    response = await client.post("/predict", json=predict_body("first.csv", project="../../etc"))
    assert response.status_code == 400
    assert "invalid project id" in response.json()["error"]

    response = await client.post("/setup", json={"project": "7/../8"})
    assert response.status_code == 400


@pytest.mark.parametrize("name", ["predict.json", "predict_project_int.json", "predict_project_object.json"])
async def test_a_project_without_a_model_gets_one_empty_result_per_task(gateway, name):
    client, _, _ = await gateway()
    body = canned(name)  # exactly what Label Studio sent, ~20 extra task fields included
    response = await client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [{"result": [], "score": 0.0, "model_version": "p1-untrained"}] * len(body["tasks"])}


# -- webhook --------------------------------------------------------------------------------------


def webhook_cases() -> list:
    created = canned("webhook_annotation_created.json")
    cases = [
        pytest.param(created, id="ANNOTATION_CREATED/object"),
        pytest.param(canned("webhook_annotation_created_project_int.json"), id="ANNOTATION_CREATED/int"),
        pytest.param(canned("webhook_annotation_created_project_string.json"), id="ANNOTATION_CREATED/string"),
        pytest.param({**created, "action": "ANNOTATION_UPDATED"}, id="ANNOTATION_UPDATED"),
        pytest.param({"action": "ANNOTATION_DELETED", "annotation": created["annotation"]}, id="ANNOTATION_DELETED/annotation-only"),
        pytest.param(canned("webhook_start_training.json"), id="START_TRAINING/object"),
        pytest.param(canned("webhook_start_training_project_int.json"), id="START_TRAINING/int"),
        pytest.param(canned("webhook_start_training_project_string.json"), id="START_TRAINING/string"),
        pytest.param({**canned("webhook_start_training.json"), "action": "PROJECT_UPDATED"}, id="PROJECT_UPDATED"),
    ]
    return cases


@pytest.mark.parametrize("event", webhook_cases())
async def test_webhook_events_request_a_training(gateway, instant_trainer, event):
    client, _, settings = await gateway(trainer=instant_trainer)
    started = time.monotonic()
    response = await client.post("/webhook", json=event)
    assert time.monotonic() - started < 0.5
    assert response.status_code == 201
    assert response.json() == {"status": "ok"}

    async def finished():
        return (await client.get("/status/1")).json()["last_result"] == "failed"

    await async_wait_until(finished, message="the training of project 1 to run")
    status = (await client.get("/status/1")).json()
    assert status["trainings_started"] == 1
    assert status["last_error"] == "ConnectError: Label Studio unreachable"
    assert status["state"] == "idle"


async def test_unknown_actions_are_acknowledged_and_ignored(gateway, instant_trainer):
    client, _, _ = await gateway(trainer=instant_trainer)
    for action in ("TASKS_CREATED", "SOMETHING_NEW"):
        response = await client.post("/webhook", json={"action": action, "project": {"id": 1}})
        assert response.status_code == 200
        assert response.json()["status"] == "ignored"
    assert (await client.get("/status/1")).json()["trainings_started"] == 0
    assert 'ts_segmenter_webhook_events_total{action="SOMETHING_NEW",outcome="ignored"} 1.0' in (await client.get("/metrics")).text


async def test_only_every_nth_annotation_event_requests_a_training(gateway, instant_trainer):
    client, _, settings = await gateway(trainer=instant_trainer, start_training_each_n_updates=3)
    event = canned("webhook_annotation_created.json")
    for _ in range(2):
        assert (await client.post("/webhook", json=event)).status_code == 201
    status = (await client.get("/status/1")).json()
    assert status["trainings_started"] == 0 and status["state"] == "idle"
    assert not (settings.model_dir / "project-1").exists()

    assert (await client.post("/webhook", json=event)).status_code == 201

    async def trained(count):
        return (await client.get("/status/1")).json()["trainings_started"] == count and (await client.get("/status/1")).json()["state"] == "idle"

    await async_wait_until(lambda: trained(1), message="the third event's training")
    for _ in range(2):
        await client.post("/webhook", json=event)
    assert (await client.get("/status/1")).json()["trainings_started"] == 1
    # START_TRAINING is not counted: it always trains.
    await client.post("/webhook", json=canned("webhook_start_training.json"))
    await async_wait_until(lambda: trained(2), message="the START_TRAINING training")
    metrics = (await client.get("/metrics")).text
    assert 'ts_segmenter_webhook_events_total{action="ANNOTATION_CREATED",outcome="counted"} 4.0' in metrics
    assert 'ts_segmenter_webhook_events_total{action="ANNOTATION_CREATED",outcome="training"} 1.0' in metrics


@pytest.mark.parametrize(
    "event",
    [
        {"action": "START_TRAINING", "project": "../../etc"},
        {"action": "START_TRAINING", "project": {"id": "../x"}},
        {"action": "ANNOTATION_CREATED", "annotation": {"project": "7/.."}},
        {"action": "START_TRAINING"},
        {"action": "START_TRAINING", "project": -3},
    ],
)
async def test_webhook_refuses_bad_project_ids(gateway, instant_trainer, event):
    client, _, settings = await gateway(trainer=instant_trainer)
    before = sorted(p.name for p in settings.model_dir.iterdir())
    response = await client.post("/webhook", json=event)
    assert response.status_code == 400
    assert "project" in response.json()["error"]
    assert sorted(p.name for p in settings.model_dir.iterdir()) == before
    assert (await client.get("/status")).json()["projects"] == [{**(await client.get("/status/7")).json()}]


async def test_webhook_malformed(gateway):
    client, _, _ = await gateway()
    assert (await client.post("/webhook", content=b"not json", headers={"content-type": "application/json"})).status_code == 400
    response = await client.post("/webhook", json={"project": 1})
    assert response.status_code == 422 and "action" in response.json()["error"]


async def test_a_failed_training_is_visible_and_never_touches_another_project(gateway):
    """The real trainer runs for project 8; Label Studio is unreachable, so it fails fast."""
    client, _, settings = await gateway()
    project7 = settings.model_dir / "project-7"
    digest = tree_digest(project7)
    served = (await client.post("/setup", json={"project": "7.1"})).json()

    response = await client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 8}})
    assert response.status_code == 201

    async def failed():
        return (await client.get("/status/8")).json()["last_result"] == "failed"

    await async_wait_until(failed, timeout=90, interval=0.2, message="the trainer of project 8 to fail")
    status = (await client.get("/status/8")).json()
    assert "Connect" in status["last_error"]
    assert status["served_version"] is None and status["last_duration_s"] > 0
    listed = {p["project"]: p for p in (await client.get("/status")).json()["projects"]}
    assert listed[8]["last_error"] == status["last_error"]
    metrics = (await client.get("/metrics")).text
    assert 'ts_segmenter_trainings_total{project="8",result="failed"} 1.0' in metrics
    assert 'ts_segmenter_training_active{project="8"} 0.0' in metrics

    assert tree_digest(project7) == digest
    assert (await client.post("/setup", json={"project": "7.1"})).json() == served
    assert not ArtifactStore(settings.model_dir).versions(8)
    assert (await client.post("/setup", json={"project": 8})).json() == {"model_version": "p8-untrained"}


# -- auth, metrics, status ------------------------------------------------------------------------


async def test_basic_auth(gateway):
    client, _, _ = await gateway(basic_auth_user="ls", basic_auth_pass="s3cret")
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    for headers in ({}, bad, {"Authorization": "Basic !!!"}, {"Authorization": "Bearer s3cret"}):
        response = await client.post("/setup", json={"project": "7.1"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Basic"
    assert (await client.post("/setup", json={"project": "7.1"}, headers=good)).status_code == 200
    for headers in ({}, bad):
        response = await client.post("/predict", json=predict_body("first.csv"), headers=headers)
        assert (response.status_code, response.headers["www-authenticate"]) == (401, "Basic")
    response = await client.post("/predict", json=predict_body("first.csv"), headers=good)
    assert response.status_code == 200 and response.json()["results"][0]["result"]
    assert (await client.post("/webhook", json={"action": "NOPE"})).status_code == 401
    assert (await client.get("/status")).status_code == 401
    assert (await client.get("/status", headers=good)).status_code == 200
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/")).status_code == 200


async def test_metrics(gateway):
    client, _, settings = await gateway()
    await client.get("/health")
    await client.post("/setup", json={"project": "7.1"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    served = ArtifactStore(settings.model_dir).current(7)
    assert 'ts_segmenter_http_requests_total{route="/health",status="200"} 1.0' in text
    assert 'ts_segmenter_http_requests_total{route="/setup",status="200"} 1.0' in text
    assert f'ts_segmenter_served_version_info{{project="7",version="{served}"}} 1.0' in text
    assert "ts_segmenter_http_request_seconds_bucket" in text


async def test_status(gateway):
    client, _, settings = await gateway()
    body = (await client.get("/status")).json()
    assert body["orchestrator"] == "local"
    [project] = body["projects"]
    assert project["project"] == 7 and project["served_version"] == ArtifactStore(settings.model_dir).current(7)
    assert project["state"] == "idle" and project["last_error"] is None
    assert (await client.get("/status/abc")).status_code == 400
