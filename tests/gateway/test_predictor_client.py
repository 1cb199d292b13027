"""The gateway's V2 binary client against the real KServe predictor server: results, 4xx, bounded retries."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fixtures import LABEL_CONFIG, async_wait_until, free_port, predictor_server, synthetic_csv
from gateway.predictor_client import HEADER_LENGTH, PredictorClient, PredictorError, decode_response, encode_request
from trainer.publish import LocalPublisher
from tscore.artifacts import META_FILE, WEIGHTS_FILE, ArtifactStore
from tscore.errors import InvalidInput, ModelNotReady
from tscore.labelconfig import parse_label_config
from tscore.series import read_series

SERIES = read_series(synthetic_csv(rows=300, seed=5)[0], parse_label_config(LABEL_CONFIG)).values


@pytest.fixture(scope="module")
def predictor(trained_model_dir, tmp_path_factory):
    """``python -m predictor`` over a private copy of the session's models root."""
    root = tmp_path_factory.mktemp("client") / "models"
    shutil.copytree(trained_model_dir, root)
    with predictor_server(root) as (url, log):
        yield url, ArtifactStore(root), log


@pytest.fixture
async def client():
    """A factory of clients that are closed after the test."""
    made = []

    def make(retry_seconds: float) -> PredictorClient:
        made.append(PredictorClient(timeout=30, retry_seconds=retry_seconds))
        return made[-1]

    yield make
    for predictor_client in made:
        await predictor_client.aclose()


def test_encode_request_is_a_json_header_then_raw_fp32():
    values = np.arange(6, dtype=np.float64).reshape(3, 2)
    body, headers = encode_request(values, probabilities=True)
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert header["inputs"][0] | {"parameters": None} == {"name": "series", "shape": [3, 2], "datatype": "FP32", "parameters": None}
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 24
    assert header["parameters"]["probabilities"] is True
    assert np.frombuffer(body[length:], "<f4").tolist() == [0, 1, 2, 3, 4, 5]


def test_decode_response_reads_json_and_binary_outputs():
    head = {"outputs": [
        {"name": "segment_start", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
        {"name": "segment_score", "shape": [2], "datatype": "FP32", "data": [0.5, 0.25]},
    ], "parameters": {"model_version": "v"}}
    raw = json.dumps(head).encode()
    result = decode_response(raw + np.array([3, 9], "<i8").tobytes(), httpx.Headers({HEADER_LENGTH: str(len(raw))}))
    assert result.outputs["segment_start"].tolist() == [3, 9]
    assert result.outputs["segment_score"].tolist() == [0.5, 0.25]
    assert result.parameters == {"model_version": "v"}
    with pytest.raises(PredictorError, match="not V2 JSON"):
        decode_response(b"<html>bad gateway</html>", httpx.Headers())
    with pytest.raises(PredictorError, match="unsupported type"):
        decode_response(json.dumps({"outputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).encode(), httpx.Headers())


async def test_infer_matches_the_json_route(predictor, client):
    url, store, _ = predictor
    result = await client(1).infer(url, "project-7", SERIES, probabilities=True)
    assert result.parameters["model_version"] == store.current(7)
    assert json.loads(result.parameters["labels"]) == ["Run", "Walk", "Fall"]
    assert result.outputs["probs"].shape == (len(SERIES), 4)
    reference = httpx.post(
        f"{url}/v2/models/project-7/infer",
        json={"inputs": [{"name": "series", "shape": list(SERIES.shape), "datatype": "FP32", "data": SERIES.ravel().tolist()}]},
    ).json()
    by_name = {o["name"]: o["data"] for o in reference["outputs"]}
    for name in ("segment_start", "segment_end", "segment_label"):
        assert result.outputs[name].tolist() == by_name[name]
    assert len(result.outputs["segment_start"]) > 0


async def test_rejected_input_is_invalid_input_without_retrying(predictor, client):
    url, _, _ = predictor
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="expected \\[T, 2\\]") as raised:
        await client(10).infer(url, "project-7", np.ones((20, 3), np.float32))
    assert raised.value.status_code == 400
    assert time.monotonic() - started < 5


async def test_an_unknown_model_is_retried_then_not_ready(predictor, client):
    url, _, _ = predictor
    started = time.monotonic()
    with pytest.raises(ModelNotReady, match="model project-4242 not ready \\(404") as raised:
        await client(0.8).infer(url, "project-4242", SERIES)
    elapsed = time.monotonic() - started
    assert raised.value.status_code == 503
    assert 0.2 < elapsed < 5


async def test_an_unreachable_predictor_is_not_ready(client):
    with pytest.raises(ModelNotReady, match="unreachable"):
        await client(0.3).infer(f"http://127.0.0.1:{free_port()}", "project-7", SERIES)


async def test_a_model_that_becomes_ready_while_retrying_answers(predictor, client):
    url, store, log = predictor
    source = store.version_dir(7, store.current(7))
    version = store.next_version(11)

    def write(directory: Path) -> None:
        shutil.copy(source / WEIGHTS_FILE, directory / WEIGHTS_FILE)
        meta = json.loads((source / META_FILE).read_text())
        (directory / META_FILE).write_text(json.dumps({**meta, "version": version, "project": 11}))

    store.write_version(11, write, version=version)
    store.publish(11, version)
    pending = asyncio.create_task(client(30).infer(url, "project-11", SERIES))
    # Load only once the server has refused a first attempt (its access log says so).
    refused = '"POST /v2/models/project-11/infer HTTP/1.1" 404'
    await async_wait_until(lambda: refused in log.read_text(), message="a refused first attempt")
    assert not pending.done()
    await asyncio.to_thread(LocalPublisher(url, timeout=30).rollout, 11, version)
    result = await asyncio.wait_for(pending, 30)
    assert result.parameters["model_version"] == version
