"""Annotations → per-row class ids (0 = background, ``i + 1`` = ``config.labels[i]``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tscore.labelconfig import LabelConfig
from tscore.series import Series


@dataclass
class RowLabels:
    """Per-row targets of one task.

    Attributes:
        classes: ``[T]`` int64 class id per row.
        instants: per class id, the rows of instant (start == end) regions.
        ranges: per class id, the ``(first_row, last_row)`` of range regions.
    """

    classes: np.ndarray
    instants: dict[int, list[int]] = field(default_factory=dict)
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def select_annotations(annotations: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Order a task's annotations as the seed does: ground truth takes priority.

    Cancelled annotations are dropped. Non-ground-truth annotations come first, in their
    given order; the first ground-truth annotation comes last and ends the list, so it
    overrides what the others said.
    """
    usable = [a for a in annotations if not a.get("was_cancelled")]
    regular = [a for a in usable if not a.get("ground_truth")]
    truth = [a for a in usable if a.get("ground_truth")]
    return regular + truth[:1]


def annotations_to_rows(
    annotations: Iterable[Mapping[str, Any]], series: Series, config: LabelConfig
) -> RowLabels:
    """Paint every annotation region onto the rows of ``series``.

    Regions of other controls or with labels absent from the config are ignored; a region
    naming several labels uses the first known one.
    """
    label_ids = {name: index + 1 for index, name in enumerate(config.labels)}
    result = RowLabels(classes=np.zeros(len(series), dtype=np.int64))
    for annotation in select_annotations(annotations):
        for region in annotation.get("result") or []:
            if region.get("from_name") != config.from_name or region.get("type", "timeserieslabels").lower() != "timeserieslabels":
                continue
            value = region.get("value") or {}
            names = [n for n in value.get("timeserieslabels") or [] if n in label_ids]
            if not names or "start" not in value:
                continue
            class_id = label_ids[names[0]]
            start = value["start"]
            end = value.get("end", start)
            first, last = series.row_range(start, end)
            instant = bool(value.get("instant")) or start == end
            result.classes[first : last + 1] = class_id
            if instant:
                result.instants.setdefault(class_id, []).append(first)
            else:
                result.ranges.setdefault(class_id, []).append((first, last))
    return result
