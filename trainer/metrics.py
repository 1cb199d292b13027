"""Per-row classification metrics used for stopping, model selection and the validation gate."""

from __future__ import annotations

import numpy as np


def row_metrics(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """Balanced accuracy, per-class F1 and macro F1 over the classes present in ``truth``.

    Returns:
        ``{"balanced_accuracy", "macro_f1", "min_class_f1", "class_f1": {id: f1}}``.
    """
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    true_count = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = np.flatnonzero(true_count)
    if len(present) == 0:
        return {"balanced_accuracy": 0.0, "macro_f1": 0.0, "min_class_f1": 0.0, "class_f1": {}}
    recall = hits[present] / true_count[present]
    precision = np.divide(hits[present], predicted_count[present], out=np.zeros(len(present)), where=predicted_count[present] > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(present)), where=(precision + recall) > 0)
    return {
        "balanced_accuracy": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "min_class_f1": float(f1.min()),
        "class_f1": {int(c): float(v) for c, v in zip(present, f1)},
    }
