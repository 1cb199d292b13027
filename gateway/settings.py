"""Gateway settings (environment variables, no prefix, as in the seed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tscore.settings import CommonSettings


class GatewaySettings(CommonSettings):
    """Configuration of the gateway process."""

    host: str = "0.0.0.0"
    """Interface the gateway listens on."""

    port: int = Field(9090, ge=1, le=65535)
    """Port the gateway listens on (Label Studio's default ML backend URL is http://localhost:9090)."""

    basic_auth_user: str | None = None
    """When set together with BASIC_AUTH_PASS, every protocol endpoint requires HTTP basic auth."""

    basic_auth_pass: str | None = None
    """Password for BASIC_AUTH_USER."""

    start_training_each_n_updates: int = Field(1, ge=1)
    """Train after every N-th annotation event of a project (seed: START_TRAINING_EACH_N_UPDATES)."""

    orchestrator: Literal["local", "kubernetes"] = "local"
    """Where predictors and trainings run: local processes (embedded default) or Kubernetes."""

    predictor_port: int = Field(9091, ge=1, le=65535)
    """Port of the local KServe predictor server the gateway starts (local mode)."""

    predictor_url: str | None = None
    """Use an already running predictor server at this URL instead of starting one (local mode)."""

    max_concurrent_trainings: int = Field(1, ge=1)
    """Trainings that may run at once across projects (local mode; one per project always)."""

    predict_concurrency: int = Field(8, ge=1)
    """Tasks of one /predict request processed concurrently."""

    predictor_timeout: float = Field(60.0, gt=0)
    """Seconds allowed for one inference call."""

    predictor_retry_seconds: float = Field(30.0, ge=0)
    """How long /predict keeps retrying a predictor that is not ready (cold start, scale from zero)."""

    job_template_path: str = "/etc/ts-segmenter/templates/job.yaml"
    """Training Job manifest rendered by the Helm chart (kubernetes mode)."""

    kubernetes_namespace: str = "default"
    """Namespace of Jobs and InferenceServices (kubernetes mode)."""

    isvc_name_prefix: str = "ts-segmenter-p"
    """InferenceService name prefix; project 47 is served by ``<prefix>-47`` (kubernetes mode)."""

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The configured credentials, or None when basic auth is off."""
        if self.basic_auth_user and self.basic_auth_pass:
            return self.basic_auth_user, self.basic_auth_pass
        return None
