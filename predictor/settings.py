"""Predictor settings (environment variables; server flags come from KServe's own parser)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PredictorSettings(BaseSettings):
    """Configuration of one predictor server process."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", use_attribute_docstrings=True)

    model_dir: Path = Path("models")
    """Models root (repository mode) or one version directory (single-model mode, e.g. ``/mnt/models``)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run the network: CUDA when available under ``auto``."""

    num_threads: int = Field(1, ge=0)
    """CPU threads for torch (0 = torch's default). One thread per request keeps latency flat under load."""

    log_level: str = "INFO"
    """Python logging level."""
