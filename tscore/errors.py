"""Errors that carry the HTTP status a server should answer with."""

from __future__ import annotations


class SegmenterError(Exception):
    """Base class of every expected failure; ``status_code`` is its HTTP status."""

    status_code: int = 500

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class InvalidInput(SegmenterError):
    """A request, label config or payload that cannot be processed as sent."""

    status_code = 400


class InvalidLabelConfig(InvalidInput):
    """A label config without the tags a time-series segmenter needs."""

    status_code = 422


class InvalidSeries(InvalidInput):
    """A task CSV that cannot be turned into a series (missing channel, non-numeric values, ...)."""

    status_code = 422


class DataFetchError(SegmenterError):
    """A task's data could not be downloaded (unreachable, too large, refused)."""

    status_code = 424


class ModelNotFound(SegmenterError):
    """No trained model exists (yet) for a project."""

    status_code = 404


class ModelNotReady(SegmenterError):
    """A model exists but cannot serve right now; retry later."""

    status_code = 503
