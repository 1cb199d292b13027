"""A small Open Inference Protocol (V2) client with the binary tensor extension.

Long series travel as raw little-endian FP32 bytes behind a JSON header; JSON floats would
be several times larger and slower to encode and parse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass

import httpx
import numpy as np

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
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def decode_response(body: bytes, headers: httpx.Headers) -> InferResult:
    """Parse a V2 response in JSON or binary form."""
    length = headers.get(HEADER_LENGTH)
    head_bytes, rest = (body[: int(length)], body[int(length) :]) if length else (body, b"")
    try:
        head = json.loads(head_bytes)
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
    """Calls ``POST <base>/v2/models/<name>/infer``, retrying while the model is not ready."""

    def __init__(self, client: httpx.AsyncClient, *, retry_seconds: float = 30.0) -> None:
        self._client = client
        self.retry_seconds = retry_seconds

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
                response = await self._client.post(url, content=body, headers=headers)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                problem = f"predictor unreachable: {exc.__class__.__name__}"
            except httpx.TimeoutException as exc:
                raise PredictorError(f"predictor timed out on {model}") from exc
            else:
                if response.status_code == 200:
                    return decode_response(response.content, response.headers)
                detail = _error_text(response)
                if response.status_code in (404, 503):
                    problem = f"model {model} not ready ({response.status_code}: {detail})"
                elif 400 <= response.status_code < 500:
                    raise InvalidInput(f"predictor rejected the series: {detail}")
                else:
                    raise PredictorError(f"predictor failed ({response.status_code}): {detail}")
            if time.monotonic() + delay > deadline:
                raise ModelNotReady(problem)
            log.info("%s; retrying in %.1f s", problem, delay)
            await asyncio.sleep(delay)  # back-off between retries, not synchronisation
            delay = min(delay * 2, 5.0)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:500]
    except ValueError:
        return response.text[:500]
