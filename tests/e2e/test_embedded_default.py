"""End to end: a REAL Label Studio drives the embedded default (gateway + KServe predictor + trainer).

Label Studio 1.23.2 runs from its own venv with prediction validation on; the product runs as
`make run` starts it (`python -m gateway`, which spawns the local predictor server and trainer
processes). The basicmotions recordings are imported as tasks, annotated with their ground
truth, trained on through LS's "Start training", and the test recordings are predicted through
LS's "Retrieve predictions" action. The predictions LS stored are scored with the shared scorer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fixtures import DATA, REPO, SHARED, free_port, wait_until

pytestmark = pytest.mark.e2e

DATASET = DATA / "basicmotions"


def ground_truth_regions(recording: str) -> list[dict]:
    """The recording's ground truth as LS regions."""
    truth = json.loads((DATASET / f"{recording}.json").read_text())
    return [
        {
            "from_name": "label",
            "to_name": "ts",
            "type": "timeserieslabels",
            "value": {"start": s["start"], "end": s["end"], "instant": s["instant"], "timeserieslabels": [s["label"]]},
        }
        for s in truth["segments"]
    ]


@pytest.fixture()
def product(label_studio, tmp_path):
    """The embedded default as `make run` starts it, pointed at the real Label Studio."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "PREDICTOR_PORT": str(free_port()),
        "MODEL_DIR": str(tmp_path / "models"),
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.personal_access_token(),
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).json()["status"] == "UP"
        except (httpx.HTTPError, ValueError):
            return process.poll() is not None and pytest.fail(f"gateway exited:\n{log_path.read_text()[-3000:]}")

    wait_until(up, timeout=60, message="gateway /health")
    try:
        yield url, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_label_studio_trains_and_predicts_through_the_embedded_default(label_studio, product, tmp_path):
    url, log_path = product
    meta = json.loads((DATASET / "meta.json").read_text())
    project = label_studio.create_project("basicmotions e2e", meta["label_config"])

    for recording in meta["split"]["train"]:
        task = label_studio.import_csv_task(project, DATASET / f"{recording}.csv")
        assert label_studio.task(task)["data"]["csv_url"].startswith("/data/upload/")
        label_studio.annotate(task, ground_truth_regions(recording))

    backend = label_studio.connect_ml_backend(project, url)
    setup = httpx.post(f"{url}/setup", json={"project": f"{project}.1795556495", "schema": meta["label_config"]}).json()
    untrained = setup["model_version"]

    label_studio.train(backend)

    def new_version():
        version = httpx.post(f"{url}/setup", json={"project": f"{project}.1795556495"}).json()["model_version"]
        status = httpx.get(f"{url}/status/{project}").json()
        if status["last_result"] in ("failed", "refused"):
            pytest.fail(f"training failed: {status}\n{log_path.read_text()[-4000:]}")
        return version if version != untrained else None

    version = wait_until(new_version, timeout=600, interval=1, message="a trained model version")
    assert version.startswith(f"p{project}-v")

    test_tasks = {label_studio.import_csv_task(project, DATASET / f"{r}.csv"): r for r in meta["split"]["test"]}
    label_studio.retrieve_predictions(project, list(test_tasks))

    predictions_dir = tmp_path / "predictions"
    predictions_dir.mkdir()
    for task, recording in test_tasks.items():
        stored = wait_until(lambda task=task: label_studio.predictions(task), timeout=120, message=f"prediction of task {task}")
        assert len(stored) == 1
        prediction = stored[0]
        assert prediction["model_version"] == version
        assert prediction["result"], f"no regions predicted for {recording}"
        for region in prediction["result"]:
            value = region["value"]
            assert region["from_name"] == "label" and region["to_name"] == "ts" and region["type"] == "timeserieslabels"
            assert value["timeserieslabels"][0] in meta["labels"]
            assert value["instant"] == (value["start"] == value["end"])
        (predictions_dir / f"{recording}.json").write_text(json.dumps({"result": prediction["result"]}))

    ours = score(predictions_dir, tmp_path / "ours.json")
    majority = score(majority_baseline(meta, tmp_path / "majority"), tmp_path / "majority.json")
    assert ours["timestep"]["macro_f1"] > majority["timestep"]["macro_f1"]
    assert ours["events"]["micro_f1"] > majority["events"]["micro_f1"]
    assert ours["events"]["micro_f1"] >= 0.5, ours["events"]


def majority_baseline(meta: dict, directory: Path) -> Path:
    """Predictions of the majority baseline: the most frequent training label over every row."""
    directory.mkdir()
    counts: dict[str, float] = {}
    for recording in meta["split"]["train"]:
        truth = json.loads((DATASET / f"{recording}.json").read_text())
        covered = 0.0
        for segment in truth["segments"]:
            span = segment["end"] - segment["start"]
            counts[segment["label"]] = counts.get(segment["label"], 0) + span
            covered += span
        counts["__background__"] = counts.get("__background__", 0) + truth["n_rows"] / meta["sampling_hz"] - covered
    label = max(counts, key=counts.get)
    for recording in meta["split"]["test"]:
        truth = json.loads((DATASET / f"{recording}.json").read_text())
        end = (truth["n_rows"] - 1) / meta["sampling_hz"]
        segments = [] if label == "__background__" else [{"start": 0.0, "end": end, "label": label, "instant": False}]
        (directory / f"{recording}.json").write_text(json.dumps(segments))
    return directory


def score(predictions: Path, out: Path) -> dict:
    """Run the shared scorer on a predictions folder; return its JSON result."""
    subprocess.run(
        [sys.executable, str(SHARED / "tools" / "score_segments.py"), "--data", str(DATASET), "--pred", str(predictions), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.read_text())
