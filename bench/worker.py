"""``python -m bench.worker``: one training + test-split prediction in its own process.

Each quality run lives in a fresh process so that its peak RSS (read by the parent with
``os.wait4``) is the trainer's memory, and so runs cannot leak threads or caches into each
other. Writes ``<out>/result.json``, ``<out>/pred/<recording>.json`` and the model
(``<out>/model/`` for ts-segmenter, ``<out>/seed_model.pt`` for the baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench.data import dataset

#: The trainer's default; the baseline gets the same, so both train on one CPU thread.
NUM_THREADS = 1


def train_ours(name: str, seed: int, out: Path) -> dict:
    """ts-segmenter's defaults: ``trainer.fit.fit`` with ``TrainingSettings(seed=seed)``."""
    from trainer.fit import LabelledSeries, fit
    from trainer.settings import TrainingSettings

    data = dataset(name)
    settings = TrainingSettings(_env_file=None, seed=seed)
    samples = [LabelledSeries(r.series.values, r.target, r.name) for r in data.split("train")]
    result = fit(samples, list(data.config.labels), list(data.config.channels), settings)
    model = result.model
    model.meta["version"] = f"bench-{name}-seed{seed}"
    (out / "model").mkdir()
    model.save(out / "model")

    started = time.perf_counter()
    predictions = {}
    for recording in data.split("test"):
        segments, _ = model.segments(recording.series.values)
        series = recording.series
        predictions[recording.name] = [
            {"start": series.time_value(s.start), "end": series.time_value(s.end), "label": model.labels[s.label - 1], "instant": s.start == s.end}
            for s in segments
        ]
    predict_seconds = time.perf_counter() - started
    for recording, segments in predictions.items():
        (out / "pred" / f"{recording}.json").write_text(json.dumps(segments))
    return {
        "fit_seconds": result.seconds,
        "epochs": result.epochs,
        "best_epoch": result.metrics.get("best_epoch"),
        "stop_reason": result.stop_reason,
        "validation": {k: v for k, v in result.metrics.items() if k != "class_f1"},
        "predict_seconds": predict_seconds,
        "settings": json.loads(settings.model_dump_json(include={
            "train_epochs", "sequence_size", "hidden_size", "num_layers", "bidirectional", "batch_size", "learning_rate",
            "patience", "max_patience", "validation_fraction", "num_threads", "device", "seed",
        })),
    }


def train_seed(name: str, seed: int, out: Path) -> dict:
    """The seed's algorithm (:mod:`bench.baseline`) with the seed's defaults."""
    from bench.baseline import SeedSegmenter

    data = dataset(name)
    segmenter = SeedSegmenter(list(data.config.channels), list(data.config.labels))
    result = segmenter.fit([(r.series.values, r.target.classes) for r in data.split("train")], seed=seed)
    torch.save(segmenter.state(), out / "seed_model.pt")
    started = time.perf_counter()
    predictions = {r.name: segmenter.predict_csv(r.csv.read_text(), data.config.time_column) for r in data.split("test")}
    predict_seconds = time.perf_counter() - started
    for recording, regions in predictions.items():
        (out / "pred" / f"{recording}.json").write_text(json.dumps({"result": regions}))
    return {
        "fit_seconds": result.seconds,
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
        "training_window_metrics": {k: v for k, v in result.metrics.items() if k != "per_class_f1"},
        "predict_seconds": predict_seconds,
        "settings": dict(segmenter.settings.__dict__),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--system", choices=("ours", "seed"), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(NUM_THREADS)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pred").mkdir(exist_ok=True)
    run = train_ours if args.system == "ours" else train_seed
    result = run(args.dataset, args.seed, args.out)
    result.update(dataset=args.dataset, system=args.system, seed=args.seed, torch_threads=torch.get_num_threads())
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
