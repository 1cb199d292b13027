"""The embedded default: a local KServe server and trainer subprocesses, models on local disk."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.metrics import GatewayMetrics
from gateway.orchestrator.base import Orchestrator, PredictorEndpoint, ProjectTraining
from gateway.settings import GatewaySettings
from tscore.artifacts import ArtifactStore, write_json_atomic
from tscore.projects import model_name

log = logging.getLogger(__name__)

RESULT_PREFIX = "TS_SEGMENTER_RESULT "
REQUEST_FILE = "TRAINING_REQUESTED"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalOrchestrator(Orchestrator):
    """Runs one KServe predictor server for all projects and one trainer process per training.

    Training requests are also written to ``<project>/TRAINING_REQUESTED`` under the models
    root, so a request that arrives just before a gateway restart is not lost.
    """

    name = "local"

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, *, python: str = sys.executable) -> None:
        self.settings = settings
        self.metrics = metrics
        self.python = python
        self.store = ArtifactStore(settings.model_dir)
        self.predictor_url = settings.predictor_url or f"http://127.0.0.1:{settings.predictor_port}"
        self._projects: dict[int, ProjectTraining] = {}
        self._runners: dict[int, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_trainings)
        self._predictor: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.settings.model_dir.mkdir(parents=True, exist_ok=True)
        for project in self.store.projects():
            self._refresh_served(project)
            if (self.store.project_dir(project) / REQUEST_FILE).exists():
                self.request_training(project, "request recorded before restart")
        if self.settings.predictor_url is None:
            self._supervisor = asyncio.create_task(self._supervise_predictor())

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._runners.values(), *filter(None, [self._supervisor])]:
            task.cancel()
        await asyncio.gather(*self._runners.values(), *filter(None, [self._supervisor]), return_exceptions=True)
        await self._terminate(self._predictor)

    async def _supervise_predictor(self) -> None:
        """Keep the local predictor server running; restart it (with back-off) if it dies."""
        backoff = 1.0
        while not self._stopping:
            command = [
                self.python, "-m", "predictor", "--model_dir", str(self.settings.model_dir),
                "--http_port", str(self.settings.predictor_port), "--enable_grpc", "false",
            ]
            started = time.monotonic()
            self._predictor = await asyncio.create_subprocess_exec(*command, env=self._child_env(), stdout=None, stderr=None)
            log.info("local predictor server started (pid %s) on %s", self._predictor.pid, self.predictor_url)
            code = await self._predictor.wait()
            if self._stopping:
                return
            self.metrics.orchestrator_errors.labels("predictor_exit").inc()
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            log.error("local predictor server exited with %s; restarting in %.0f s", code, backoff)
            await asyncio.sleep(backoff)  # restart back-off

    @staticmethod
    async def _terminate(process: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MODEL_DIR=str(Path(self.settings.model_dir).resolve()),
            PREDICTOR_URL=self.predictor_url,
            PUBLISHER="local",
            LABEL_STUDIO_URL=self.settings.label_studio_url,
            LABEL_STUDIO_API_KEY=self.settings.label_studio_api_key,
        )
        return env

    # -- the seam ----------------------------------------------------------------------------
    def request_training(self, project: int, reason: str) -> None:
        status = self._status(project)
        write_json_atomic(self.store.project_dir(project) / REQUEST_FILE, {"requested_at": _now(), "requested_ts": time.time(), "reason": reason})
        runner = self._runners.get(project)
        if runner is not None and not runner.done():
            status.follow_up_pending = True
            self.metrics.training_pending.labels(str(project)).set(1)
            log.info("project %s: training running; follow-up queued (%s)", project, reason)
            return
        status.state = "queued"
        self._runners[project] = asyncio.create_task(self._train_until_settled(project))
        log.info("project %s: training requested (%s)", project, reason)

    def served_version(self, project: int) -> str | None:
        status = self._projects.get(project)
        return status.served_version if status else None

    def predictor_endpoint(self, project: int) -> PredictorEndpoint | None:
        if self.served_version(project) is None:
            return None
        return PredictorEndpoint(self.predictor_url, model_name(project))

    def project_status(self, project: int) -> ProjectTraining:
        return self._status(project)

    def projects(self) -> list[int]:
        return sorted(self._projects)

    # -- internals ---------------------------------------------------------------------------
    def _status(self, project: int) -> ProjectTraining:
        if project not in self._projects:
            self._projects[project] = ProjectTraining(project=project)
        return self._projects[project]

    def _refresh_served(self, project: int) -> None:
        status = self._status(project)
        new = self.store.current(project)
        self.metrics.set_served(project, status.served_version, new)
        status.served_version = new

    async def _train_until_settled(self, project: int) -> None:
        """Run trainings until no follow-up is pending (events during a run cause exactly one more)."""
        status = self._status(project)
        while True:
            status.follow_up_pending = False
            self.metrics.training_pending.labels(str(project)).set(0)
            request_file = self.store.project_dir(project) / REQUEST_FILE
            async with self._slots:
                request_file.unlink(missing_ok=True)
                try:
                    await self._train_once(project, status)
                except asyncio.CancelledError:
                    # Stopped mid-training: keep the request so the next start trains again.
                    write_json_atomic(request_file, {"requested_at": _now(), "reason": "training interrupted by a stop"})
                    raise
            if not status.follow_up_pending or self._stopping:
                status.state = "idle"
                return

    def _forget_request(self, project: int, started: float) -> None:
        """Drop the on-disk request once a training that began after it has finished.

        A request written while that training ran stays, so a restart still honours it.
        """
        path = self.store.project_dir(project) / REQUEST_FILE
        try:
            requested = json.loads(path.read_text()).get("requested_ts", 0)
        except (FileNotFoundError, ValueError):
            return
        if requested <= started:
            path.unlink(missing_ok=True)

    async def _train_once(self, project: int, status: ProjectTraining) -> None:
        status.state = "running"
        status.trainings_started += 1
        status.last_started_at = _now()
        self.metrics.trainings_started.labels(str(project)).inc()
        self.metrics.training_active.labels(str(project)).set(1)
        started = time.monotonic()
        result: dict = {}
        process = None
        try:
            spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
                self.python, "-m", "trainer", "--project", str(project),
                env=self._child_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            ))
            try:
                process = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                # Cancelled mid-spawn: the child may exist already and must not outlive us.
                process = await spawn
                raise
            async for line in process.stdout:
                text = line.decode(errors="replace").rstrip()
                if text.startswith(RESULT_PREFIX):
                    try:
                        result = json.loads(text[len(RESULT_PREFIX):])
                    except ValueError:
                        result = {"status": "error", "error": "unreadable trainer result"}
                else:
                    log.info("[trainer project %s] %s", project, text)
            code = await process.wait()
        except asyncio.CancelledError:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            raise
        except OSError as exc:
            code, result = -1, {"status": "error", "error": f"cannot start trainer: {exc}"}
        duration = time.monotonic() - started
        outcome = result.get("status") or ("failed" if code else "published")
        if code == 2:
            outcome = "refused"
        elif code != 0 or outcome == "error":
            outcome = "failed"
        status.last_result = outcome
        status.last_error = result.get("error") if outcome in ("failed", "refused") else None
        if outcome in ("failed", "refused") and not status.last_error:
            status.last_error = f"trainer exited with code {code}"
        status.last_reason = result.get("reason")
        status.last_finished_at = _now()
        status.last_duration_s = round(duration, 3)
        status.details = {k: result[k] for k in ("version", "validation_score", "served_score", "timings", "skipped_tasks") if k in result}
        self.metrics.training_active.labels(str(project)).set(0)
        self.metrics.trainings.labels(str(project), outcome).inc()
        self.metrics.training_seconds.observe(duration)
        self._refresh_served(project)
        log.log(
            logging.WARNING if outcome in ("failed", "refused", "candidate") else logging.INFO,
            "project %s: training %s in %.1f s%s", project, outcome, duration,
            f": {status.last_error or status.last_reason}" if (status.last_error or status.last_reason) else "",
        )
