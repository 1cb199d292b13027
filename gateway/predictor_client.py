"""A small Open Inference Protocol (V2) client with the binary tensor extension.

Long series travel as raw little-endian FP32 bytes behind a JSON header; JSON floats would
be several times larger and slower to encode and parse.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from tscore.errors import InvalidInput, ModelNotReady, SegmenterError

log = logging.getLogger(__name__)

HEADER_LENGTH = "inference-header-content-length"
_DTYPES = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64, "INT32": np.int32}


class PredictorError(SegmenterError):
    """The predictor failed in a way retrying will not fix."""

    status_code = 502


@dataclass
class InferResult:
    """Decoded outputs of one inference call."""

    outputs: dict[str, np.ndarray]
    parameters: dict


def encode_request(values: np.ndarray, *, probabilities: bool = False) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a binary V2 request for one ``[T, C]`` series."""
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    header = {
        "id": uuid.uuid4().hex,
        "inputs": [{"name": "series", "shape": list(values.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True, **({"probabilities": True} if probabilities else {})},
    }
    head = orjson.dumps(header)
    return head + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def decode_response(body: bytes, headers: Mapping[str, str]) -> InferResult:
    """Parse a V2 response in JSON or binary form."""
    length = headers.get(HEADER_LENGTH)
    head_bytes, rest = (body[: int(length)], body[int(length) :]) if length else (body, b"")
    try:
        head = orjson.loads(head_bytes)
    except ValueError as exc:
        raise PredictorError(f"predictor answered a body that is not V2 JSON: {exc}") from exc
    outputs, offset = {}, 0
    for output in head.get("outputs", []):
        dtype = _DTYPES.get(output.get("datatype"))
        if dtype is None:
            raise PredictorError(f"predictor output {output.get('name')!r} has unsupported type {output.get('datatype')}")
        shape = output.get("shape", [])
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(rest, dtype=np.dtype(dtype).newbyteorder("<"), count=int(size) // np.dtype(dtype).itemsize, offset=offset)
            offset += int(size)
        else:
            array = np.asarray(output.get("data", []), dtype=dtype)
        outputs[output["name"]] = array.reshape(shape)
    return InferResult(outputs=outputs, parameters=head.get("parameters") or {})


class PredictorClient:
    """Calls ``POST <base>/v2/models/<name>/infer``, retrying while the model is not ready.

    Uses aiohttp: per call it costs a fraction of httpx's overhead, which matters on a path whose
    budget over a direct predictor call is a couple of milliseconds.
    """

    def __init__(self, *, timeout: float = 60.0, retry_seconds: float = 30.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=5.0)
        self.retry_seconds = retry_seconds
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def infer(self, base_url: str, model: str, values: np.ndarray, *, probabilities: bool = False) -> InferResult:
        """Run one series through a model.

        Raises:
            ModelNotReady: still 503/unreachable after ``retry_seconds``.
            InvalidInput: the predictor rejected the input (4xx).
            PredictorError: any other failure.
        """
        body, headers = encode_request(values, probabilities=probabilities)
        url = f"{base_url.rstrip('/')}/v2/models/{model}/infer"
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                async with self._client().post(url, data=body, headers=headers) as response:
                    status, content, response_headers = response.status, await response.read(), response.headers
            except aiohttp.ClientConnectionError as exc:
                problem = f"predictor unreachable: {exc.__class__.__name__}"
            except TimeoutError as exc:
                raise PredictorError(f"predictor timed out on {model}") from exc
            else:
                if status == 200:
                    return decode_response(content, response_headers)
                detail = _error_text(content)
                if status in (404, 503):
                    problem = f"model {model} not ready ({status}: {detail})"
                elif 400 <= status < 500:
                    raise InvalidInput(f"predictor rejected the series: {detail}")
                else:
                    raise PredictorError(f"predictor failed ({status}): {detail}")
            if time.monotonic() + delay > deadline:
                raise ModelNotReady(problem)
            log.info("%s; retrying in %.1f s", problem, delay)
            await asyncio.sleep(delay)  # back-off between retries, not synchronisation
            delay = min(delay * 2, 5.0)


def _error_text(content: bytes) -> str:
    try:
        return str(orjson.loads(content).get("error", content[:500].decode(errors="replace")))[:500]
    except (ValueError, AttributeError):
        return content[:500].decode(errors="replace")
