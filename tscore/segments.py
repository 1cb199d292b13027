"""Per-row class probabilities → segments (range runs and instant events).

Everything here is vectorised numpy over rows; Python loops only visit runs.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

import numpy as np

from tscore.labels import RowLabels


@dataclass(frozen=True)
class Segment:
    """A predicted region in row indices (inclusive) with its class id (≥ 1) and confidence."""

    start: int
    end: int
    label: int
    score: float

    @property
    def instant(self) -> bool:
        return self.start == self.end


@dataclass
class Decoding:
    """How probabilities become segments; learnt from the training labels and stored with a model.

    Attributes:
        instant_classes: class ids whose training regions were all instants; decoded as peaks.
        min_rows: per range class, the shortest run kept; shorter fragments are absorbed by
            their neighbours.
        min_gap_rows: per instant class, the closest two events of that class may be.
        smooth_rows: width of the moving average applied to probabilities before range decoding.
    """

    instant_classes: list[int] = field(default_factory=list)
    min_rows: dict[int, int] = field(default_factory=dict)
    min_gap_rows: dict[int, int] = field(default_factory=dict)
    smooth_rows: int = 1

    def to_json(self) -> dict:
        """JSON-ready form (dict keys become strings)."""
        data = asdict(self)
        data["min_rows"] = {str(k): v for k, v in self.min_rows.items()}
        data["min_gap_rows"] = {str(k): v for k, v in self.min_gap_rows.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> Decoding:
        """Inverse of :meth:`to_json`."""
        return cls(
            instant_classes=[int(c) for c in data.get("instant_classes", [])],
            min_rows={int(k): int(v) for k, v in data.get("min_rows", {}).items()},
            min_gap_rows={int(k): int(v) for k, v in data.get("min_gap_rows", {}).items()},
            smooth_rows=int(data.get("smooth_rows", 1)),
        )

    @classmethod
    def learn(cls, targets: list[RowLabels], num_classes: int) -> Decoding:
        """Derive decoding parameters from the annotated regions.

        Fragments shorter than half the shortest annotated range of a class are removed,
        probabilities are smoothed over a fifth of the shortest range, and instant events
        closer than half the closest annotated pair are merged.
        """
        lengths: dict[int, list[int]] = {}
        gaps: dict[int, list[int]] = {}
        instant_seen: set[int] = set()
        range_seen: set[int] = set()
        for target in targets:
            for class_id, spans in target.ranges.items():
                range_seen.add(class_id)
                lengths.setdefault(class_id, []).extend(last - first + 1 for first, last in spans)
            for class_id, rows in target.instants.items():
                instant_seen.add(class_id)
                ordered = np.sort(np.asarray(rows))
                if len(ordered) > 1:
                    gaps.setdefault(class_id, []).extend(np.diff(ordered).tolist())
        instants = sorted(instant_seen - range_seen)
        min_rows = {c: max(1, int(min(v)) // 2) for c, v in lengths.items() if c not in instants}
        smooth = max(1, min(min_rows.values()) * 2 // 5) if min_rows else 1
        min_gap = {c: max(1, int(min(v)) // 2) for c, v in gaps.items() if c in instants and v}
        return cls(instants, min_rows, min_gap, smooth)


def runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal values: ``(starts, ends_inclusive, values)``."""
    if len(labels) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [len(labels) - 1]))
    return starts, ends, labels[starts]


def moving_average(probs: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over rows (edges use the rows available)."""
    if width <= 1 or len(probs) <= 1:
        return probs
    cumsum = np.vstack([np.zeros((1, probs.shape[1]), dtype=np.float64), np.cumsum(probs, axis=0, dtype=np.float64)])
    index = np.arange(len(probs))
    lo = np.clip(index - width // 2, 0, len(probs))
    hi = np.clip(index + (width - width // 2), 0, len(probs))
    return ((cumsum[hi] - cumsum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def decode(probs: np.ndarray, decoding: Decoding) -> list[Segment]:
    """Turn ``[T, K + 1]`` probabilities into segments, background excluded, sorted by start."""
    if probs.ndim != 2 or len(probs) == 0:
        return []
    segments = _decode_ranges(probs, decoding) + _decode_instants(probs, decoding)
    segments.sort(key=lambda s: (s.start, s.end, s.label))
    return segments


def argmax_runs(probs: np.ndarray) -> list[Segment]:
    """The seed's decoding: every run of the per-row argmax is a segment (no smoothing)."""
    labels = probs.argmax(axis=1)
    return [
        Segment(int(s), int(e), int(v), float(probs[s : e + 1, v].mean()))
        for s, e, v in zip(*runs(labels))
        if v != 0
    ]


def _decode_ranges(probs: np.ndarray, decoding: Decoding) -> list[Segment]:
    num_classes = probs.shape[1]
    range_classes = [c for c in range(1, num_classes) if c not in decoding.instant_classes]
    if not range_classes:
        return []
    # Instant classes count as background here; they are decoded as peaks separately.
    competing = np.zeros((len(probs), len(range_classes) + 1), dtype=np.float32)
    competing[:, 0] = probs[:, [0, *decoding.instant_classes]].sum(axis=1)
    competing[:, 1:] = probs[:, range_classes]
    smoothed = moving_average(competing, decoding.smooth_rows)
    columns = _absorb_fragments(smoothed.argmax(axis=1), smoothed, _column_minimums(decoding.min_rows, range_classes))
    labels = np.array([0, *range_classes])[columns]
    return [
        Segment(int(s), int(e), int(v), float(probs[s : e + 1, v].mean()))
        for s, e, v in zip(*runs(labels))
        if v != 0
    ]


def _column_minimums(min_rows: dict[int, int], range_classes: list[int]) -> dict[int, int]:
    return {column: min_rows[c] for column, c in enumerate(range_classes, start=1) if c in min_rows}


def _absorb_fragments(labels: np.ndarray, probs: np.ndarray, min_rows: dict[int, int]) -> np.ndarray:
    """Give runs shorter than their class's minimum to the neighbour the model prefers there.

    The shortest fragment goes first, so one merge never hides a better one; runs live in a
    linked list and a heap, so a noisy 100k-row series costs milliseconds, not a rescan per merge.
    """
    starts, ends, values = runs(labels)
    count = len(starts)
    if not min_rows or count <= 1:
        return labels
    background_min = max(1, min(min_rows.values()) // 2)
    mass = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0, dtype=np.float64)])
    first, last, value = starts.tolist(), ends.tolist(), values.tolist()
    before = list(range(-1, count - 1))
    after = [*range(1, count), -1]
    alive = [True] * count

    def minimum(run: int) -> int:
        return min_rows.get(value[run], background_min)

    def length(run: int) -> int:
        return last[run] - first[run] + 1

    def unlink(run: int) -> None:
        alive[run] = False
        if before[run] != -1:
            after[before[run]] = after[run]
        if after[run] != -1:
            before[after[run]] = before[run]

    heap = [(length(r), r) for r in range(count) if length(r) < minimum(r)]
    heapq.heapify(heap)
    while heap:
        size, run = heapq.heappop(heap)
        if not alive[run] or size != length(run) or size >= minimum(run):
            continue
        neighbours = [n for n in (before[run], after[run]) if n != -1]
        if not neighbours:
            continue
        best = max(neighbours, key=lambda n: mass[last[run] + 1, value[n]] - mass[first[run], value[n]])
        other = after[run] if best == before[run] else before[run]
        first[best], last[best] = min(first[best], first[run]), max(last[best], last[run])
        unlink(run)
        if other != -1 and value[other] == value[best]:
            first[best], last[best] = min(first[best], first[other]), max(last[best], last[other])
            unlink(other)
        if length(best) < minimum(best):
            heapq.heappush(heap, (length(best), best))
    merged = labels.copy()
    for run in range(count):
        if alive[run]:
            merged[first[run] : last[run] + 1] = value[run]
    return merged


def _decode_instants(probs: np.ndarray, decoding: Decoding) -> list[Segment]:
    if not decoding.instant_classes:
        return []
    winners = probs.argmax(axis=1)
    segments: list[Segment] = []
    for class_id in decoding.instant_classes:
        column = probs[:, class_id]
        starts, ends, values = runs(winners == class_id)
        peaks = [
            int(s + np.argmax(column[s : e + 1])) for s, e, v in zip(starts, ends, values) if v
        ]
        gap = decoding.min_gap_rows.get(class_id, 1)
        kept: list[int] = []
        for peak in sorted(peaks, key=lambda row: -column[row]):
            if all(abs(peak - other) >= gap for other in kept):
                kept.append(peak)
        segments.extend(Segment(row, row, class_id, float(column[row])) for row in kept)
    return segments
