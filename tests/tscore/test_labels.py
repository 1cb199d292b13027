"""Annotations → per-row classes: ranges, instants, ground-truth priority, foreign regions ignored."""

from __future__ import annotations

import numpy as np

from fixtures import LABEL_CONFIG, as_annotation
from tscore.labelconfig import parse_label_config
from tscore.labels import annotations_to_rows, select_annotations
from tscore.series import read_series

CONFIG = parse_label_config(LABEL_CONFIG)  # Run = 1, Walk = 2, Fall = 3
SERIES = read_series("time,a,b\n" + "".join(f"{i / 10:.1f},{i},0\n" for i in range(20)), CONFIG)


def rng(start, end, label):
    return {"start": start, "end": end, "instant": False, "timeserieslabels": [label]}


def instant(at, label):
    return {"start": at, "end": at, "instant": True, "timeserieslabels": [label]}


def test_ranges_and_instants_are_painted():
    target = annotations_to_rows([as_annotation([rng(0.2, 0.5, "Run"), instant(1.0, "Fall"), rng(1.2, 1.4, "Walk")])], SERIES, CONFIG)
    expected = np.zeros(20, dtype=np.int64)
    expected[2:6] = 1
    expected[10] = 3
    expected[12:15] = 2
    assert target.classes.tolist() == expected.tolist()
    assert target.ranges == {1: [(2, 5)], 2: [(12, 14)]}
    assert target.instants == {3: [10]}


def test_start_equal_end_is_an_instant_even_without_the_flag():
    target = annotations_to_rows([as_annotation([{"start": 0.7, "end": 0.7, "timeserieslabels": ["Fall"]}])], SERIES, CONFIG)
    assert target.instants == {3: [7]}
    assert target.ranges == {}


def test_ground_truth_takes_priority_wherever_it_comes_in_the_list():
    truth = as_annotation([rng(0.2, 0.5, "Walk")], ground_truth=True)
    regular = as_annotation([rng(0.2, 0.5, "Run"), rng(0.8, 0.9, "Run")])
    for order in ([truth, regular], [regular, truth]):
        target = annotations_to_rows(order, SERIES, CONFIG)
        assert target.classes[2:6].tolist() == [2] * 4
        # Rows the ground truth says nothing about keep the other annotation's labels.
        assert target.classes[8:10].tolist() == [1, 1]


def test_only_the_first_ground_truth_counts_and_cancelled_ones_are_dropped():
    first = as_annotation([rng(0.0, 0.1, "Run")], ground_truth=True)
    second = as_annotation([rng(0.0, 0.1, "Walk")], ground_truth=True)
    cancelled = {**as_annotation([rng(0.0, 0.1, "Fall")], ground_truth=True), "was_cancelled": True}
    regular = as_annotation([rng(1.0, 1.1, "Walk")])
    assert select_annotations([cancelled, second, regular, first]) == [regular, second]
    target = annotations_to_rows([cancelled, first, second], SERIES, CONFIG)
    assert target.classes[0:2].tolist() == [1, 1]

    only_cancelled = {**as_annotation([rng(0.0, 1.9, "Run")]), "was_cancelled": True}
    assert not annotations_to_rows([only_cancelled], SERIES, CONFIG).classes.any()


def test_regions_of_other_controls_or_unknown_labels_are_ignored():
    annotation = as_annotation([rng(0.2, 0.5, "Run")])
    annotation["result"].append({"from_name": "other", "to_name": "ts", "type": "timeserieslabels", "value": rng(1.0, 1.5, "Walk")})
    annotation["result"].append({"from_name": "label", "to_name": "ts", "type": "choices", "value": {"choices": ["Walk"], "start": 1.0}})
    annotation["result"].append({"from_name": "label", "to_name": "ts", "type": "timeserieslabels", "value": rng(1.6, 1.8, "Swim")})
    annotation["result"].append({"from_name": "label", "to_name": "ts", "type": "timeserieslabels", "value": {"timeserieslabels": ["Walk"]}})
    target = annotations_to_rows([annotation], SERIES, CONFIG)
    assert np.flatnonzero(target.classes).tolist() == [2, 3, 4, 5]


def test_a_region_with_several_labels_uses_the_first_known_one():
    region = {"start": 0.2, "end": 0.3, "instant": False, "timeserieslabels": ["Swim", "Walk", "Run"]}
    target = annotations_to_rows([as_annotation([region])], SERIES, CONFIG)
    assert target.classes[2:4].tolist() == [2, 2]


def test_datetime_regions_map_to_rows():
    config = parse_label_config(LABEL_CONFIG.replace('timeColumn="time"', 'timeColumn="when"'))
    stamps = [f"2024-03-01 08:00:{s:02d}" for s in range(12)]
    series = read_series("when,a,b\n" + "".join(f"{s},0,0\n" for s in stamps), config)
    target = annotations_to_rows(
        [as_annotation([rng(stamps[3], stamps[6], "Walk"), instant(stamps[9], "Fall")])], series, config
    )
    assert np.flatnonzero(target.classes == 2).tolist() == [3, 4, 5, 6]
    assert target.instants == {3: [9]}
