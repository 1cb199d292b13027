"""Project identity: parsing Label Studio's project references and naming per-project things."""

from __future__ import annotations

import re
from typing import Any

from tscore.errors import InvalidInput

_PROJECT_STRING = re.compile(r"^\s*(\d{1,10})(?:\.\d+)?\s*$")
_MAX_PROJECT_ID = 2**31 - 1


def parse_project_id(value: Any) -> int:
    """Project id from what LS sends: ``47``, ``"47"``, ``"47.1795556495"`` or ``{"id": 47, ...}``.

    Raises:
        InvalidInput: for anything else (so a project id can never smuggle a path or a name).
    """
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        raise InvalidInput(f"invalid project id {value!r}")
    if isinstance(value, int):
        project = value
    elif isinstance(value, str) and (match := _PROJECT_STRING.match(value)):
        project = int(match.group(1))
    else:
        raise InvalidInput(f"invalid project id {value!r}: expected a number or '<id>.<timestamp>'")
    if not 0 <= project <= _MAX_PROJECT_ID:
        raise InvalidInput(f"invalid project id {value!r}: out of range")
    return project


def model_name(project: int, prefix: str = "project-") -> str:
    """Name of a project's model on a predictor server (and of its InferenceService)."""
    return f"{prefix}{project}"
