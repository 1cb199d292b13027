"""Shared test helpers: synthetic labelled series, tiny trained models, ports, waiting, processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"

LABEL_CONFIG = (
    '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Run"/><Label value="Walk"/><Label value="Fall"/></TimeSeriesLabels>'
    '<TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time"><Channel column="a"/><Channel column="b"/></TimeSeries></View>'
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, message: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


async def async_wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, message: str = "condition") -> object:
    """Async twin of :func:`wait_until` for conditions checked inside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)


def synthetic_csv(rows: int = 400, seed: int = 0) -> tuple[str, list[dict]]:
    """A 2-channel CSV with clearly separable 'Run' and 'Walk' ranges and 'Fall' instants.

    Returns the CSV text and the ground-truth regions as Label Studio region values.
    """
    rng = np.random.default_rng(seed)
    time_values = np.round(np.arange(rows) * 0.1, 1)
    a = rng.normal(0, 0.1, rows)
    b = rng.normal(0, 0.1, rows)
    regions = []
    block = 40
    for index, start in enumerate(range(20, rows - block, 2 * block)):
        label = "Run" if index % 2 == 0 else "Walk"
        end = start + block - 1
        if label == "Run":
            a[start : end + 1] += 3.0
        else:
            b[start : end + 1] += 3.0
        regions.append({"start": float(time_values[start]), "end": float(time_values[end]), "instant": False, "timeserieslabels": [label]})
    for row in range(block + 50, rows, 2 * block):
        if row < rows:
            a[row] -= 6.0
            b[row] -= 6.0
            regions.append({"start": float(time_values[row]), "end": float(time_values[row]), "instant": True, "timeserieslabels": ["Fall"]})
    lines = ["time,a,b"] + [f"{t},{x:.4f},{y:.4f}" for t, x, y in zip(time_values, a, b)]
    return "\n".join(lines) + "\n", regions


def as_annotation(values: list[dict], ground_truth: bool = False) -> dict:
    """LS annotation dict holding ``values`` as timeserieslabels regions."""
    return {
        "ground_truth": ground_truth,
        "was_cancelled": False,
        "result": [{"from_name": "label", "to_name": "ts", "type": "timeserieslabels", "value": v} for v in values],
    }


def run_python(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python <args>`` with the test interpreter from the repository root."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


@contextmanager
def predictor_server(models_root: Path, ready_model: str = "project-7") -> Iterator[tuple[str, Path]]:
    """A real ``python -m predictor`` over ``models_root`` on a free port, once ``ready_model`` is ready.

    Yields its base URL and the path of its log (shown when it dies early).
    """
    port = free_port()
    log = models_root.parent / f"predictor-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "predictor", "--model_dir", str(models_root), "--http_port", str(port), "--enable_grpc", "false"],
            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/v2/models/{ready_model}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=90, interval=0.2, message="the predictor")
        yield url, log
    finally:
        process.terminate()
        process.wait(15)
