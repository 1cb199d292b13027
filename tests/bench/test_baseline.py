"""The benchmark's baseline behaves like the seed (label-studio-ml-backend's timeseries_segmenter).

The expected values are worked out by hand from the seed's ``neural_nets.py`` / ``model.py``.
Where the network's output must be known exactly, a stub network stands in for the LSTM: its
logits depend on each row's first channel only (a real trained network has no fixed output to
compare against); everything around it (windows, averaging, argmax, grouping) is the real code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench.baseline import BACKGROUND, SeedSegmenter, SeedSettings, class_weights, make_windows, seed_metrics, window_starts

LABELS = ["Run", "Walk"]
TINY = SeedSettings(sequence_size=10, hidden_size=8, fc_size=8, train_epochs=200)


class RowClassStub(nn.Module):
    """Logits ``10 * one_hot(round(x[..., 0]))``: each row's class is written in its first channel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * nn.functional.one_hot(x[..., 0].round().long(), self.num_classes).float()


def stub_segmenter(sequence_size: int = 4) -> SeedSegmenter:
    segmenter = SeedSegmenter(["a", "b"], LABELS, SeedSettings(sequence_size=sequence_size))
    segmenter.net = RowClassStub(len(LABELS) + 1)
    return segmenter


def test_windows_step_half_a_window_and_the_last_is_aligned_to_the_end():
    assert window_starts(120, 50) == [0, 25, 50, 70]
    assert window_starts(100, 50) == [0, 25, 50]
    values = torch.arange(120, dtype=torch.float32)[:, None]
    chunks, labels = make_windows(values, torch.arange(120), 50)
    assert chunks.shape == (4, 50, 1)
    assert chunks[-1, -1, 0] == 119 and labels[-1, 0] == 70


def test_training_windows_cross_task_boundaries_as_the_seed_stacks_tasks():
    segmenter = SeedSegmenter(["a"], LABELS, SeedSettings(sequence_size=50))
    first = (np.zeros((40, 1), np.float32), np.full(40, 1))
    second = (np.ones((40, 1), np.float32), np.full(40, 2))
    windows, labels = segmenter.training_windows([first, second])
    assert windows.shape == (3, 50, 1)  # starts 0, 25, 30 over the stacked 80 rows
    assert set(labels[0].tolist()) == {1, 2}


def test_class_weights_are_inverse_frequencies_over_the_windowed_labels():
    labels = torch.tensor([[0, 0, 0, 1], [0, 1, 1, -1]])
    weights = class_weights(labels, 4)
    # 7 valid rows, 2 present classes: 7 / (2 * 4) for class 0 and 7 / (2 * 3) for class 1; absent classes weigh 0.
    assert weights.tolist() == pytest.approx([7 / 8, 7 / 6, 0.0, 0.0])


def test_metrics_follow_torchmetrics_macro_and_ignore_zero_f1_in_the_minimum():
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 0, 0])
    metrics = seed_metrics(predicted, truth, 4)  # class 3 never occurs: left out of the macro averages
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert metrics["f1_score"] == pytest.approx((0.4 + 0.8 + 0) / 3)
    assert metrics["precision"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert metrics["per_class_f1"] == pytest.approx([0.4, 0.8, 0.0, 0.0])
    assert metrics["min_class_f1"] == pytest.approx(0.4)  # class 2's F1 of 0 is skipped, as in the seed


def test_overlap_averaging_returns_each_rows_own_prediction():
    segmenter = stub_segmenter(sequence_size=4)
    classes = np.array([0, 1, 1, 2, 2, 0, 1, 0, 0, 2, 1])
    probs = segmenter.predict_probs(np.column_stack([classes, np.zeros(len(classes))]).astype(np.float32))
    assert probs.shape == (11, 3)
    assert probs.argmax(dim=1).tolist() == classes.tolist()
    assert probs.sum(dim=1).numpy() == pytest.approx(np.ones(11), abs=1e-5)


def test_a_series_shorter_than_a_window_is_reflect_padded_and_cropped_like_the_seed():
    segmenter = stub_segmenter(sequence_size=4)
    classes = np.array([0, 1, 2])
    probs = segmenter.predict_probs(np.column_stack([classes, np.zeros(3)]).astype(np.float32))
    # The seed pads one reflected row in front but crops from offset 0: its rows come out shifted by one.
    assert probs.argmax(dim=1).tolist() == [2, 0, 1]


def test_prediction_groups_rows_into_runs_drops_background_and_marks_single_rows_instant():
    segmenter = stub_segmenter(sequence_size=4)
    classes = [0, 0, 1, 1, 1, 0, 2, 0, 1, 1]
    frame = pd.DataFrame({"time": np.round(np.arange(10) * 0.1, 1), "a": classes, "b": 0.0})
    regions = segmenter.predict_frame(frame, "time")
    values = [(r["value"]["start"], r["value"]["end"], r["value"]["instant"], r["value"]["timeserieslabels"]) for r in regions]
    assert values == [(0.2, 0.4, False, ["Run"]), (0.6, 0.6, True, ["Walk"]), (0.8, 0.9, False, ["Run"])]
    top = math.exp(10) / (math.exp(10) + 2)
    assert all(r["score"] == pytest.approx(top, rel=1e-5) for r in regions)
    assert BACKGROUND not in {label for *_, labels in values for label in labels}


def test_predict_csv_parses_the_csv_and_creates_a_time_index_when_there_is_no_time_column():
    segmenter = stub_segmenter(sequence_size=4)
    regions = segmenter.predict_csv("a,b\n0,0\n2,0\n2,0\n0,0\n0,0\n", None)
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"]) for r in regions] == [(1, 2, ["Walk"])]


def separable_tasks() -> list[tuple[np.ndarray, np.ndarray]]:
    tasks = []
    rng = np.random.default_rng(0)
    for offset in (0, 1):
        classes = np.zeros(60, dtype=np.int64)
        classes[10 + offset * 5 : 30 + offset * 5] = 1
        classes[40:55] = 2
        values = np.stack([classes == 1, classes == 2], axis=1).astype(np.float32) * 3 + rng.normal(0, 0.1, (60, 2)).astype(np.float32)
        tasks.append((values, classes))
    return tasks


def test_training_stops_once_the_thresholds_are_met_on_the_training_windows():
    torch.set_num_threads(1)
    segmenter = SeedSegmenter(["a", "b"], LABELS, TINY)
    result = segmenter.fit(separable_tasks(), seed=3)
    assert result.stop_reason == "thresholds met on the training windows"
    assert result.epochs < TINY.train_epochs
    last = result.history[-1]
    assert last["balanced_accuracy"] >= TINY.balanced_accuracy_threshold and last["min_class_f1"] >= TINY.min_class_f1_threshold
    assert all(not (h["balanced_accuracy"] >= 0.85 and h["min_class_f1"] >= 0.70) for h in result.history[:-1])


def test_training_is_seeded_and_runs_to_the_epoch_limit_when_thresholds_are_out_of_reach():
    torch.set_num_threads(1)
    settings = SeedSettings(sequence_size=10, hidden_size=8, fc_size=8, train_epochs=3, balanced_accuracy_threshold=1.01)
    first, second = SeedSegmenter(["a", "b"], LABELS, settings), SeedSegmenter(["a", "b"], LABELS, settings)
    a, b = first.fit(separable_tasks(), seed=5), second.fit(separable_tasks(), seed=5)
    assert a.epochs == b.epochs == 3 and a.stop_reason == "epoch limit (TRAIN_EPOCHS)"
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    restored = SeedSegmenter.from_state(first.state())
    sample = separable_tasks()[0][0]
    assert torch.equal(restored.predict_probs(sample), first.predict_probs(sample))
