"""Settings every ts-segmenter process shares (Label Studio connection, data limits, models root).

Each process has exactly one settings object: the gateway's, the predictor's and the trainer's
classes extend :class:`CommonSettings`. Values come from environment variables (no prefix, as
in the seed: ``LABEL_STUDIO_URL``, ``MODEL_DIR``, ...) or a ``.env`` file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings shared by the gateway and the trainer."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", use_attribute_docstrings=True, populate_by_name=True
    )

    label_studio_url: str = Field(
        "http://localhost:8080", validation_alias=AliasChoices("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")
    )
    """Base URL of Label Studio (``LABEL_STUDIO_URL``, or the seed's ``LABEL_STUDIO_HOST``)."""

    label_studio_api_key: str = ""
    """Label Studio API key: a legacy token or a personal access token (JWT)."""

    model_dir: Path = Path("models")
    """Root of the versioned model artifacts (a local directory, or the models PVC)."""

    local_files_root: Path | None = None
    """Directory from which task CSVs given as plain local paths may be read; unset forbids them."""

    max_csv_bytes: int = Field(200 * 1024 * 1024, gt=0)
    """Largest task CSV downloaded, in bytes."""

    max_series_rows: int = Field(2_000_000, gt=0)
    """Largest task CSV accepted, in rows."""

    download_timeout: float = Field(30.0, gt=0)
    """Seconds allowed for one CSV download (connect and read)."""

    log_level: str = "INFO"
    """Python logging level."""

    @field_validator("label_studio_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")
