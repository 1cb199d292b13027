"""The real KServe predictor server (``python -m predictor``) over HTTP: V2 JSON and binary tensors,
bad input as 4xx, readiness that means "weights loaded", repository load/reload, single-model mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from fixtures import LABEL_CONFIG, REPO, free_port, synthetic_csv, wait_until
from trainer.publish import LocalPublisher, PublishError
from tscore.artifacts import META_FILE, WEIGHTS_FILE, ArtifactStore
from tscore.labelconfig import parse_label_config
from tscore.series import read_series

HEADER_LENGTH = "inference-header-content-length"
SERIES = read_series(synthetic_csv(rows=300, seed=42)[0], parse_label_config(LABEL_CONFIG)).values


class PredictorProcess:
    """``python -m predictor`` on a free port; its output goes to a log file shown on failure."""

    def __init__(self, model_dir: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "predictor", "--model_dir", str(model_dir), "--http_port", str(self.port), "--enable_grpc", "false", *extra]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=out, stderr=subprocess.STDOUT)

    def wait_live(self) -> None:
        def live():
            if self.process.poll() is not None:
                raise AssertionError(f"predictor exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(live, timeout=90, interval=0.2, message="the predictor to answer /v2/health/live")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def copy_version(store: ArtifactStore, source: Path, project: int) -> str:
    """A new published-ready version of ``project`` holding the weights in ``source`` (no training)."""

    version = store.next_version(project)

    def write(directory: Path) -> None:
        shutil.copy(source / WEIGHTS_FILE, directory / WEIGHTS_FILE)
        meta = json.loads((source / META_FILE).read_text())
        meta.update(version=version, project=project)
        (directory / META_FILE).write_text(json.dumps(meta))

    return store.write_version(project, write, version=version)


@pytest.fixture(scope="module")
def servers(trained_model_dir, tmp_path_factory):
    """A repository-mode server over a copy of the models root and a single-model server, started together."""
    root = tmp_path_factory.mktemp("predictor") / "models"
    shutil.copytree(trained_model_dir, root)
    store = ArtifactStore(root)
    (root / "project-9").mkdir()  # a project that has never published a model
    version_dir = store.version_dir(7, store.current(7))
    repo = PredictorProcess(root, root.parent / "repository.log")
    single = PredictorProcess(version_dir, root.parent / "single.log", "--model_name", "foo")
    try:
        repo.wait_live()
        single.wait_live()
        yield repo, single, store
    finally:
        repo.stop()
        single.stop()


@pytest.fixture
def server(servers):
    return servers[0]


@pytest.fixture
def store(servers):
    return servers[2]


def json_request(values: np.ndarray, **extra) -> dict:
    return {"inputs": [{"name": "series", "shape": list(values.shape), "datatype": "FP32", "data": values.ravel().tolist()}], **extra}


def binary_request(values: np.ndarray, binary_output: bool = True) -> tuple[bytes, dict]:
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    header = {
        "inputs": [{"name": "series", "shape": list(values.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": binary_output},
    }
    head = json.dumps(header).encode()
    return head + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def decode(response: httpx.Response) -> tuple[dict[str, np.ndarray], dict]:
    """Outputs and parameters of a V2 response in JSON or binary form."""
    length = response.headers.get(HEADER_LENGTH)
    body = response.content
    head, rest = (json.loads(body[: int(length)]), body[int(length) :]) if length else (response.json(), b"")
    outputs, offset = {}, 0
    for output in head["outputs"]:
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(rest[offset : offset + size], dtype=dtype)
            offset += size
        else:
            array = np.asarray(output["data"], dtype=dtype)
        outputs[output["name"]] = array.reshape(output["shape"])
    return outputs, head.get("parameters") or {}


def infer(url: str, model: str, payload: dict) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=payload, timeout=30)


def segments(outputs: dict[str, np.ndarray]) -> list[tuple]:
    return list(zip(*(outputs[k].tolist() for k in ("segment_start", "segment_end", "segment_label")), strict=True))


def test_live_and_ready_with_the_published_model(server, store):
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/project-7/ready").status_code == 200
    metadata = httpx.get(f"{server.url}/v2/models/project-7").json()
    assert metadata["inputs"] == [{"name": "series", "datatype": "FP32", "shape": [-1, 2]}]
    assert {o["name"] for o in metadata["outputs"]} >= {"segment_start", "segment_end", "segment_label", "segment_score", "probs"}


def test_json_and_binary_requests_give_the_same_segments(server, store):
    response = infer(server.url, "project-7", json_request(SERIES))
    assert response.status_code == 200, response.text
    by_json, parameters = decode(response)
    assert parameters["model_version"] == store.current(7)
    assert json.loads(parameters["labels"]) == ["Run", "Walk", "Fall"]
    assert segments(by_json), "the trained model finds segments in a synthetic series"
    assert all(0 <= s <= e < len(SERIES) and 1 <= label <= 3 for s, e, label in segments(by_json))
    assert "probs" not in by_json

    body, headers = binary_request(SERIES)
    response = httpx.post(f"{server.url}/v2/models/project-7/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert HEADER_LENGTH in response.headers
    by_binary, _ = decode(response)
    assert segments(by_binary) == segments(by_json)
    np.testing.assert_allclose(by_binary["segment_score"], by_json["segment_score"], rtol=1e-5)
    assert by_binary["segment_start"].dtype == np.int64 and by_binary["segment_score"].dtype == np.float32


@pytest.mark.parametrize("ask", [{"outputs": [{"name": "probs"}]}, {"parameters": {"probabilities": True}}])
def test_probabilities_on_request(server, ask):
    outputs, _ = decode(infer(server.url, "project-7", json_request(SERIES, **ask)))
    probs = outputs["probs"]
    assert probs.shape == (len(SERIES), 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    for start, end, label in segments(outputs):
        assert probs[start : end + 1].argmax(axis=1).tolist().count(label) > 0


def bad_requests() -> dict[str, tuple[dict | bytes, dict | None]]:
    values = SERIES[:20]
    three = np.ones((20, 3), np.float32)
    raw, headers = binary_request(values)
    return {
        "three channels": (json_request(three), None),
        "one dimension": ({"inputs": [{"name": "series", "shape": [40], "datatype": "FP32", "data": values.ravel().tolist()}]}, None),
        "INT64": ({"inputs": [{"name": "series", "shape": [20, 2], "datatype": "INT64", "data": [1] * 40}]}, None),
        "FP64": ({"inputs": [{"name": "series", "shape": [20, 2], "datatype": "FP64", "data": [1.0] * 40}]}, None),
        "too little data": ({"inputs": [{"name": "series", "shape": [20, 2], "datatype": "FP32", "data": [1.0] * 5}]}, None),
        "too much data": ({"inputs": [{"name": "series", "shape": [2, 2], "datatype": "FP32", "data": [1.0] * 40}]}, None),
        "no rows": ({"inputs": [{"name": "series", "shape": [0, 2], "datatype": "FP32", "data": []}]}, None),
        "no inputs": ({"inputs": []}, None),
        "binary size mismatch": (raw[:-8], headers),
        "NaN": binary_request(np.full((20, 2), np.nan, np.float32)),
        "not JSON": (b"{not json", {"Content-Type": "application/json"}),
    }


@pytest.mark.parametrize("case", list(bad_requests()))
def test_bad_input_is_400_never_500(server, case):
    payload, headers = bad_requests()[case]
    url = f"{server.url}/v2/models/project-7/infer"
    response = httpx.post(url, content=payload, headers=headers) if isinstance(payload, bytes) else httpx.post(url, json=payload)
    if case == "not JSON":
        # FastAPI's own body validation inside KServe answers this one.
        assert response.status_code == 422, response.text
    else:
        assert response.status_code == 400, (case, response.status_code, response.text)
        assert response.json()["error"]
    # The model keeps serving.
    assert infer(server.url, "project-7", json_request(SERIES[:50])).status_code == 200


def test_unknown_model_is_404(server):
    response = infer(server.url, "project-12345", json_request(SERIES[:50]))
    assert response.status_code == 404
    assert httpx.get(f"{server.url}/v2/models/project-12345/ready").status_code == 404


def test_loading_a_project_without_a_published_model_is_503_and_others_keep_serving(server):
    for name in ("project-9", "project-404", "not-a-project"):
        response = httpx.post(f"{server.url}/v2/repository/models/{name}/load", timeout=30)
        assert response.status_code == 503, (name, response.text)
    assert "no published model" in httpx.post(f"{server.url}/v2/repository/models/project-9/load").json()["error"]
    assert infer(server.url, "project-7", json_request(SERIES[:50])).status_code == 200
    with pytest.raises(PublishError, match="503"):
        LocalPublisher(server.url, timeout=30).rollout(9, "p9-v0001-20260101T000000Z")


def test_a_project_is_ready_only_once_its_weights_are_loaded(server, store):
    source = store.version_dir(7, store.current(7))
    version = copy_version(store, source, 8)
    store.publish(8, version)
    # Published on disk, but the server has not loaded it.
    assert httpx.get(f"{server.url}/v2/models/project-8/ready").status_code != 200
    assert infer(server.url, "project-8", json_request(SERIES[:50])).status_code == 404
    LocalPublisher(server.url, timeout=30).rollout(8, version)
    assert httpx.get(f"{server.url}/v2/models/project-8/ready").status_code == 200
    _, parameters = decode(infer(server.url, "project-8", json_request(SERIES[:50])))
    assert parameters["model_version"] == version


def test_reload_swaps_the_model_while_requests_keep_succeeding(server, store):
    old = store.current(7)
    new = copy_version(store, store.version_dir(7, old), 7)
    store.publish(7, new)

    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def traffic():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() or len(statuses) < 3:
                response = client.post(f"{server.url}/v2/models/project-7/infer", json=json_request(SERIES[:100]))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["parameters"]["model_version"])

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        wait_until(lambda: len(statuses) >= 3, message="traffic before the reload")
        LocalPublisher(server.url, timeout=30).rollout(7, new)
        seen = len(statuses)
        wait_until(lambda: len(statuses) >= seen + 3, message="traffic after the reload")
    finally:
        stop.set()
        worker.join(60)
    assert set(statuses) == {200}
    assert versions[0] == old and versions[-1] == new
    # Versions change once, from old to new, never back.
    assert versions == sorted(versions, key=lambda v: v == new)


def test_single_model_mode(servers, store):
    _, single, _ = servers
    assert httpx.get(f"{single.url}/v2/models/foo/ready").status_code == 200
    response = infer(single.url, "foo", json_request(SERIES))
    assert response.status_code == 200, response.text
    outputs, parameters = decode(response)
    assert parameters["model_version"].startswith("p7-v0001-")
    assert segments(outputs)
    assert infer(single.url, "project-7", json_request(SERIES)).status_code == 404
    assert infer(single.url, "foo", json_request(np.ones((10, 5), np.float32))).status_code == 400
