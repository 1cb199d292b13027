"""Probabilities → segments: learnt decoding, fragment removal, instant peaks, the seed's argmax runs."""

from __future__ import annotations

import numpy as np
import pytest

from tscore.labels import RowLabels
from tscore.segments import Decoding, Segment, argmax_runs, decode, moving_average, runs


def one_hot(labels: list[int], num_classes: int, confidence: float = 0.9) -> np.ndarray:
    """Probabilities whose argmax is ``labels``; the rest of the mass is spread evenly."""
    probs = np.full((len(labels), num_classes), (1 - confidence) / (num_classes - 1), dtype=np.float32)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def test_learn_from_ranges_and_instants():
    targets = [
        RowLabels(np.zeros(100, np.int64), instants={2: [5, 25]}, ranges={1: [(10, 19), (40, 59)]}),
        RowLabels(np.zeros(100, np.int64), instants={2: [70, 82]}, ranges={1: [(0, 29)]}),
    ]
    decoding = Decoding.learn(targets, num_classes=3)
    assert decoding.instant_classes == [2]
    assert decoding.min_rows == {1: 5}  # half the shortest range (10 rows)
    assert decoding.smooth_rows == 2  # two fifths of min_rows
    assert decoding.min_gap_rows == {2: 6}  # half the closest pair (12 rows)


def test_a_class_seen_as_ranges_too_is_not_an_instant_class():
    targets = [RowLabels(np.zeros(50, np.int64), instants={1: [3, 30]}, ranges={1: [(10, 14)]})]
    decoding = Decoding.learn(targets, num_classes=2)
    assert decoding.instant_classes == []
    assert decoding.min_rows == {1: 2}
    assert decoding.min_gap_rows == {}


def test_decoding_round_trips_through_json():
    decoding = Decoding(instant_classes=[3], min_rows={1: 4, 2: 7}, min_gap_rows={3: 9}, smooth_rows=2)
    import json

    assert Decoding.from_json(json.loads(json.dumps(decoding.to_json()))) == decoding


def test_decode_absorbs_short_fragments():
    labels = [0] * 10 + [1] * 9 + [0] * 2 + [1] * 9 + [0] * 20 + [1] * 2 + [0] * 8
    probs = one_hot(labels, 2)
    # Background gaps shorter than half the shortest class minimum (3 rows here) are closed too.
    decoding = Decoding(min_rows={1: 6}, smooth_rows=1)
    assert [(s.start, s.end, s.label) for s in decode(probs, decoding)] == [(10, 29, 1)]
    # With a smaller minimum the 2-row gap is a real separation and stays.
    assert [(s.start, s.end) for s in decode(probs, Decoding(min_rows={1: 3}))] == [(10, 18), (21, 29)]
    # The seed's decoding keeps every fragment.
    assert [(s.start, s.end) for s in argmax_runs(probs)] == [(10, 18), (21, 29), (50, 51)]


def test_decode_turns_instant_classes_into_peaks():
    labels = [0] * 40 + [2] * 5 + [0] * 15
    probs = one_hot(labels, 3, confidence=0.6)
    probs[42] = [0.05, 0.05, 0.9]
    decoding = Decoding(instant_classes=[2], min_gap_rows={2: 3})
    segments = decode(probs, decoding)
    assert segments == [Segment(42, 42, 2, pytest.approx(0.9))]
    assert segments[0].instant


def test_close_instant_peaks_keep_the_strongest():
    labels = [0] * 10 + [1] + [0] + [1] + [0] * 20 + [1] + [0] * 5
    probs = one_hot(labels, 2, confidence=0.7)
    probs[12] = [0.1, 0.9]
    decoding = Decoding(instant_classes=[1], min_gap_rows={1: 5})
    assert [(s.start, s.end) for s in decode(probs, decoding)] == [(12, 12), (33, 33)]


def test_ranges_and_instants_together_sorted_by_start_background_never_returned():
    labels = [0] * 5 + [1] * 10 + [0] * 5 + [2] + [0] * 10 + [1] * 10 + [0] * 3
    probs = one_hot(labels, 3)
    segments = decode(probs, Decoding(instant_classes=[2], min_rows={1: 3}, min_gap_rows={2: 2}))
    assert [(s.start, s.end, s.label) for s in segments] == [(5, 14, 1), (20, 20, 2), (31, 40, 1)]
    assert all(s.label != 0 for s in segments)
    assert all(0 < s.score <= 1 for s in segments)


def test_decode_of_nothing():
    assert decode(np.zeros((0, 3), np.float32), Decoding()) == []
    assert decode(one_hot([0] * 20, 3), Decoding(min_rows={1: 2})) == []


def test_argmax_runs_scores_are_mean_probability():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]], dtype=np.float32)
    assert argmax_runs(probs) == [Segment(1, 2, 1, pytest.approx(0.7))]


def test_moving_average():
    impulse = np.zeros((7, 1), np.float32)
    impulse[3] = 3.0
    assert moving_average(impulse, 3)[:, 0].tolist() == pytest.approx([0, 0, 1, 1, 1, 0, 0])
    constant = np.full((6, 2), 0.5, np.float32)
    assert np.allclose(moving_average(constant, 4), 0.5)  # edges average the rows available
    assert moving_average(impulse, 1) is impulse


def test_runs():
    starts, ends, values = runs(np.array([0, 0, 1, 1, 1, 0, 2]))
    assert starts.tolist() == [0, 2, 5, 6]
    assert ends.tolist() == [1, 4, 5, 6]
    assert values.tolist() == [0, 1, 0, 2]
    assert all(len(part) == 0 for part in runs(np.array([], dtype=np.int64)))
