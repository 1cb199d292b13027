"""Many projects in one server: KServe's model repository over the artifact store."""

from __future__ import annotations

import logging
import re

import torch
from kserve import ModelRepository

from predictor.model import SegmenterModel
from tscore.artifacts import ArtifactStore
from tscore.errors import ModelNotFound

log = logging.getLogger(__name__)

_NAME = re.compile(r"^project-(\d{1,10})$")


class ProjectRepository(ModelRepository):
    """Serves the published version of every project under a models root.

    ``POST /v2/repository/models/project-<id>/load`` loads (or replaces in place) the
    project's published version; the old model keeps answering until the new one is ready.
    """

    def __init__(self, store: ArtifactStore, device: torch.device) -> None:
        super().__init__(str(store.root))
        self.store = store
        self.device = device

    def load_models(self) -> None:
        """Load every project that has a published version (at start-up)."""
        for project in self.store.projects():
            if self.store.current(project):
                try:
                    self.load(f"project-{project}")
                except Exception:  # noqa: BLE001 - one broken project must not keep the others down
                    log.exception("project %s: published model failed to load", project)

    def load(self, name: str) -> bool:
        """Load the published version of the project called ``name`` (``project-<id>``)."""
        match = _NAME.match(name)
        if not match:
            raise ModelNotFound(f"{name!r} is not a project model name (project-<id>)")
        project = int(match.group(1))
        version = self.store.current(project)
        if version is None:
            raise ModelNotFound(f"project {project} has no published model")
        existing = self.get_model(name)
        if isinstance(existing, SegmenterModel) and existing.version == version and existing.ready:
            return True
        model = SegmenterModel(name, self.store.version_dir(project, version), self.device)
        model.load()
        self.update(model)
        return True
