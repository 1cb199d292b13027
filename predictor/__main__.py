"""``python -m predictor``: start the KServe model server.

Repository mode (default, used by the embedded default): serve every project published under
``--model_dir``; projects are loaded and replaced through ``/v2/repository/models/<name>/load``.
Single-model mode (a KServe InferenceService): ``--model_name <isvc name> --model_dir /mnt/models``
where the directory is one model version (``meta.json`` + ``model.pt``).

KServe binds its HTTP server to all interfaces; put the server behind a NetworkPolicy.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from predictor.settings import PredictorSettings
from tscore.artifacts import META_FILE, ArtifactStore
from tscore.logs import configure_logging
from tscore.memory import limit_malloc_arenas
from tscore.network import pick_device

log = logging.getLogger("predictor")


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus ``--model_dir``."""
    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    parser.add_argument("--model_dir", type=Path, default=None, help="models root or one version directory")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse flags, load models, serve until stopped."""
    limit_malloc_arenas()
    settings = PredictorSettings()
    args, _ = build_parser().parse_known_args(argv)
    configure_logging(settings.log_level)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = pick_device(settings.device)
    model_dir = args.model_dir or settings.model_dir

    from kserve import ModelServer

    from predictor.dataplane import install as install_dataplane
    from predictor.model import SegmenterModel
    from predictor.repository import ProjectRepository

    server_options = {"http_port": args.http_port, "enable_grpc": args.enable_grpc, "workers": 1}
    if (model_dir / META_FILE).is_file():
        name = args.model_name if args.model_name and args.model_name != "model" else model_dir.name
        model = SegmenterModel(name, model_dir, device)
        model.load()
        server = ModelServer(**server_options)
        install_dataplane(server)
        server.start([model])
        return
    repository = ProjectRepository(ArtifactStore(model_dir), device)
    repository.load_models()
    log.info("serving %d project model(s) from %s on port %s", len(repository.get_models()), model_dir, args.http_port)
    server = ModelServer(registered_models=repository, **server_options)
    install_dataplane(server)
    server.start([])


if __name__ == "__main__":
    main()
