"""``python -m bench.forwarder``: the floor under the gateway's overhead, measured in the same run.

A bare pass-through proxy on the gateway's own stack (uvicorn with uvloop and httptools,
Starlette, an aiohttp client session): it relays each V2 ``infer`` request's bytes to the predictor
and the answer's bytes back. No CSV, no validation, no region mapping, no metrics: what it costs
over a direct call is the second HTTP hop in Python, which any gateway in front of a separate
predictor pays. Settings: ``PORT`` to listen on, ``FORWARD_TO`` the predictor's base URL.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.predictor_client import HEADER_LENGTH

#: Request and response headers a V2 binary call needs on the far side.
_RELAYED = ("content-type", HEADER_LENGTH)


def create_app(target: str) -> Starlette:
    """The proxy app relaying ``POST /v2/models/{name}/infer`` to ``target``."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # The client session belongs to the server's event loop, so it is made inside it.
        async with aiohttp.ClientSession() as session:
            app.state.session = session
            yield

    async def infer(request: Request) -> Response:
        headers = {k: v for k in _RELAYED if (v := request.headers.get(k)) is not None}
        async with request.app.state.session.post(f"{target}{request.url.path}", data=await request.body(), headers=headers) as answer:
            content = await answer.read()
            relayed = {k: v for k in _RELAYED if (v := answer.headers.get(k)) is not None}
            return Response(content, status_code=answer.status, headers=relayed)

    async def live(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]), Route("/live", live)], lifespan=lifespan)


def main() -> None:
    """Serve on 127.0.0.1:$PORT until stopped."""
    app = create_app(os.environ["FORWARD_TO"].rstrip("/"))
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_config=None, access_log=False)


if __name__ == "__main__":
    main()
