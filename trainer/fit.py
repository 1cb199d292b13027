"""Fitting the segmenter on labelled series: split, normalise, window, train, stop, select."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from trainer.adam import Adam
from trainer.metrics import row_metrics
from trainer.settings import TrainingSettings
from tscore.errors import InvalidInput
from tscore.inference import normalise, predict_probs_many
from tscore.labels import RowLabels
from tscore.model import TrainedModel
from tscore.network import NetworkSpec, SegmenterNet, pick_device
from tscore.segments import Decoding
from tscore.windows import window_index, window_starts

log = logging.getLogger(__name__)


@dataclass
class LabelledSeries:
    """One task's raw ``[T, C]`` values with its per-row labels."""

    values: np.ndarray
    target: RowLabels
    name: str = ""


@dataclass
class _Piece:
    """A stretch of one task: values and per-row training classes."""

    values: np.ndarray
    classes: np.ndarray


@dataclass
class FitResult:
    """A trained model and how training went."""

    model: TrainedModel
    metrics: dict
    epochs: int
    seconds: float
    stop_reason: str
    history: list[dict] = field(default_factory=list)
    validation: list[_Piece] = field(default_factory=list)
    """The held-out data in raw (unnormalised) values, for comparing models on equal terms."""


def instant_halfwidth(decoding: Decoding) -> int:
    """Rows on each side of an instant that are trained as the event (a sharper target is unlearnable)."""
    gaps = [gap for c, gap in decoding.min_gap_rows.items() if c in decoding.instant_classes]
    return int(np.clip(round(min(gaps) / 30), 1, 5)) if gaps else 1


def training_classes(target: RowLabels, decoding: Decoding, halfwidth: int) -> np.ndarray:
    """Per-row training targets: the annotation with instant events widened to ``±halfwidth`` rows."""
    classes = target.classes.copy()
    for class_id in decoding.instant_classes:
        for row in target.instants.get(class_id, []):
            lo, hi = max(0, row - halfwidth), min(len(classes), row + halfwidth + 1)
            classes[lo:hi] = np.where(classes[lo:hi] == 0, class_id, classes[lo:hi])
    return classes


def split(samples: list[_Piece], fraction: float, window: int, rng: np.random.Generator) -> tuple[list[_Piece], list[_Piece]]:
    """Hold out validation data without mixing tasks inside one window.

    With five tasks or more whole tasks are held out; with fewer, the last ``fraction`` of
    each long-enough task is, so every task still contributes training windows.
    """
    if len(samples) >= 5:
        order = rng.permutation(len(samples))
        held = max(1, round(fraction * len(samples)))
        return [samples[i] for i in order[held:]], [samples[i] for i in order[:held]]
    train, validation = [], []
    for piece in samples:
        cut = int(len(piece.classes) * (1 - fraction))
        if cut >= window and len(piece.classes) - cut >= window:
            train.append(_Piece(piece.values[:cut], piece.classes[:cut]))
            validation.append(_Piece(piece.values[cut:], piece.classes[cut:]))
        else:
            train.append(piece)
    return train, validation or train


def training_windows(lengths: list[int], window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts over the concatenated pieces, and for each the last start its piece allows.

    Windows never cross a task boundary: each lies inside one piece, and the per-epoch jitter
    of a start is capped by its limit.
    """
    starts, limits = [], []
    offset = 0
    for length in lengths:
        if length >= window:
            piece_starts = offset + window_starts(length, window, stride)
            starts.append(piece_starts)
            limits.append(np.full(len(piece_starts), offset + length - window))
        offset += length
    return np.concatenate(starts), np.concatenate(limits)


def class_weights(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, normalised so that the average row weighs 1."""
    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def evaluate(net: SegmenterNet, pieces: list[_Piece], window: int, device: torch.device) -> dict:
    """Row metrics of the network's overlap-averaged argmax on the validation pieces."""
    net.eval()
    truth = np.concatenate([p.classes for p in pieces])
    predicted = np.concatenate(predict_probs_many(net, [p.values for p in pieces], window, device=device)).argmax(axis=1)
    return row_metrics(truth, predicted, net.spec.num_classes)


def fit(samples: list[LabelledSeries], labels: list[str], channels: list[str], settings: TrainingSettings) -> FitResult:
    """Train a model on labelled series.

    Raises:
        InvalidInput: when nothing is labelled or the series do not match the channels.
    """
    started = time.perf_counter()
    if not samples or not any((s.target.classes > 0).any() for s in samples):
        raise InvalidInput("no labelled regions to learn from")
    for sample in samples:
        if sample.values.ndim != 2 or sample.values.shape[1] != len(channels):
            raise InvalidInput(f"series {sample.name!r} does not have the {len(channels)} configured channels")
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    num_classes = len(labels) + 1

    decoding = Decoding.learn([s.target for s in samples], num_classes)
    halfwidth = instant_halfwidth(decoding)
    pieces = [_Piece(s.values.astype(np.float32), training_classes(s.target, decoding, halfwidth)) for s in samples]
    window = max(2, min(settings.sequence_size, min(len(p.classes) for p in pieces)))
    train, validation = split(pieces, settings.validation_fraction, window, rng)
    raw_validation = validation

    all_train = np.concatenate([p.values for p in train])
    mean = all_train.mean(axis=0).astype(np.float32)
    std = all_train.std(axis=0).astype(np.float32)
    std[std < 1e-6] = 1.0
    train = [_Piece(normalise(p.values, mean, std), p.classes) for p in train]
    validation = [_Piece(normalise(p.values, mean, std), p.classes) for p in validation]

    features = torch.from_numpy(np.concatenate([p.values for p in train])).to(device)
    targets = torch.from_numpy(np.concatenate([p.classes for p in train])).to(device)
    stride = max(1, window // 4)
    starts, limits = training_windows([len(p.classes) for p in train], window, stride)

    spec = NetworkSpec(
        num_channels=len(channels),
        num_classes=num_classes,
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        bidirectional=settings.bidirectional,
        downsample=settings.downsample,
        conv_width=settings.conv_width,
    )
    net = SegmenterNet(spec).to(device)
    weights = class_weights(targets.cpu().numpy(), num_classes) if settings.use_class_weights else np.ones(num_classes, np.float32)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device))
    optimiser = Adam(net.parameters(), lr=settings.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

    best_score, best_state, best_metrics, best_epoch = -1.0, None, {}, 0
    history: list[dict] = []
    stop_reason = "epoch limit (TRAIN_EPOCHS)"
    epoch = 0
    for epoch in range(1, settings.train_epochs + 1):
        net.train()
        jitter = rng.integers(0, stride, size=len(starts))
        epoch_starts = np.minimum(starts + jitter, limits)
        order = rng.permutation(len(epoch_starts))
        total_loss = 0.0
        for batch in np.array_split(order, max(1, int(np.ceil(len(order) / settings.batch_size)))):
            index = torch.from_numpy(window_index(epoch_starts[batch], window)).to(device)
            inputs = features[index]
            if settings.augmentation:
                # Sensors drift in gain and noise between recordings; windows see a little of both.
                gains = 1 + settings.augmentation * torch.randn(len(batch), 1, inputs.shape[2], device=device, generator=generator)
                inputs = inputs * gains + settings.augmentation * torch.randn(inputs.shape, device=device, generator=generator)
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
                logits = net(inputs)
                loss = loss_fn(logits.reshape(-1, num_classes).float(), targets[index].reshape(-1))
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimiser)
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(optimiser)
            scaler.update()
            total_loss += float(loss.detach()) * len(batch)
        metrics = evaluate(net, validation, window, device)
        metrics["loss"] = total_loss / max(1, len(order))
        history.append({"epoch": epoch, **{k: v for k, v in metrics.items() if k != "class_f1"}})
        if metrics["macro_f1"] > best_score:
            best_score, best_state, best_metrics, best_epoch = metrics["macro_f1"], copy.deepcopy(net.state_dict()), metrics, epoch
        thresholds_met = (
            best_metrics["balanced_accuracy"] >= settings.balanced_accuracy_threshold
            and best_metrics["min_class_f1"] >= settings.min_class_f1_threshold
        )
        waited = epoch - best_epoch
        if thresholds_met and waited >= settings.patience:
            stop_reason = "validation thresholds met and no further improvement"
            break
        if waited >= settings.max_patience:
            stop_reason = "no validation improvement"
            break
    net.load_state_dict(best_state)
    net.eval()
    model = TrainedModel(
        net=net,
        mean=mean,
        std=std,
        window=window,
        decoding=decoding,
        meta={
            "labels": list(labels),
            "channels": list(channels),
            "settings": {
                "sequence_size": window,
                "hidden_size": settings.hidden_size,
                "train_epochs": settings.train_epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate,
                "use_class_weights": settings.use_class_weights,
                "balanced_accuracy_threshold": settings.balanced_accuracy_threshold,
                "min_class_f1_threshold": settings.min_class_f1_threshold,
                "seed": settings.seed,
            },
            "class_weights": weights.tolist(),
            "instant_halfwidth": halfwidth,
        },
    )
    seconds = time.perf_counter() - started
    log.info(
        "trained %d epochs in %.1f s (best epoch %d, validation macro F1 %.3f): %s",
        epoch, seconds, best_epoch, best_score, stop_reason,
    )
    summary = {k: v for k, v in best_metrics.items() if k != "class_f1"}
    summary["class_f1"] = {labels[c - 1] if c > 0 else "background": v for c, v in best_metrics.get("class_f1", {}).items()}
    summary["best_epoch"] = best_epoch
    return FitResult(model, summary, epoch, seconds, stop_reason, history, raw_validation)


def validation_score(model: TrainedModel, pieces: list[_Piece]) -> float:
    """Macro F1 of a model's per-row argmax on raw validation pieces (the validation gate's measure)."""
    truth = np.concatenate([p.classes for p in pieces])
    predicted = np.concatenate([model.probabilities(p.values).argmax(axis=1) for p in pieces])
    return row_metrics(truth, predicted, max(model.net.spec.num_classes, int(truth.max()) + 1))["macro_f1"]
