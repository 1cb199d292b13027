"""Serving figures measured on real processes on 127.0.0.1: latency, webhook acks, memory.

* ``/predict`` latency: a real predictor server (``python -m predictor``) serving a basicmotions
  model as project 1, and a real gateway (``python -m gateway``, ``ORCHESTRATOR=local`` with
  ``PREDICTOR_URL`` pointing at that predictor, so it spawns none; ``LOCAL_FILES_ROOT`` holding
  the task CSVs). The load generator runs in this process (httpx), on the same 2 cores.
* ``/webhook``: a burst of 100 concurrent ignored events, then one of 100 training events for a
  project with no Label Studio behind it; the trainings they launch fail fast, only the
  acknowledgement latency is measured.
* memory: the gateway's peak RSS after all of the above; a fresh predictor with 1 and then 11
  loaded projects; (the trainer's peak RSS comes from the quality runs' processes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import child_env, free_port, percentiles, proc_cpu_seconds, proc_memory_mb, tail, wait_for
from bench.data import REPO, dataset, synthetic_series, write_csv
from bench.rawhttp import Connection
from gateway.predictor_client import decode_response, encode_request
from tscore.artifacts import ArtifactStore, write_json_atomic
from tscore.series import read_series

log = logging.getLogger("bench")

PROJECT = 1
WEBHOOK_PROJECT = 99
VERSION_STAMP = "20260101T000000Z"


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark dies (Linux), so no server is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Process:
    """A server child process with its log; stopped by its own pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as handle:
            self.popen = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail(self.log_path)}")

    def stop(self) -> None:
        """SIGTERM the process (it stops its own children), SIGKILL after 20 s."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def install_model(root: Path, project: int, model_dir: Path) -> str:
    """Publish a saved TrainedModel directory as ``project``'s served version under a models root."""
    store = ArtifactStore(root)
    version = f"p{project}-v0001-{VERSION_STAMP}"
    target = store.project_dir(project) / version
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.pt", target / "model.pt")
    meta = json.loads((model_dir / "meta.json").read_text())
    meta.update(version=version, project=project)
    (target / "meta.json").write_text(json.dumps(meta))
    write_json_atomic(store.project_dir(project) / "CURRENT", {"version": version})
    return version


def _start_server(name: str, args: list[str], env: dict[str, str], log_path: Path, port: int, health_path: str) -> tuple[Process, str]:
    """Start ``python <args>`` listening on ``port``; return once ``GET <health_path>`` answers 200."""
    process = Process(name, args, env, log_path)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        process.check()
        try:
            return httpx.get(f"{url}{health_path}", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 120, f"the {name}", interval=0.2)
    return process, url


def start_predictor(root: Path, log_path: Path) -> tuple[Process, str]:
    """``python -m predictor`` in repository mode on a free port; returns once it is live."""
    port = free_port()
    args = ["-m", "predictor", "--model_dir", str(root), "--http_port", str(port), "--enable_grpc", "false"]
    return _start_server("predictor server", args, child_env(), log_path, port, "/v2/health/live")


def start_gateway(env: dict[str, str], log_path: Path) -> tuple[Process, str]:
    """``python -m gateway`` on a free port with ``env`` added; returns once /health answers."""
    port = free_port()
    return _start_server("gateway", ["-m", "gateway"], child_env(HOST="127.0.0.1", PORT=str(port), **env), log_path, port, "/health")


def start_forwarder(predictor_url: str, log_path: Path) -> tuple[Process, str]:
    """``python -m bench.forwarder`` relaying to the predictor; returns once it answers."""
    port = free_port()
    return _start_server("forwarder", ["-m", "bench.forwarder"], child_env(PORT=str(port), FORWARD_TO=predictor_url), log_path, port, "/live")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _measure(send, clients: int, per_client: int, warmup: int) -> tuple[list[float], float]:
    """Latencies of ``clients`` concurrent loops (one connection each) of ``per_client`` calls; also requests/s."""
    connections = [await Connection(*send.target).open() for _ in range(clients)]
    try:
        for _ in range(warmup):
            await send(connections[0])
        latencies: list[float] = []

        async def loop(connection: Connection) -> None:
            for _ in range(per_client):
                started = time.perf_counter()
                await send(connection)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in connections))
        return latencies, len(latencies) / (time.perf_counter() - started)
    finally:
        for connection in connections:
            await connection.close()


class _Call:
    """One kind of request, sent on a given connection; ``target`` is the server's port."""

    def __init__(self, port: int, path: str, body: bytes, headers: dict[str, str], check) -> None:
        self.target = (port,)
        self.path, self.body, self.headers, self.check = path, body, headers, check

    async def __call__(self, connection: Connection):
        status, headers, content = await connection.request("POST", self.path, self.body, self.headers)
        return self.check(status, headers, content)


def _direct_check(status: int, headers: dict, content: bytes):
    if status != 200:
        raise RuntimeError(f"direct V2 call answered {status}: {content[:300]!r}")
    return decode_response(content, headers)


def _gateway_check(status: int, headers: dict, content: bytes):
    answer = json.loads(content)
    if status != 200 or not answer["results"][0]["result"]:
        raise RuntimeError(f"gateway /predict answered {status}: {content[:300]!r}")
    return answer


async def _alternate(calls: dict[str, tuple[_Call, Connection]], rounds: int) -> dict[str, list[float]]:
    """One client: each round makes every call once, so drifting background load hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (send, connection) in calls.items():
            started = time.perf_counter()
            await send(connection)
            samples[name].append(time.perf_counter() - started)
    return samples


async def latency(predictor_url: str, gateway_url: str, label_config: str, values: np.ndarray, *, requests: int,
                  pids: dict[str, int] | None = None, on_phase=lambda phase: None) -> dict:
    """p50/p99 of direct V2 calls and gateway /predict calls for the same 1000-row task.

    ``pids`` (``{"gateway": pid, "predictor": pid}``) adds each server's CPU time per request of
    the 1-client run. ``on_phase(name)`` is called after the 1-client and after the 16-client runs
    (memory snapshots).
    """
    pids = pids or {}
    body, headers = encode_request(values)
    predict = {"tasks": [{"id": 1, "data": {"csv_url": "test_0.csv"}}], "project": PROJECT, "label_config": label_config}
    direct = _Call(_port(predictor_url), f"/v2/models/project-{PROJECT}/infer", body, headers, _direct_check)
    through_gateway = _Call(_port(gateway_url), "/predict", json.dumps(predict).encode(), {"Content-Type": "application/json"}, _gateway_check)
    results: dict = {}
    to_predictor, to_gateway = await Connection(_port(predictor_url)).open(), await Connection(_port(gateway_url)).open()
    try:
        # Sanity: both paths answer with the same number of segments.
        results["segments"] = {
            "direct": len((await direct(to_predictor)).outputs["segment_start"]),
            "gateway": len((await through_gateway(to_gateway))["results"][0]["result"]),
        }
        pairs = {"direct": (direct, to_predictor), "gateway": (through_gateway, to_gateway)}
        await _alternate(pairs, 10)
        before = await _route_seconds(to_gateway, "/predict")
        cpu_before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
        samples = await _alternate(pairs, requests)
        after = await _route_seconds(to_gateway, "/predict")
        cpu_after = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    finally:
        await to_predictor.close()
        await to_gateway.close()
    for name, figures in samples.items():
        results[f"{name}_c1"] = {**percentiles(figures), "requests_per_s": round(len(figures) / sum(figures), 1), "clients": 1}
    results["gateway_c1"]["server_side_mean_ms"] = round((after[0] - before[0]) / max(1, after[1] - before[1]) * 1000, 2)
    # The gateway serves `requests` calls in the 1-client run; the predictor twice as many (direct + via the gateway).
    results["cpu_ms_per_request_c1"] = {
        name: round((cpu_after[name] - cpu_before[name]) / (requests * (2 if name == "predictor" else 1)) * 1000, 2) for name in pids
    }
    on_phase("after the 1-client latency run")
    for name, send in (("direct", direct), ("gateway", through_gateway)):
        figures, rate = await _measure(send, 16, max(2, requests // 16), warmup=10)
        results[f"{name}_c16"] = {**percentiles(figures), "requests_per_s": round(rate, 1), "clients": 16}
    on_phase("after the 16-client latency run")
    for key in ("direct_c1", "gateway_c1", "direct_c16", "gateway_c16"):
        log.info("latency: %s: p50 %.2f ms p99 %.2f ms", key, results[key]["p50_ms"], results[key]["p99_ms"])
    results["gateway_overhead_p50_ms"] = round(results["gateway_c1"]["p50_ms"] - results["direct_c1"]["p50_ms"], 2)
    return results


async def forwarder_floor(predictor_url: str, forwarder_url: str, values: np.ndarray, *, requests: int, pid: int) -> dict:
    """Overhead of a bare Python pass-through proxy over a direct V2 call (1 client, alternating).

    The floor under the gateway's overhead on this machine: the same call, relayed byte for byte.
    """
    body, headers = encode_request(values)
    path = f"/v2/models/project-{PROJECT}/infer"
    direct = _Call(_port(predictor_url), path, body, headers, _direct_check)
    relayed = _Call(_port(forwarder_url), path, body, headers, _direct_check)
    to_predictor, to_forwarder = await Connection(_port(predictor_url)).open(), await Connection(_port(forwarder_url)).open()
    try:
        expected, forwarded = await direct(to_predictor), await relayed(to_forwarder)
        if not np.array_equal(expected.outputs["segment_start"], forwarded.outputs["segment_start"]):
            raise RuntimeError("the forwarder's answer differs from the predictor's")
        pairs = {"direct": (direct, to_predictor), "forwarded": (relayed, to_forwarder)}
        await _alternate(pairs, 10)
        cpu_before = proc_cpu_seconds(pid)
        samples = await _alternate(pairs, requests)
        cpu_ms = (proc_cpu_seconds(pid) - cpu_before) / requests * 1000
    finally:
        await to_predictor.close()
        await to_forwarder.close()
    direct_p50, forwarded_p50 = percentiles(samples["direct"])["p50_ms"], percentiles(samples["forwarded"])["p50_ms"]
    result = {"direct_p50_ms": direct_p50, "forwarded_p50_ms": forwarded_p50, "overhead_p50_ms": round(forwarded_p50 - direct_p50, 2),
              "forwarder_cpu_ms_per_request": round(cpu_ms, 2)}
    log.info("bare forwarder: overhead p50 %.2f ms, %.2f ms CPU per request", result["overhead_p50_ms"], cpu_ms)
    return result


def parse_cost(csv: Path, label_config: str, repeats: int = 50) -> dict:
    """What reading and parsing the 1000-row CSV costs inside the gateway (``read_series``), median ms."""
    from tscore.labelconfig import parse_label_config

    config = parse_label_config(label_config)
    raw = csv.read_bytes()
    read_series(raw, config)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        read_series(csv.read_bytes(), config)
        times.append(time.perf_counter() - started)
    return {"read_series_p50_ms": round(statistics.median(times) * 1000, 2)}


def big_task(predictor_url: str, gateway_url: str, label_config: str, values: np.ndarray, *, repeats: int) -> dict:
    """End-to-end latency of one 100k-row task through the gateway (plus the direct V2 call for reference)."""
    predict = {"tasks": [{"id": 2, "data": {"csv_url": "synthetic_100k.csv"}}], "project": PROJECT, "label_config": label_config}
    body, headers = encode_request(values)
    with httpx.Client(timeout=120) as client:
        gateway_times, direct_times, regions = [], [], 0
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            response = client.post(f"{gateway_url}/predict", json=predict)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"gateway /predict of the 100k-row task answered {response.status_code}: {response.text[:300]}")
            regions = len(response.json()["results"][0]["result"])
            if attempt:
                gateway_times.append(elapsed)
            started = time.perf_counter()
            response = client.post(f"{predictor_url}/v2/models/project-{PROJECT}/infer", content=body, headers=headers)
            if attempt:
                direct_times.append(time.perf_counter() - started)
    result = {
        "rows": len(values),
        "gateway_seconds_median": round(statistics.median(gateway_times), 3),
        "gateway_seconds": [round(t, 3) for t in gateway_times],
        "direct_v2_seconds_median": round(statistics.median(direct_times), 3),
        "regions": regions,
    }
    log.info("100k-row task: gateway %.3f s, direct V2 %.3f s", result["gateway_seconds_median"], result["direct_v2_seconds_median"])
    return result


async def webhook_burst(gateway_url: str, kind: str, events: int = 100) -> dict:
    """Acknowledgement latency of ``events`` concurrent webhook posts.

    ``kind="ignored"``: an action the backend acknowledges and ignores (LS's TASKS_CREATED);
    ``kind="training"``: alternating ANNOTATION_CREATED and START_TRAINING for one project, so
    the first event launches a training and the others coalesce into one follow-up.
    """
    bodies = []
    for index in range(events):
        if kind == "ignored":
            bodies.append({"action": "TASKS_CREATED", "project": {"id": WEBHOOK_PROJECT}})
        elif index % 2:
            bodies.append({"action": "ANNOTATION_CREATED", "project": {"id": WEBHOOK_PROJECT}, "annotation": {"id": index, "project": WEBHOOK_PROJECT}})
        else:
            bodies.append({"action": "START_TRAINING", "project": {"id": WEBHOOK_PROJECT}})
    encoded = [json.dumps(b).encode() for b in bodies]
    port = _port(gateway_url)
    # Open the connections first, so the burst measures the gateway rather than TCP set-up.
    connections = [await Connection(port).open() for _ in range(events)]
    control = await Connection(port).open()
    try:
        before = await _route_seconds(control, "/webhook")

        async def send(connection: Connection, body: bytes) -> tuple[float, int]:
            started = time.perf_counter()
            status, _, _ = await connection.request("POST", "/webhook", body, {"Content-Type": "application/json"})
            return time.perf_counter() - started, status

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(send(c, b) for c, b in zip(connections, encoded)))
        burst = time.perf_counter() - started
        after = await _route_seconds(control, "/webhook")
    finally:
        for connection in [*connections, control]:
            await connection.close()
    codes: dict[str, int] = {}
    for _, code in outcomes:
        codes[str(code)] = codes.get(str(code), 0) + 1
    handled = after[1] - before[1]
    server_mean = (after[0] - before[0]) / handled * 1000 if handled else None
    result = {
        "events": events, **percentiles([t for t, _ in outcomes]), "burst_seconds": round(burst, 3), "status_codes": codes,
        "server_side_mean_ms": round(server_mean, 2) if server_mean is not None else None,
    }
    log.info("webhook burst (%s): p50 %.2f ms p99 %.2f ms, %s", kind, result["p50_ms"], result["p99_ms"], codes)
    return result


async def _route_seconds(connection: Connection, route: str) -> tuple[float, float]:
    """``(sum of seconds, count)`` of the gateway's own latency histogram for one route (``/metrics``)."""
    _, content = await connection.get("/metrics")
    figures = {"sum": 0.0, "count": 0.0}
    for line in content.decode().splitlines():
        for kind in figures:
            if line.startswith(f"ts_segmenter_http_request_seconds_{kind}{{") and f'route="{route}"' in line:
                figures[kind] = float(line.rsplit(" ", 1)[1])
    return figures["sum"], figures["count"]


def settle_trainings(gateway_url: str, project: int, timeout: float = 180) -> dict:
    """Wait until the project's trainings (launched by the burst) are over; return its status."""

    def idle() -> dict | None:
        status = httpx.get(f"{gateway_url}/status/{project}", timeout=5).json()
        return status if status["state"] == "idle" and status["trainings_started"] >= 1 else None

    status = wait_for(idle, timeout, "the burst's trainings to finish", interval=0.25)
    return {k: status.get(k) for k in ("trainings_started", "last_result", "last_error", "state")}


def predictor_memory(model_dir: Path, workdir: Path, values: np.ndarray, extra_projects: int = 10) -> dict:
    """A fresh predictor's RSS with one loaded project, then with ``1 + extra_projects``."""
    root = workdir / "models-memory"
    install_model(root, 1, model_dir)
    body, headers = encode_request(values)
    process, url = start_predictor(root, workdir / "predictor-memory.log")
    try:
        with httpx.Client(timeout=60) as client:

            def exercise(project: int) -> None:
                for _ in range(3):
                    response = client.post(f"{url}/v2/models/project-{project}/infer", content=body, headers=headers)
                    if response.status_code != 200:
                        raise RuntimeError(f"project {project} infer answered {response.status_code}: {response.text[:300]}")

            wait_for(lambda: client.get(f"{url}/v2/models/project-1/ready").status_code == 200, 60, "project 1 ready")
            exercise(1)
            one = proc_memory_mb(process.pid)
            for project in range(2, 2 + extra_projects):
                install_model(root, project, model_dir)
                response = client.post(f"{url}/v2/repository/models/project-{project}/load")
                if response.status_code != 200:
                    raise RuntimeError(f"loading project {project} answered {response.status_code}: {response.text[:300]}")
                exercise(project)
            many = proc_memory_mb(process.pid)
            loaded = sum(1 for p in range(1, 2 + extra_projects) if client.get(f"{url}/v2/models/project-{p}/ready").status_code == 200)
    finally:
        process.stop()
    per_project = (many["rss_mb"] - one["rss_mb"]) / extra_projects
    result = {"one_project": one, "projects": loaded, "many_projects": many, "mb_per_extra_project": round(per_project, 2)}
    log.info("predictor memory: %.1f MB with 1 project, %.1f MB with %d: %.2f MB per extra project", one["rss_mb"], many["rss_mb"], loaded, per_project)
    return result


def run(ours_model: Path, workdir: Path, *, quick: bool = False) -> dict:
    """Latency, webhook and memory figures; every process is stopped before returning."""
    data = dataset("basicmotions")
    label_config = data.meta["label_config"]
    files = workdir / "files"
    files.mkdir(parents=True, exist_ok=True)
    shutil.copy2(data.directory / "test_0.csv", files / "test_0.csv")
    big = synthetic_series()
    write_csv(files / "synthetic_100k.csv", big, list(data.config.channels))
    big_values = read_series((files / "synthetic_100k.csv").read_bytes(), data.config).values
    small_values = read_series((files / "test_0.csv").read_bytes(), data.config).values

    root = workdir / "models-serving"
    version = install_model(root, PROJECT, ours_model)
    results: dict = {"model_version": version, "task_rows": len(small_values)}
    predictor, predictor_url = start_predictor(root, workdir / "predictor.log")
    gateway = None
    try:
        wait_for(lambda: httpx.get(f"{predictor_url}/v2/models/project-{PROJECT}/ready", timeout=2).status_code == 200, 60, "project 1 ready")
        gateway, gateway_url = start_gateway(
            {
                "ORCHESTRATOR": "local", "PREDICTOR_URL": predictor_url, "MODEL_DIR": str(root), "LOCAL_FILES_ROOT": str(files),
                "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: trainings fail fast
            },
            workdir / "gateway.log",
        )
        results["gateway_started_rss"] = proc_memory_mb(gateway.pid)
        timeline = results["memory_timeline"] = []

        def snapshot(phase: str) -> None:
            timeline.append({"phase": phase, "gateway": proc_memory_mb(gateway.pid), "predictor": proc_memory_mb(predictor.pid)})

        snapshot("started")
        results["latency"] = asyncio.run(latency(
            predictor_url, gateway_url, label_config, small_values, requests=60 if quick else 300,
            pids={"gateway": gateway.pid, "predictor": predictor.pid}, on_phase=snapshot,
        ))
        results["latency"]["gateway_csv_parse"] = parse_cost(files / "test_0.csv", label_config)
        forwarder, forwarder_url = start_forwarder(predictor_url, workdir / "forwarder.log")
        try:
            results["latency"]["bare_forwarder"] = asyncio.run(
                forwarder_floor(predictor_url, forwarder_url, small_values, requests=60 if quick else 300, pid=forwarder.pid)
            )
        finally:
            forwarder.stop()
        results["big_task"] = big_task(predictor_url, gateway_url, label_config, big_values, repeats=2 if quick else 5)
        snapshot("after the 100k-row tasks")
        results["webhook"] = {"ignored": asyncio.run(webhook_burst(gateway_url, "ignored"))}
        results["webhook"]["training"] = asyncio.run(webhook_burst(gateway_url, "training"))
        results["webhook"]["training"]["trainings"] = settle_trainings(gateway_url, WEBHOOK_PROJECT)
        gateway.check()
        snapshot("after the webhook bursts")
        results["gateway_memory"] = proc_memory_mb(gateway.pid)
        results["predictor_memory_after_load"] = proc_memory_mb(predictor.pid)
        log.info("gateway memory: %s", results["gateway_memory"])
    finally:
        if gateway is not None:
            gateway.stop()
        predictor.stop()
    results["predictor_projects"] = predictor_memory(ours_model, workdir, small_values, extra_projects=10)
    return results
