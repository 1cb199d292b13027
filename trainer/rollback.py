"""``python -m trainer.rollback --project N --version V``: serve an older version again.

Run it where the trainer runs (the models PVC at ``MODEL_DIR``, the trainer's environment):
it checks that the version is still on disk, marks it current and rolls it out with the
configured publisher (``PUBLISHER=kubernetes``: the project's InferenceService is pointed back
at it). On a failed rollout the previous ``CURRENT`` is restored. Exit codes: 0 done, 2 no such
version, 1 rollout failed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainer.publish import LocalPublisher, NoPublisher, Publisher
from trainer.settings import TrainingSettings
from tscore.artifacts import ArtifactStore
from tscore.errors import SegmenterError
from tscore.logs import configure_logging
from tscore.projects import parse_project_id

log = logging.getLogger("trainer.rollback")


def make_publisher(settings: TrainingSettings) -> Publisher:
    """The publisher selected by ``PUBLISHER`` (without importing torch, unlike a training run)."""
    if settings.publisher == "kubernetes":
        from trainer.kubernetes import KubernetesPublisher

        return KubernetesPublisher.from_settings(settings)
    if settings.publisher == "local":
        return LocalPublisher(settings.predictor_url)
    return NoPublisher()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m trainer.rollback", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="Label Studio project id")
    parser.add_argument("--version", required=True, help="version to serve, e.g. p47-v0002-20261124T210501Z")
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    configure_logging(settings.log_level)
    store = ArtifactStore(settings.model_dir)
    try:
        project = parse_project_id(args.project)
        if args.version not in store.versions(project):
            log.error("project %s has no version %s under %s; kept: %s", project, args.version, settings.model_dir, ", ".join(store.versions(project)) or "none")
            return 2
        previous = store.current(project)
        store.publish(project, args.version)
        try:
            make_publisher(settings).rollout(project, args.version)
        except Exception:
            if previous:
                store.publish(project, previous)
            raise
    except SegmenterError as exc:
        log.error("rollback failed: %s", exc.message)
        return 2 if exc.status_code == 400 else 1
    log.info("project %s: rolled back from %s to %s", project, previous, args.version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
