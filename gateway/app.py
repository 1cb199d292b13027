"""The gateway's FastAPI application: one explicit route table over plain services."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from contextlib import asynccontextmanager

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.metrics import GatewayMetrics
from gateway.orchestrator.base import Orchestrator
from gateway.predictor_client import PredictorClient
from gateway.protocol import PredictRequest, SetupRequest, SetupResponse, StatusResponse, WebhookEvent
from gateway.services.predictions import PredictionService
from gateway.services.training import TrainingService
from gateway.settings import GatewaySettings
from tscore.errors import SegmenterError
from tscore.fetch import TaskDataFetcher
from tscore.projects import parse_project_id

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/", "/health", "/metrics"})


def build_orchestrator(settings: GatewaySettings, metrics: GatewayMetrics) -> Orchestrator:
    """The orchestrator selected by ``ORCHESTRATOR``."""
    if settings.orchestrator == "kubernetes":
        from gateway.orchestrator.kubernetes import KubernetesOrchestrator

        return KubernetesOrchestrator.from_settings(settings, metrics)
    from gateway.orchestrator.local import LocalOrchestrator

    return LocalOrchestrator(settings, metrics)


class _MetricsMiddleware:
    """Counts and times every request by route (pure ASGI: no per-request task overhead)."""

    def __init__(self, app, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children per (route, status): looking them up by label values on every request costs more than the counting.
        self._children: dict[tuple[str, int], tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            key = (path, status["code"])
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (self.metrics.requests.labels(path, str(key[1])), self.metrics.latency.labels(path))
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def create_app(settings: GatewaySettings | None = None, orchestrator: Orchestrator | None = None, metrics: GatewayMetrics | None = None) -> FastAPI:
    """Build the gateway app; the orchestrator starts and stops with the app's lifespan."""
    settings = settings or GatewaySettings()
    metrics = metrics or GatewayMetrics()
    orchestrator = orchestrator or build_orchestrator(settings, metrics)
    predictor = PredictorClient(timeout=settings.predictor_timeout, retry_seconds=settings.predictor_retry_seconds)
    fetcher = TaskDataFetcher.from_settings(settings)
    predictions = PredictionService(
        orchestrator, fetcher, predictor, metrics,
        concurrency=settings.predict_concurrency, max_rows=settings.max_series_rows,
    )
    training = TrainingService(orchestrator, metrics, settings.start_training_each_n_updates)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await orchestrator.start()
        try:
            yield
        finally:
            await orchestrator.stop()
            await fetcher.aclose()
            await predictor.aclose()

    app = FastAPI(title="ts-segmenter gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.orchestrator, app.state.metrics = settings, orchestrator, metrics

    async def require_auth(request: Request) -> None:
        credentials = settings.basic_auth
        if credentials is None or request.url.path in OPEN_PATHS:
            return
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if not (secrets.compare_digest(user, credentials[0]) and secrets.compare_digest(password, credentials[1])):
            raise SegmenterError("authentication required", status_code=401)

    guarded = [Depends(require_auth)] if settings.basic_auth else []

    async def health() -> StatusResponse:
        return StatusResponse(orchestrator=orchestrator.name)

    async def setup(body: SetupRequest) -> SetupResponse:
        project = parse_project_id(body.project) if body.project not in (None, "") else 0
        return SetupResponse(model_version=predictions.model_version(project))

    async def predict(body: PredictRequest) -> Response:
        # Plain dicts in PredictResponse's shape, valid by construction: serialised as they are.
        return Response(orjson.dumps(await predictions.predict(body)), media_type="application/json")

    async def webhook(body: WebhookEvent) -> JSONResponse:
        if not training.handles(body.action):
            metrics.webhook_events.labels(body.action[:64], "ignored").inc()
            return JSONResponse({"status": "ignored", "action": body.action}, status_code=200)
        training.on_event(body)
        return JSONResponse({"status": "ok"}, status_code=201)

    async def status() -> dict:
        return {"orchestrator": orchestrator.name, "projects": [orchestrator.project_status(p).to_json() for p in orchestrator.projects()]}

    async def project_status(project: str) -> dict:
        return orchestrator.project_status(parse_project_id(project)).to_json()

    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/", health, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
    app.add_api_route("/setup", setup, methods=["POST"], dependencies=guarded)
    app.add_api_route("/predict", predict, methods=["POST"], dependencies=guarded)
    app.add_api_route("/webhook", webhook, methods=["POST"], dependencies=guarded)
    app.add_api_route("/status", status, methods=["GET"], dependencies=guarded)
    app.add_api_route("/status/{project}", project_status, methods=["GET"], dependencies=guarded)

    @app.exception_handler(SegmenterError)
    async def segmenter_error(request: Request, exc: SegmenterError) -> JSONResponse:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status_code, exc.message)
        headers = {"Retry-After": "5"} if exc.status_code == 503 else {"WWW-Authenticate": "Basic"} if exc.status_code == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {error.get('msg')}")
        status_code = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        message = "; ".join(problems[:10])
        log.warning("%s %s -> %s: %s", request.method, request.url.path, status_code, message)
        return JSONResponse({"error": message}, status_code=status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {exc.__class__.__name__}"}, status_code=500)

    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app
