"""Rolling out a new version: the seam's trainer side (local predictor server or KServe)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

import httpx

from tscore.errors import SegmenterError
from tscore.projects import model_name

log = logging.getLogger(__name__)


class PublishError(SegmenterError):
    """The new version could not be rolled out; the previous one keeps serving."""

    status_code = 502


class Publisher(Protocol):
    """Makes a version that is already on disk (and marked published) serve."""

    def rollout(self, project: int, version: str) -> None:
        """Roll ``version`` out; raise :class:`PublishError` when it cannot serve."""


class NoPublisher:
    """Writes artifacts only (``PUBLISHER=none``), e.g. for offline training."""

    def rollout(self, project: int, version: str) -> None:
        log.info("project %s: version %s written; PUBLISHER=none, nothing rolled out", project, version)


class LocalPublisher:
    """Asks the local KServe server to (re)load the project from the models root."""

    def __init__(self, predictor_url: str, timeout: float = 60.0, connect_wait: float = 30.0) -> None:
        self.predictor_url = predictor_url.rstrip("/")
        self.timeout = timeout
        self.connect_wait = connect_wait

    def rollout(self, project: int, version: str) -> None:
        url = f"{self.predictor_url}/v2/repository/models/{model_name(project)}/load"
        deadline = time.monotonic() + self.connect_wait
        while True:
            try:
                response = httpx.post(url, timeout=self.timeout)
                break
            except httpx.ConnectError as exc:
                # The local server may still be starting (or restarting after a crash).
                if time.monotonic() > deadline:
                    raise PublishError(f"predictor at {self.predictor_url} unreachable: {exc}") from exc
                time.sleep(0.5)
            except httpx.HTTPError as exc:
                raise PublishError(f"predictor at {self.predictor_url} failed: {exc}") from exc
        if response.status_code != 200:
            raise PublishError(f"predictor refused to load {version}: {response.status_code} {response.text[:300]}")
        log.info("project %s: predictor now serves %s", project, version)
