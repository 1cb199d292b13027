"""The benchmark's datasets: Label Studio-style tasks under ``../shared/data`` turned into training samples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tscore.labelconfig import LabelConfig, parse_label_config
from tscore.labels import RowLabels, annotations_to_rows
from tscore.series import Series, read_series

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
SCORER = SHARED / "tools" / "score_segments.py"
DATASETS = ("basicmotions", "gait_events")

#: Point-event tolerances (seconds) scored per dataset; the issue's targets are at ±20 and ±50 ms.
TOLERANCES = (0.02, 0.05)


@dataclass
class Recording:
    """One task: its name, CSV path, parsed series and ground-truth rows."""

    name: str
    csv: Path
    series: Series
    target: RowLabels
    annotations: list[dict]


@dataclass
class Dataset:
    """One dataset folder with its label config and train/test recordings."""

    name: str
    directory: Path

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.directory / "meta.json").read_text())

    @cached_property
    def config(self) -> LabelConfig:
        return parse_label_config(self.meta["label_config"])

    @cached_property
    def tasks(self) -> dict[str, dict]:
        """Recording name → its LS task (``data.csv_url`` and the ground-truth annotation)."""
        return {task["data"]["recording"]: task for task in json.loads((self.directory / "ls_tasks.json").read_text())}

    def recording(self, name: str) -> Recording:
        """Parse a recording as the trainer does: ``read_series`` + ``annotations_to_rows``."""
        task = self.tasks[name]
        csv = self.directory / task["data"]["csv_url"]
        series = read_series(csv.read_bytes(), self.config)
        target = annotations_to_rows(task["annotations"], series, self.config)
        return Recording(name, csv, series, target, task["annotations"])

    def split(self, which: str) -> list[Recording]:
        """The recordings of the ``train`` or ``test`` split, in meta.json order."""
        return [self.recording(name) for name in self.meta["split"][which]]


def dataset(name: str) -> Dataset:
    """A dataset by folder name."""
    directory = DATA / name
    if not (directory / "meta.json").is_file():
        raise FileNotFoundError(f"no dataset at {directory}")
    return Dataset(name, directory)


def synthetic_series(rows: int = 100_000, seed: int = 0) -> np.ndarray:
    """A ``[rows, 6]`` float32 series made of shuffled 100-row basicmotions test instances plus noise.

    Real sensor blocks (rather than white noise) make the decoders see realistic segment
    counts, which is what the seed's per-row grouping and ts-segmenter's post-processing cost.
    """
    data = dataset("basicmotions")
    blocks = []
    for recording in data.split("test"):
        values = recording.series.values
        blocks.extend(values[i : i + 100] for i in range(0, len(values) - 99, 100))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(blocks), size=int(np.ceil(rows / 100)))
    values = np.concatenate([blocks[i] for i in picks])[:rows]
    noise = rng.normal(0.0, 0.05, size=values.shape) * values.std(axis=0, keepdims=True)
    return (values + noise).astype(np.float32)


def write_csv(path: Path, values: np.ndarray, channels: list[str], hz: float = 10.0) -> None:
    """Write a series as a task CSV with a ``time`` column in seconds."""
    time_values = np.arange(len(values)) / hz
    table = np.column_stack([time_values, values])
    header = ",".join(["time", *channels])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt=["%.1f"] + ["%.5f"] * values.shape[1])
