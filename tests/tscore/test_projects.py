"""Project ids as Label Studio sends them, and refusal of anything that could name a path."""

from __future__ import annotations

import pytest

from tscore.errors import InvalidInput
from tscore.projects import model_name, parse_project_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (47, 47),
        ("47", 47),
        ("47.1795556495", 47),  # /setup and /predict: "<id>.<created_at>"
        (" 7 ", 7),
        ({"id": 47, "label_config": "<View/>"}, 47),  # webhook project objects
        ({"id": "12"}, 12),
        (0, 0),
        (2**31 - 1, 2**31 - 1),
    ],
)
def test_accepts_every_form_label_studio_sends(value, expected):
    assert parse_project_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "../../etc",
        "7/../8",
        "../7",
        "7.1795556495/..",
        "project-7",
        "7a",
        "1e3",
        "",
        "   ",
        None,
        True,
        False,
        -1,
        2**31,
        4.7,
        {"name": "no id"},
        {"id": "../x"},
        [7],
        "7.abc",
    ],
)
def test_refuses_anything_else(value):
    with pytest.raises(InvalidInput) as raised:
        parse_project_id(value)
    assert raised.value.status_code == 400
    assert "project id" in raised.value.message


def test_model_name_names_the_project():
    assert model_name(47) == "project-47"
    assert model_name(47, prefix="ts-segmenter-p-") == "ts-segmenter-p-47"
