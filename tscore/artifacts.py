"""Versioned model artifacts on a file system (local disk or the models PVC).

Layout under the models root::

    project-47/
      p47-v0003-20261124T210501Z/   one directory per version, complete before it appears
        model.pt                    weights (torch state dict)
        meta.json                   labels, channels, settings, metrics, decoding, normalisation
      CURRENT                       {"version": "..."}: the published version (atomic replace)
      STATUS.json                   last training outcome, e.g. a candidate held back by the gate

Writers build a version in a hidden temporary directory and rename it into place, so a
reader never sees half a model. No torch here: weights are written by the trainer and
read by the predictor through the paths this module hands out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tscore.errors import ModelNotFound

WEIGHTS_FILE = "model.pt"
META_FILE = "meta.json"
CURRENT_FILE = "CURRENT"
STATUS_FILE = "STATUS.json"
_VERSION = re.compile(r"^p(\d+)-v(\d{4,})-(\d{8}T\d{6}Z)$")


def project_dirname(project: int) -> str:
    """Directory of one project under the models root."""
    return f"project-{project}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Reads and writes the versions of every project under one models root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def project_dir(self, project: int) -> Path:
        """Directory holding a project's versions."""
        return self.root / project_dirname(project)

    def version_dir(self, project: int, version: str) -> Path:
        """Directory of one version (it may not exist)."""
        if not _VERSION.match(version):
            raise ModelNotFound(f"{version!r} is not a model version name")
        return self.project_dir(project) / version

    def versions(self, project: int) -> list[str]:
        """Complete versions of a project, oldest first."""
        directory = self.project_dir(project)
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda name: int(_VERSION.match(name).group(2)))

    def projects(self) -> list[int]:
        """Projects that have a directory under the root."""
        if not self.root.is_dir():
            return []
        return sorted(
            int(p.name.removeprefix("project-"))
            for p in self.root.iterdir()
            if p.is_dir() and re.fullmatch(r"project-\d+", p.name)
        )

    def current(self, project: int) -> str | None:
        """The published version of a project, or ``None``."""
        try:
            data = json.loads((self.project_dir(project) / CURRENT_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        version = data.get("version")
        if isinstance(version, str) and (self.project_dir(project) / version).is_dir():
            return version
        return None

    def read_meta(self, project: int, version: str) -> dict[str, Any]:
        """Metadata of one version."""
        path = self.version_dir(project, version) / META_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelNotFound(f"project {project} has no version {version}") from exc

    def next_version(self, project: int, now: datetime | None = None) -> str:
        """A new version name that sorts after every existing one and names the project."""
        existing = self.versions(project)
        number = int(_VERSION.match(existing[-1]).group(2)) + 1 if existing else 1
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        return f"p{project}-v{number:04d}-{stamp}"

    def write_version(self, project: int, write: Callable[[Path], None], version: str | None = None) -> str:
        """Create a new version atomically; ``write(tmp_dir)`` fills it. Returns the version name."""
        directory = self.project_dir(project)
        directory.mkdir(parents=True, exist_ok=True)
        version = version or self.next_version(project)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=directory))
        try:
            write(tmp)
            for file in tmp.iterdir():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
            os.rename(tmp, directory / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def publish(self, project: int, version: str) -> None:
        """Make ``version`` the project's served version."""
        if not self.version_dir(project, version).is_dir():
            raise ModelNotFound(f"project {project} has no version {version}")
        write_json_atomic(self.project_dir(project) / CURRENT_FILE, {"version": version})

    def unpublish(self, project: int) -> None:
        """Withdraw the published version (after a first rollout that failed)."""
        (self.project_dir(project) / CURRENT_FILE).unlink(missing_ok=True)

    def write_status(self, project: int, status: dict[str, Any]) -> None:
        """Record the outcome of the last training (read by operators and status endpoints)."""
        write_json_atomic(self.project_dir(project) / STATUS_FILE, status)

    def read_status(self, project: int) -> dict[str, Any]:
        """The last recorded training outcome, or an empty dict."""
        try:
            return json.loads((self.project_dir(project) / STATUS_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def prune(self, project: int, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions (never the published one). Returns the deleted."""
        current = self.current(project)
        versions = self.versions(project)
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
        for version in doomed:
            shutil.rmtree(self.project_dir(project) / version, ignore_errors=True)
        for leftover in self.project_dir(project).glob(".incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return doomed


def utc_now_iso() -> str:
    """Current UTC time in ISO 8601 with a Z suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
