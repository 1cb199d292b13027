"""Fitting the segmenter: it learns, honours the seed's settings, and never mixes tasks in a window."""

from __future__ import annotations

import numpy as np
import pytest

import trainer.fit as fit_module
from fixtures import LABEL_CONFIG, as_annotation, synthetic_csv
from trainer.fit import LabelledSeries, fit
from trainer.settings import TrainingSettings
from tscore.errors import InvalidInput
from tscore.labelconfig import parse_label_config
from tscore.labels import RowLabels, annotations_to_rows
from tscore.model import TrainedModel
from tscore.series import read_series

CONFIG = parse_label_config(LABEL_CONFIG)
LABELS, CHANNELS = list(CONFIG.labels), list(CONFIG.channels)


def samples(count: int, rows: int = 400) -> list[LabelledSeries]:
    made = []
    for seed in range(count):
        text, regions = synthetic_csv(rows=rows, seed=seed)
        series = read_series(text, CONFIG)
        made.append(LabelledSeries(series.values, annotations_to_rows([as_annotation(regions)], series, CONFIG), f"task {seed}"))
    return made


def settings(**overrides) -> TrainingSettings:
    base = dict(train_epochs=60, sequence_size=40, hidden_size=16, publisher="none", _env_file=None)
    return TrainingSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def learnt():
    """One well-trained model (five tasks: whole tasks are held out for validation)."""
    return fit(samples(5), LABELS, CHANNELS, settings())


def test_learns_the_synthetic_segments(learnt):
    assert learnt.metrics["macro_f1"] >= 0.9
    assert learnt.metrics["balanced_accuracy"] >= 0.9
    assert set(learnt.metrics["class_f1"]) >= {"background", "Run", "Fall"}
    assert 1 <= learnt.epochs <= 60
    assert len(learnt.history) == learnt.epochs
    # The model keeps the best epoch, not the last one.
    assert learnt.metrics["macro_f1"] == max(h["macro_f1"] for h in learnt.history)


def test_learnt_model_segments_an_unseen_series(learnt):
    text, regions = synthetic_csv(rows=400, seed=99)
    series = read_series(text, CONFIG)
    segments, probs = learnt.model.segments(series.values)
    assert probs.shape == (400, 4)
    runs = [s for s in segments if LABELS[s.label - 1] == "Run"]
    truth = [r for r in regions if r["timeserieslabels"] == ["Run"]]
    assert len(runs) == len(truth)
    falls = [s for s in segments if LABELS[s.label - 1] == "Fall"]
    assert falls and all(s.instant for s in falls)


def test_sequence_size_hidden_size_and_normalisation_are_stored(learnt, tmp_path):
    model = learnt.model
    assert model.window == 40
    assert model.meta["settings"]["sequence_size"] == 40
    assert model.net.spec.hidden_size == 16
    assert model.net.lstm.hidden_size == 16
    assert model.net.lstm.weight_hh_l0.shape == (4 * 16, 16)
    model.save(tmp_path)
    loaded = TrainedModel.load(tmp_path)
    assert loaded.window == 40
    assert loaded.net.spec == model.net.spec
    np.testing.assert_array_equal(loaded.mean, model.mean)
    np.testing.assert_array_equal(loaded.std, model.std)
    assert loaded.decoding == model.decoding
    values = samples(1)[0].values
    np.testing.assert_allclose(loaded.probabilities(values), model.probabilities(values), atol=1e-6)


def test_normalisation_comes_from_the_training_part():
    data = samples(3)
    result = fit(data, LABELS, CHANNELS, settings(train_epochs=1))
    # With fewer than five tasks the last 20 % of each task is held out.
    train = np.concatenate([s.values[: int(len(s.values) * 0.8)] for s in data])
    np.testing.assert_allclose(result.model.mean, train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(result.model.std, train.std(axis=0), rtol=1e-5)
    assert [len(p.classes) for p in result.validation] == [80, 80, 80]


def test_train_epochs_and_class_weights_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRAIN_EPOCHS", "3")
    monkeypatch.setenv("USE_CLASS_WEIGHTS", "false")
    monkeypatch.setenv("SEQUENCE_SIZE", "24")
    monkeypatch.setenv("HIDDEN_SIZE", "5")
    configured = TrainingSettings(_env_file=None)
    result = fit(samples(2, rows=200), LABELS, CHANNELS, configured)
    assert result.epochs <= 3
    assert len(result.history) <= 3
    assert result.model.meta["settings"]["train_epochs"] == 3
    assert result.model.meta["class_weights"] == [1.0, 1.0, 1.0, 1.0]
    assert result.model.meta["settings"]["use_class_weights"] is False
    assert result.model.window == 24
    assert result.model.net.spec.hidden_size == 5


def test_class_weights_favour_rare_classes():
    result = fit(samples(2, rows=200), LABELS, CHANNELS, settings(train_epochs=1))
    weights = result.model.meta["class_weights"]
    assert weights[0] < 1.0 and weights[0] < weights[1]  # background is the most common class
    assert weights[3] > weights[1]  # instants (Fall) are the rarest


def test_windows_never_cross_a_task_boundary(monkeypatch):
    """Every training window lies inside one task's stretch of the concatenated training rows."""
    seen: list[np.ndarray] = []
    real = fit_module.window_index

    def recording(starts, size):
        seen.append((np.asarray(starts).copy(), size))
        return real(starts, size)

    monkeypatch.setattr(fit_module, "window_index", recording)
    lengths = [100, 130, 170]
    data = [s for s in samples(3)]
    data = [LabelledSeries(s.values[:n], RowLabels(s.target.classes[:n]), s.name) for s, n in zip(data, lengths)]
    data[0].target.classes[10:20] = 1
    fit(data, LABELS, CHANNELS, settings(train_epochs=4, sequence_size=20))

    train_lengths = [int(n * 0.8) for n in lengths]  # 80, 104, 136: validation is the rest
    bounds = np.cumsum([0, *train_lengths])
    assert seen
    covered = set()
    for starts, size in seen:
        assert size == 20
        for start in starts:
            piece = int(np.searchsorted(bounds, start, side="right")) - 1
            assert bounds[piece] <= start and start + size <= bounds[piece + 1], (start, bounds)
            covered.add(piece)
    assert covered == {0, 1, 2}


def test_short_tasks_shrink_the_window():
    data = [LabelledSeries(s.values[:30], RowLabels(s.target.classes[:30]), s.name) for s in samples(2)]
    data[0].target.classes[5:12] = 1
    result = fit(data, LABELS, CHANNELS, settings(train_epochs=1, sequence_size=50))
    assert result.model.window == 30


def test_refuses_unlabelled_data_and_wrong_channels():
    data = samples(1)
    empty = [LabelledSeries(data[0].values, RowLabels(np.zeros(len(data[0].values), np.int64)))]
    with pytest.raises(InvalidInput, match="no labelled regions"):
        fit(empty, LABELS, CHANNELS, settings(train_epochs=1))
    with pytest.raises(InvalidInput, match="3 configured channels"):
        fit(data, LABELS, ["a", "b", "c"], settings(train_epochs=1))
    with pytest.raises(InvalidInput):
        fit([], LABELS, CHANNELS, settings(train_epochs=1))
