"""Time from START_TRAINING to the new version being served, through a real Label Studio.

A real Label Studio (the test harness ``tests/support/labelstudio.py``) gets a project with
basicmotions' label config and its 4 train CSVs imported and annotated with their ground
truth. The real gateway runs as ``make run`` starts it (local mode: it spawns its predictor
server and the trainer processes). The benchmark posts START_TRAINING to ``/webhook`` and
polls ``/setup`` until ``model_version`` changes: that interval covers the trainer process
start, the task download from Label Studio, the fit, writing the version, the predictor
loading it and the gateway noticing. A ``/predict`` then confirms the new version answers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import httpx

from bench.common import free_port, proc_memory_mb, wait_for
from bench.data import REPO, dataset
from bench.serving import start_gateway

log = logging.getLogger("bench")


def ground_truth_regions(task: dict) -> list[dict]:
    """The annotation regions of an LS task from ``ls_tasks.json``."""
    return [dict(region) for region in task["annotations"][0]["result"]]


def run(workdir: Path, *, timeout: float = 300.0) -> dict:
    """Create the LS project, start the gateway, train once, measure."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.labelstudio import LabelStudio

    data = dataset("basicmotions")
    label_config = data.meta["label_config"]
    result: dict = {}
    started = time.perf_counter()
    with LabelStudio() as ls:
        result["label_studio_start_seconds"] = round(time.perf_counter() - started, 1)
        project = ls.create_project("ts-segmenter bench basicmotions", label_config)
        for name in data.meta["split"]["train"]:
            task = ls.import_csv_task(project, data.directory / f"{name}.csv")
            ls.annotate(task, ground_truth_regions(data.tasks[name]))
        predictor_port = free_port()
        gateway, url = start_gateway(
            {
                "ORCHESTRATOR": "local", "PREDICTOR_PORT": str(predictor_port), "MODEL_DIR": str(workdir / "models"),
                "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.api_key,
            },
            workdir / "gateway-rollout.log",
        )
        try:
            # The gateway's own predictor must be up, or the trainer's rollout would fail.
            wait_for(lambda: _live(f"http://127.0.0.1:{predictor_port}"), 120, "the gateway's predictor server", interval=0.2)
            ls.connect_ml_backend(project, url)
            setup = {"project": f"{project}.1795556495", "schema": label_config}
            untrained = httpx.post(f"{url}/setup", json=setup, timeout=10).json()["model_version"]

            requested = time.perf_counter()
            response = httpx.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": project}}, timeout=10)
            if response.status_code >= 300:
                raise RuntimeError(f"/webhook START_TRAINING answered {response.status_code}: {response.text[:300]}")

            def new_version() -> str | None:
                gateway.check()
                version = httpx.post(f"{url}/setup", json=setup, timeout=10).json()["model_version"]
                if version != untrained:
                    return version
                status = httpx.get(f"{url}/status/{project}", timeout=10).json()
                if status["last_result"] in ("failed", "refused"):
                    raise RuntimeError(f"training {status['last_result']}: {status['last_error']}")
                return None

            version = wait_for(new_version, timeout, "a served model version", interval=0.1)
            served_after = time.perf_counter() - requested
            status = httpx.get(f"{url}/status/{project}", timeout=10).json()
            task = {"id": 1, "data": {"csv_url": ls.task(ls.task_ids(project)[0])["data"]["csv_url"]}}
            prediction = httpx.post(f"{url}/predict", json={"tasks": [task], "project": project, "label_config": label_config}, timeout=60).json()
            answered_by = prediction["results"][0]["model_version"]
            result.update(
                project=project,
                start_training_to_served_seconds=round(served_after, 2),
                version=version,
                predict_answered_by=answered_by,
                trainer_process_seconds=status.get("last_duration_s"),
                trainer_timings=(status.get("details") or {}).get("timings"),
                trainer_result=status.get("last_result"),
                gateway_memory=proc_memory_mb(gateway.pid),
            )
            if answered_by != version:
                raise RuntimeError(f"/setup reports {version} but /predict was answered by {answered_by}")
        finally:
            gateway.stop()
    log.info("START_TRAINING → served: %.2f s (%s)", result["start_training_to_served_seconds"], json.dumps(result.get("trainer_timings")))
    return result


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
