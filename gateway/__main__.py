"""``python -m gateway``: serve the Label Studio ML-backend protocol.

In the embedded default (``ORCHESTRATOR=local``) this also starts the local KServe predictor
server and launches trainer processes on demand.
"""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tscore.logs import configure_logging
from tscore.memory import limit_malloc_arenas


def main() -> None:
    """Read settings, build the app, serve until stopped."""
    limit_malloc_arenas()
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
