"""The prediction service's pure parts: predictor segments → LS regions, and which project a request is for."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from fixtures import LABEL_CONFIG
from gateway.protocol import PredictRequest, PredictResponse, TaskPrediction
from gateway.services.predictions import empty_prediction, request_project, to_prediction, untrained_version
from tscore.errors import InvalidInput, SegmenterError
from tscore.labelconfig import parse_label_config
from tscore.series import read_series

CONFIG = parse_label_config(LABEL_CONFIG)


def outputs(rows: list[tuple[int, int, int, float]]) -> dict[str, np.ndarray]:
    starts, ends, labels, scores = zip(*rows) if rows else ((), (), (), ())
    return {
        "segment_start": np.array(starts, np.int64),
        "segment_end": np.array(ends, np.int64),
        "segment_label": np.array(labels, np.int64),
        "segment_score": np.array(scores, np.float32),
    }


PARAMETERS = {"model_version": "p7-v0003-20261124T210501Z", "labels": json.dumps(["Run", "Walk", "Fall"])}


def test_segments_become_regions_in_the_csvs_own_time_values():
    config = parse_label_config(LABEL_CONFIG.replace('timeColumn="time"', 'timeColumn="when"'))
    stamps = [f"2024-03-01 08:00:{s:02d}" for s in range(20)]
    series = read_series("when,a,b\n" + "".join(f"{s},0,0\n" for s in stamps), config)
    prediction = to_prediction(outputs([(2, 6, 1, 0.81234), (9, 9, 3, 0.6)]), PARAMETERS, series, config)
    assert prediction["model_version"] == "p7-v0003-20261124T210501Z"
    assert prediction["result"] == [
        {"from_name": "label", "to_name": "ts", "type": "timeserieslabels", "score": 0.8123,
         "value": {"start": stamps[2], "end": stamps[6], "instant": False, "timeserieslabels": ["Run"]}},
        {"from_name": "label", "to_name": "ts", "type": "timeserieslabels", "score": 0.6,
         "value": {"start": stamps[9], "end": stamps[9], "instant": True, "timeserieslabels": ["Fall"]}},
    ]
    assert prediction["score"] == pytest.approx((0.8123 + 0.6) / 2, abs=1e-4)


def test_numeric_times_stay_numbers():
    series = read_series("time,a,b\n" + "".join(f"{i * 0.5},0,0\n" for i in range(10)), CONFIG)
    value = to_prediction(outputs([(1, 4, 2, 0.9)]), PARAMETERS, series, CONFIG)["result"][0]["value"]
    assert (value["start"], value["end"]) == (0.5, 2.0)
    assert isinstance(value["start"], float)


def test_labels_the_config_no_longer_has_and_impossible_rows_are_dropped():
    config = parse_label_config(LABEL_CONFIG.replace('<Label value="Walk"/>', ""))
    series = read_series("time,a,b\n" + "".join(f"{i},0,0\n" for i in range(10)), config)
    prediction = to_prediction(outputs([(0, 1, 2, 0.9), (2, 3, 1, 0.8), (5, 20, 1, 0.9), (6, 5, 1, 0.9), (7, 7, 0, 0.9), (8, 8, 4, 0.9)]), PARAMETERS, series, config)
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"]) for r in prediction["result"]] == [(2, 3, ["Run"])]


def test_no_segments_is_an_empty_result():
    series = read_series("time,a,b\n0,0,0\n", CONFIG)
    prediction = to_prediction(outputs([]), PARAMETERS, series, CONFIG)
    assert prediction["result"] == [] and prediction["score"] == 0.0


@pytest.mark.parametrize(
    "csv",
    [
        "time,a,b\n" + "".join(f"{i * 0.1:.1f},0,0\n" for i in range(30)),  # float times
        "time,a,b\n" + "".join(f"{i * 1000},0,0\n" for i in range(30)),  # integer times
        "time,a,b\n" + "".join(f"{i * 1e16},0,0\n" for i in range(30)),  # floats JSON writes with an exponent
        "time,a,b\n" + "".join(f"2024-03-01T08:00:{i:02d}+01:00,0,0\n" for i in range(30)),  # date-times as the CSV spells them
        "a,b\n" + "0,0\n" * 30,  # row indices
    ],
)
def test_predictions_are_the_documented_schema_serialised_as_pydantic_would(csv):
    config = CONFIG if csv.startswith("time") else parse_label_config(LABEL_CONFIG.replace(' timeColumn="time"', ""))
    series = read_series(csv, config)
    prediction = to_prediction(outputs([(0, 4, 1, 0.812345), (6, 6, 3, 0.6), (7, 29, 2, 1.0)]), PARAMETERS, series, config)
    response = {"results": [prediction, empty_prediction("p7-untrained")]}
    # The dicts are exactly what the protocol models hold, and serialise to the same bytes.
    assert PredictResponse.model_validate(response).model_dump() == response
    assert orjson.dumps(response) == PredictResponse.model_validate(response).model_dump_json().encode()
    assert TaskPrediction.model_validate(empty_prediction("v")).model_dump() == empty_prediction("v")


def test_a_response_without_segment_outputs_is_a_502():
    series = read_series("time,a,b\n0,0,0\n", CONFIG)
    with pytest.raises(SegmenterError, match="lacks segment outputs") as raised:
        to_prediction({"probs": np.zeros((1, 4))}, PARAMETERS, series, CONFIG)
    assert raised.value.status_code == 502


@pytest.mark.parametrize(
    ("body", "project"),
    [
        ({"tasks": [], "project": "7.1795557232"}, 7),
        ({"tasks": [], "project": 7}, 7),
        ({"tasks": [], "project": {"id": 7}}, 7),
        ({"tasks": [{"id": 1, "project": 9}], "project": "7.1"}, 7),
        ({"tasks": [{"id": 1}, {"id": 2, "project": 9}]}, 9),
        ({"tasks": [{"id": 1, "project": "9"}], "project": ""}, 9),
        ({"tasks": [{"id": 1}]}, 0),
    ],
)
def test_the_project_of_a_request(body, project):
    assert request_project(PredictRequest.model_validate(body)) == project


def test_a_bad_project_in_a_request_is_refused():
    with pytest.raises(InvalidInput):
        request_project(PredictRequest.model_validate({"tasks": [], "project": "../../etc"}))


def test_untrained_version_names_the_project():
    assert untrained_version(12) == "p12-untrained"
