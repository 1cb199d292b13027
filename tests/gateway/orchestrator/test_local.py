"""LocalOrchestrator's training supervision: one training per project, coalesced follow-ups, restarts.

The orchestrator launches ``<python> -m trainer --project N``; here ``python`` is a stand-in
script that behaves like the trainer's command line (a ``TS_SEGMENTER_RESULT`` line, exit codes
0/1/2, a new version published under MODEL_DIR) but waits for the test to release each run.
A stand-in is used because the real trainer needs a Label Studio to fetch tasks from and runs
for seconds, which would make the timing of "an event arrives while a training runs"
uncontrollable; the end-to-end test drives the real trainer through a real Label Studio.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fixtures import async_wait_until, free_port
from gateway.metrics import GatewayMetrics
from gateway.orchestrator.local import REQUEST_FILE, LocalOrchestrator
from gateway.settings import GatewaySettings
from tscore.artifacts import ArtifactStore

STAND_IN = r'''#!{python}
"""Stand-in for `python -m trainer --project N` (see the test module's docstring)."""
import json, os, sys, time
from pathlib import Path

control = Path({control!r})
project = sys.argv[sys.argv.index("--project") + 1]
assert sys.argv[1:3] == ["-m", "trainer"], sys.argv
running = control / f"running-{{project}}"
try:
    running.touch(exist_ok=False)
except FileExistsError:
    (control / f"overlap-{{project}}").touch()
with open(control / f"started-{{project}}", "a") as log:
    log.write(str(os.getpid()) + "\n")
run = len((control / f"started-{{project}}").read_text().splitlines())
release = control / f"release-{{project}}-{{run}}"
while not release.exists():
    time.sleep(0.01)  # the stand-in polls for the test's release file
verdict = release.read_text().strip()
running.unlink()
if verdict == "fail":
    print("TS_SEGMENTER_RESULT " + json.dumps({{"status": "error", "error": "stand-in failure"}}), flush=True)
    sys.exit(1)
if verdict == "refuse":
    print("TS_SEGMENTER_RESULT " + json.dumps({{"status": "error", "error": "no usable labelled tasks"}}), flush=True)
    sys.exit(2)
models = Path(os.environ["MODEL_DIR"]) / f"project-{{project}}"
version = f"p{{project}}-v{{run:04d}}-20260101T00000{{run % 10}}Z"
(models / version).mkdir(parents=True)
(models / "CURRENT").write_text(json.dumps({{"version": version}}))
print("training...", flush=True)
print("TS_SEGMENTER_RESULT " + json.dumps({{"status": "published", "version": version, "reason": "stand-in", "validation_score": 0.9}}), flush=True)
'''


class StandIn:
    """Controls the stand-in trainer runs through files in a control directory."""

    def __init__(self, directory: Path) -> None:
        self.control = directory / "control"
        self.control.mkdir()
        self.script = directory / "stand-in-trainer"
        self.script.write_text(STAND_IN.format(python=sys.executable, control=str(self.control)))
        self.script.chmod(0o755)

    def started(self, project: int) -> int:
        path = self.control / f"started-{project}"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def release(self, project: int, run: int, verdict: str = "ok") -> None:
        (self.control / f"release-{project}-{run}").write_text(verdict)

    def overlapped(self, project: int) -> bool:
        return (self.control / f"overlap-{project}").exists()


@pytest.fixture
def stand_in(tmp_path) -> StandIn:
    return StandIn(tmp_path)


def make(tmp_path: Path, stand_in: StandIn, **overrides) -> LocalOrchestrator:
    # A predictor URL is given, so the orchestrator starts no predictor server of its own.
    options = dict(model_dir=tmp_path / "models", predictor_url=f"http://127.0.0.1:{free_port()}", _env_file=None)
    settings = GatewaySettings(**{**options, **overrides})
    return LocalOrchestrator(settings, GatewayMetrics(), python=str(stand_in.script))


@pytest.fixture
async def orchestrators():
    made: list[LocalOrchestrator] = []
    yield made
    for orchestrator in made:
        await orchestrator.stop()


async def test_events_during_a_training_cause_exactly_one_follow_up(tmp_path, stand_in, orchestrators):
    orchestrator = make(tmp_path, stand_in)
    orchestrators.append(orchestrator)
    await orchestrator.start()
    assert orchestrator.served_version(7) is None and orchestrator.predictor_endpoint(7) is None

    orchestrator.request_training(7, "START_TRAINING")
    await async_wait_until(lambda: stand_in.started(7) == 1, message="the first training")
    assert orchestrator.project_status(7).state == "running"
    for n in range(5):
        orchestrator.request_training(7, f"ANNOTATION_CREATED {n}")
    status = orchestrator.project_status(7)
    assert status.follow_up_pending
    assert stand_in.started(7) == 1

    stand_in.release(7, 1)
    await async_wait_until(lambda: stand_in.started(7) == 2, message="the follow-up training")
    assert orchestrator.served_version(7) == "p7-v0001-20260101T000001Z"
    assert not orchestrator.project_status(7).follow_up_pending
    stand_in.release(7, 2)
    await async_wait_until(lambda: orchestrator.project_status(7).state == "idle", message="project 7 to settle")

    status = orchestrator.project_status(7)
    assert stand_in.started(7) == 2
    assert status.trainings_started == 2
    assert not stand_in.overlapped(7)
    assert status.last_result == "published" and status.last_error is None
    assert status.details["version"] == "p7-v0002-20260101T000002Z"
    assert orchestrator.served_version(7) == "p7-v0002-20260101T000002Z"
    endpoint = orchestrator.predictor_endpoint(7)
    assert endpoint.model_name == "project-7" and endpoint.base_url == orchestrator.predictor_url
    assert not (tmp_path / "models" / "project-7" / REQUEST_FILE).exists()
    assert orchestrator.projects() == [7]


async def test_a_request_after_a_finished_training_starts_a_new_one(tmp_path, stand_in, orchestrators):
    orchestrator = make(tmp_path, stand_in)
    orchestrators.append(orchestrator)
    await orchestrator.start()
    orchestrator.request_training(3, "first")
    stand_in.release(3, 1)
    await async_wait_until(lambda: orchestrator.project_status(3).trainings_started == 1 and orchestrator.project_status(3).state == "idle")
    orchestrator.request_training(3, "second")
    stand_in.release(3, 2)
    await async_wait_until(lambda: orchestrator.project_status(3).trainings_started == 2 and orchestrator.project_status(3).state == "idle")
    assert stand_in.started(3) == 2


async def test_projects_train_independently(tmp_path, stand_in, orchestrators):
    orchestrator = make(tmp_path, stand_in, max_concurrent_trainings=2)
    orchestrators.append(orchestrator)
    await orchestrator.start()
    orchestrator.request_training(7, "a")
    orchestrator.request_training(8, "b")
    await async_wait_until(lambda: stand_in.started(7) == 1 and stand_in.started(8) == 1, message="both projects training at once")
    stand_in.release(8, 1, "fail")
    await async_wait_until(lambda: orchestrator.project_status(8).state == "idle")
    assert orchestrator.project_status(7).state == "running"
    assert orchestrator.project_status(8).last_result == "failed"
    assert orchestrator.project_status(8).last_error == "stand-in failure"
    stand_in.release(7, 1)
    await async_wait_until(lambda: orchestrator.project_status(7).state == "idle")
    assert orchestrator.served_version(7) == "p7-v0001-20260101T000001Z"
    assert orchestrator.served_version(8) is None


async def test_with_one_slot_other_projects_wait_their_turn(tmp_path, stand_in, orchestrators):
    orchestrator = make(tmp_path, stand_in)  # MAX_CONCURRENT_TRAININGS defaults to 1
    orchestrators.append(orchestrator)
    await orchestrator.start()
    orchestrator.request_training(7, "a")
    await async_wait_until(lambda: stand_in.started(7) == 1)
    orchestrator.request_training(8, "b")
    assert orchestrator.project_status(8).state == "queued"
    stand_in.release(7, 1)
    await async_wait_until(lambda: stand_in.started(8) == 1, message="project 8 after project 7")
    stand_in.release(8, 1, "refuse")
    await async_wait_until(lambda: orchestrator.project_status(8).state == "idle")
    assert orchestrator.project_status(8).last_result == "refused"
    assert orchestrator.project_status(8).last_error == "no usable labelled tasks"


async def test_a_request_recorded_before_a_restart_is_launched_on_start(tmp_path, stand_in, orchestrators):
    first = make(tmp_path, stand_in)
    orchestrators.append(first)
    await first.start()
    first.request_training(7, "running when the gateway stops")
    await async_wait_until(lambda: stand_in.started(7) == 1)
    first.request_training(8, "queued when the gateway stops")
    assert (tmp_path / "models" / "project-8" / REQUEST_FILE).exists()
    await first.stop()
    assert first.project_status(7).last_result is None  # interrupted, not finished
    assert (tmp_path / "models" / "project-7" / REQUEST_FILE).exists()

    second = make(tmp_path, stand_in)
    orchestrators.append(second)
    await second.start()
    # Both the queued request and the interrupted training are run again.
    await async_wait_until(lambda: stand_in.started(8) == 1 or stand_in.started(7) == 2, message="the recorded requests")
    stand_in.release(7, 2)
    stand_in.release(8, 1)
    await async_wait_until(lambda: stand_in.started(7) == 2 and stand_in.started(8) == 1, message="both recorded requests")
    await async_wait_until(lambda: second.project_status(7).state == second.project_status(8).state == "idle")
    assert second.served_version(8) == "p8-v0001-20260101T000001Z"


async def test_served_versions_are_read_from_disk_on_start(tmp_path, stand_in, orchestrators):
    store = ArtifactStore(tmp_path / "models")
    version = store.write_version(4, lambda directory: (directory / "meta.json").write_text("{}"))
    store.publish(4, version)
    orchestrator = make(tmp_path, stand_in)
    orchestrators.append(orchestrator)
    await orchestrator.start()
    assert orchestrator.served_version(4) == version
    assert orchestrator.projects() == [4]
    assert orchestrator.project_status(4).state == "idle"
    assert stand_in.started(4) == 0
