"""The seed's segmenter, re-implemented as the benchmark's baseline.

Source of the algorithm: HumanSignal/label-studio-ml-backend,
``label_studio_ml/examples/timeseries_segmenter/model.py`` and ``neural_nets.py``
(Apache-2.0, © Heartex / HumanSignal). This module re-implements that algorithm from its
description and code structure without the Label Studio plumbing; it is not a copy.

What it keeps, because the benchmark compares against exactly this:

* **samples**: every labelled task's rows are stacked into ONE sequence (``np.vstack``), so
  training windows cross task boundaries; no per-channel normalisation.
* **network**: ``Linear(C, 128) → ReLU → LayerNorm → Dropout(0.3) → 2-layer LSTM(HIDDEN_SIZE)
  → Dropout(0.3) → Linear``. The published seed code builds the LSTM with
  ``bidirectional=True`` (both versions of ``neural_nets.py``), so this one does too.
* **training**: windows of SEQUENCE_SIZE rows every ``SEQUENCE_SIZE // 2`` rows (the last one
  aligned to the end), a shuffling ``DataLoader`` of batch 16, Adam (lr 1e-3, weight decay
  1e-5), gradient clipping at 1.0, inverse-frequency class weights counted over the windowed
  labels. After every epoch the metrics are computed **on the training windows** (eval mode):
  macro recall (= balanced accuracy) over the classes that occur, per-class F1 and the smallest
  *non-zero* per-class F1 (a class that is never predicted has F1 0 and is ignored, as in the
  seed). Training stops when balanced accuracy ≥ BALANCED_ACCURACY_THRESHOLD and that F1 ≥
  MIN_CLASS_F1_THRESHOLD, or after TRAIN_EPOCHS. The last epoch's weights are kept.
* **prediction**: 50 %-overlapping windows, all in one forward pass, softmax, per-row uniform
  averaging accumulated window by window in Python; per-row argmax; then the rows are grouped
  into segments by a per-row ``DataFrame.iterrows`` loop (the slow part), background segments
  dropped, ``instant = start == end``, score = mean of the per-row maxima.

It runs on CUDA when present, as the seed does. torchmetrics is not installed here; :func:`seed_metrics` computes the same numbers
(torchmetrics' macro average skips classes with ``tp + fp + fn == 0``).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

BACKGROUND = "__background__"


@dataclass(frozen=True)
class SeedSettings:
    """The seed's settings and their defaults (environment variables of the seed in brackets)."""

    train_epochs: int = 1000  # TRAIN_EPOCHS
    sequence_size: int = 50  # SEQUENCE_SIZE
    hidden_size: int = 64  # HIDDEN_SIZE
    balanced_accuracy_threshold: float = 0.85  # BALANCED_ACCURACY_THRESHOLD
    min_class_f1_threshold: float = 0.70  # MIN_CLASS_F1_THRESHOLD
    use_class_weights: bool = True  # USE_CLASS_WEIGHTS
    batch_size: int = 16
    fc_size: int = 128
    num_layers: int = 2
    dropout: float = 0.3
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5


class SeedNet(nn.Module):
    """The seed's ``TimeSeriesLSTM`` network: ``[N, L, C]`` → ``[N, L, K + 1]`` logits."""

    def __init__(self, num_channels: int, num_classes: int, settings: SeedSettings) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc_input = nn.Linear(num_channels, settings.fc_size)
        self.input_norm = nn.LayerNorm(settings.fc_size)
        self.input_dropout = nn.Dropout(settings.dropout)
        self.lstm = nn.LSTM(
            settings.fc_size, settings.hidden_size, settings.num_layers,
            batch_first=True, bidirectional=True, dropout=settings.dropout,
        )
        self.output_dropout = nn.Dropout(settings.dropout)
        self.fc_output = nn.Linear(2 * settings.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step logits."""
        x = self.input_dropout(self.input_norm(torch.relu(self.fc_input(x))))
        hidden, _ = self.lstm(x)
        return self.fc_output(self.output_dropout(hidden))


def window_starts(length: int, size: int) -> list[int]:
    """The seed's window starts: every ``size // 2`` rows, plus one aligned to the end."""
    step = max(1, int(size * 0.5))
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def make_windows(values: torch.Tensor, labels: torch.Tensor | None, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The seed's ``preprocess_sequence``: overlapping windows, or one padded window for a short series.

    A short series is reflect-padded (labels padded with -1, ignored by loss and metrics).
    """
    length = len(values)
    if length < size:
        pad = size - length
        if length > 1:
            flipped = values.flip(0)
            padded = torch.cat([flipped[: pad // 2 + pad % 2], values, flipped[: pad // 2]])
        else:
            padded = torch.zeros(size, values.shape[-1], device=values.device)
            padded[(size - length) // 2 : (size - length) // 2 + length] = values
        chunks = padded[:size].unsqueeze(0)
        label_chunks = None
        if labels is not None:
            filled = torch.full((size,), int(labels[0]) if length == 1 else -1, dtype=torch.long)
            if length > 1:
                filled[(size - length) // 2 : (size - length) // 2 + length] = labels
            label_chunks = filled.unsqueeze(0)
        return chunks, label_chunks
    starts = window_starts(length, size)
    chunks = torch.stack([values[s : s + size] for s in starts])
    label_chunks = torch.stack([labels[s : s + size] for s in starts]) if labels is not None else None
    return chunks, label_chunks


def class_weights(window_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The seed's inverse-frequency weights, counted over the (overlapping) training windows."""
    flat = window_labels.reshape(-1)
    flat = flat[flat != -1]
    present, counts = torch.unique(flat, return_counts=True)
    weights = torch.zeros(num_classes, dtype=torch.float32)
    weights[present] = len(flat) / (len(present) * counts.float())
    return weights


def seed_metrics(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> dict:
    """The seed's epoch metrics (torchmetrics semantics) over rows whose label is not -1."""
    valid = truth != -1
    predicted, truth = predicted[valid], truth[valid]
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    seen = (tp + fp + fn) > 0

    def safe(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    precision = safe(tp, tp + fp)
    recall = safe(tp, tp + fn)
    f1 = safe(2 * tp, 2 * tp + fp + fn)
    nonzero = f1[f1 > 0]
    return {
        "precision": float(precision[seen].mean()) if seen.any() else 0.0,
        "balanced_accuracy": float(recall[seen].mean()) if seen.any() else 0.0,
        "f1_score": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class_f1": f1.tolist(),
        "min_class_f1": float(nonzero.min()) if len(nonzero) else 0.0,
    }


@dataclass
class SeedFitResult:
    """How a baseline training went."""

    epochs: int
    seconds: float
    stop_reason: str
    metrics: dict
    history: list[dict] = field(default_factory=list)


class SeedSegmenter:
    """Train and predict exactly as the seed does (CPU, one model per call to :meth:`fit`)."""

    def __init__(self, channels: list[str], labels: list[str], settings: SeedSettings | None = None) -> None:
        self.channels = list(channels)
        self.labels = list(labels)
        self.all_labels = [BACKGROUND, *self.labels]
        self.settings = settings or SeedSettings()
        self.net: SeedNet | None = None
        # As in the seed: CUDA when present, else CPU.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def build(self, seed: int = 0) -> SeedNet:
        """A fresh, untrained network (seeded initialisation)."""
        torch.manual_seed(seed)
        self.net = SeedNet(len(self.channels), len(self.all_labels), self.settings).to(self.device)
        return self.net

    def fit(self, samples: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> SeedFitResult:
        """Train on ``(values [T, C], classes [T])`` pairs, one per task.

        ``classes`` holds 0 for background and ``i + 1`` for ``labels[i]``.
        """
        started = time.perf_counter()
        s = self.settings
        net = self.build(seed)
        num_classes = len(self.all_labels)
        windows, window_labels = self.training_windows(samples)
        weights = class_weights(window_labels, num_classes).to(self.device) if s.use_class_weights else None
        loss_fn = nn.CrossEntropyLoss(ignore_index=-1, weight=weights)
        optimiser = torch.optim.Adam(net.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        loader = DataLoader(TensorDataset(windows, window_labels), batch_size=s.batch_size, shuffle=True)

        history: list[dict] = []
        metrics: dict = {}
        stop_reason = "epoch limit (TRAIN_EPOCHS)"
        epoch = 0
        for epoch in range(1, s.train_epochs + 1):
            net.train()
            total = 0.0
            for batch, target in loader:
                batch, target = batch.to(self.device), target.to(self.device)
                optimiser.zero_grad()
                loss = loss_fn(net(batch).reshape(-1, num_classes), target.reshape(-1))
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), max_norm=1.0)
                optimiser.step()
                total += loss.item()
            metrics = self._evaluate(loader)
            metrics["loss"] = total / len(loader)
            history.append({"epoch": epoch, **{k: v for k, v in metrics.items() if k != "per_class_f1"}})
            if metrics["balanced_accuracy"] >= s.balanced_accuracy_threshold and metrics["min_class_f1"] >= s.min_class_f1_threshold:
                stop_reason = "thresholds met on the training windows"
                break
        net.eval()
        return SeedFitResult(epoch, time.perf_counter() - started, stop_reason, metrics, history)

    def training_windows(self, samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The seed stacks every task into one sequence, so its windows cross task boundaries."""
        values = torch.tensor(np.vstack([v for v, _ in samples]).astype(np.float32))
        classes = torch.tensor(np.hstack([c for _, c in samples]).astype(np.int64))
        return make_windows(values, classes, self.settings.sequence_size)

    @torch.no_grad()
    def _evaluate(self, loader: DataLoader) -> dict:
        """The seed judges stopping on the training windows themselves."""
        self.net.eval()
        predicted, truth = [], []
        for batch, target in loader:
            predicted.append(self.net(batch.to(self.device)).argmax(dim=-1).reshape(-1).cpu())
            truth.append(target.reshape(-1))
        return seed_metrics(torch.cat(predicted).numpy(), torch.cat(truth).numpy(), len(self.all_labels))

    @torch.no_grad()
    def predict_probs(self, values: np.ndarray) -> torch.Tensor:
        """``[T, K + 1]`` probabilities: 50 %-overlap windows averaged uniformly, as the seed does."""
        net = self.net
        net.eval()
        sequence = torch.tensor(values, dtype=torch.float32, device=self.device)
        length, size = len(sequence), self.settings.sequence_size
        if length == 0:
            return torch.zeros((0, len(self.all_labels)))
        chunks, _ = make_windows(sequence, None, size)
        chunk_probs = torch.softmax(net(chunks), dim=-1)
        if length < size:
            offset = (size - length) // 2
            return chunk_probs[0][offset : offset + length].cpu()
        probs = torch.zeros(length, len(self.all_labels), device=self.device)
        counts = torch.zeros(length, device=self.device)
        for index, start in enumerate(window_starts(length, size)):
            probs[start : start + size] += chunk_probs[index]
            counts[start : start + size] += 1
        return (probs / counts.unsqueeze(-1)).cpu()

    def predict_frame(self, frame: pd.DataFrame, time_column: str | None) -> list[dict]:
        """The seed's ``_predict_task`` on an already parsed CSV: Label Studio regions (background dropped)."""
        if frame.empty:
            return []
        if time_column is None:
            time_column = "time_autogenerated"
            frame[time_column] = range(len(frame))
        values = frame[self.channels].values.astype(np.float32)
        probs = self.predict_probs(values)
        label_index = torch.argmax(probs, dim=1).cpu().numpy()
        scores = torch.max(probs, dim=1)[0].cpu().numpy()
        frame["pred_label_idx"] = label_index
        frame["pred_label"] = [self.all_labels[i] for i in label_index]
        frame["score"] = scores
        regions = []
        for segment in group_rows(frame, time_column):
            if segment["label"] == BACKGROUND:
                continue
            regions.append({
                "from_name": "label",
                "to_name": "ts",
                "type": "timeserieslabels",
                "value": {
                    "start": segment["start"],
                    "end": segment["end"],
                    "instant": segment["start"] == segment["end"],
                    "timeserieslabels": [segment["label"]],
                },
                "score": float(np.mean(segment["scores"])),
            })
        return regions

    def predict_csv(self, text: str, time_column: str | None) -> list[dict]:
        """The seed's whole predict path for one task CSV (parse included)."""
        return self.predict_frame(pd.read_csv(io.StringIO(text)), time_column)

    def state(self) -> dict:
        """Weights and shape, for saving the baseline model."""
        return {"state_dict": self.net.state_dict(), "channels": self.channels, "labels": self.labels, "settings": self.settings.__dict__}

    @classmethod
    def from_state(cls, state: dict) -> SeedSegmenter:
        """Inverse of :meth:`state`."""
        segmenter = cls(state["channels"], state["labels"], SeedSettings(**state["settings"]))
        segmenter.build()
        segmenter.net.load_state_dict(state["state_dict"])
        segmenter.net.eval()
        return segmenter


def group_rows(frame: pd.DataFrame, time_column: str) -> list[dict]:
    """The seed's segment grouping: one Python iteration per row over ``DataFrame.iterrows``."""
    segments: list[dict] = []
    current = None
    for _, row in frame.iterrows():
        label = row["pred_label"]
        if current is not None and current["label"] == label:
            current["end"] = row[time_column]
            current["scores"].append(row["score"])
        else:
            if current is not None:
                segments.append(current)
            current = {"label": label, "start": row[time_column], "end": row[time_column], "scores": [row["score"]]}
    if current is not None:
        segments.append(current)
    return segments
