"""Decoding of V2 requests (predictor.dataplane)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from gateway.predictor_client import HEADER_LENGTH, encode_request
from predictor.dataplane import SegmenterDataPlane, decode_binary_request


def binary_body(values: np.ndarray, **header_changes) -> tuple[bytes, int]:
    body, headers = encode_request(values, probabilities=True)
    length = int(headers[HEADER_LENGTH])
    if header_changes:
        head = orjson.loads(body[:length])
        head["inputs"][0].update(header_changes)
        new_head = orjson.dumps(head)
        return new_head + body[length:], len(new_head)
    return body, length


def test_binary_tensors_decode_to_kserves_values_without_a_python_list() -> None:
    values = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    body, length = binary_body(values)

    ours = decode_binary_request(body, length, "p1")
    kserves = InferRequest.from_bytes(body, length, "p1")

    np.testing.assert_array_equal(ours.inputs[0].as_numpy(), kserves.inputs[0].as_numpy())
    np.testing.assert_array_equal(ours.inputs[0].as_numpy(), values)
    assert ours.inputs[0].data is None, "the tensor keeps its bytes"
    assert (ours.id, ours.parameters, ours.use_binary_outputs) == (kserves.id, kserves.parameters, kserves.use_binary_outputs)


def test_json_tensors_are_left_to_kserve() -> None:
    head = orjson.dumps({"inputs": [{"name": "series", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})

    assert decode_binary_request(head, len(head), "p1") is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [({"shape": [7, 6]}, "cannot reshape"), ({"parameters": {"binary_data_size": 10**6}}, "declares 1000000 bytes")],
)
def test_bytes_that_contradict_the_header_are_invalid_input(changes: dict, problem: str) -> None:
    body, length = binary_body(np.zeros((5, 6), dtype=np.float32), **changes)

    with pytest.raises(InvalidInput, match=problem):
        SegmenterDataPlane(model_registry=None).decode_inference_request(body, {HEADER_LENGTH: str(length)}, "p1")


def test_a_header_that_is_not_json_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="Unrecognized request format"):
        SegmenterDataPlane(model_registry=None).decode_inference_request(b"{not json" + b"\0" * 8, {HEADER_LENGTH: "9"}, "p1")
