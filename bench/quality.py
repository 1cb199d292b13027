"""Segment quality: ts-segmenter's defaults vs the seed's algorithm on the real datasets.

For each dataset and seed, both systems train on the train split (each in its own process,
see :mod:`bench.worker`), predict the test split, and are scored by the shared scorer
``../shared/tools/score_segments.py`` (imported, so its numbers are exactly the CLI's).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from bench.common import run_child, table, tail
from bench.data import SCORER, TOLERANCES, dataset

log = logging.getLogger("bench")

SYSTEMS = {"ours": "ts-segmenter", "seed": "seed baseline"}


def load_scorer():
    """The shared scorer module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("score_segments", SCORER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarise_score(result: dict) -> dict:
    """The figures the benchmark reports from a scorer result."""
    summary = {"row_macro_f1": result["timestep"]["macro_f1"], "row_accuracy": result["timestep"]["accuracy"]}
    if result["events"]:
        summary.update(event_f1=result["events"]["micro_f1"], event_precision=result["events"]["precision"], n_pred_segments=result["events"]["n_pred"], n_true_segments=result["events"]["n_true"])
    if result["points"]:
        for tol, figures in result["points"]["tolerances"].items():
            ms = round(float(tol) * 1000)
            summary[f"point_f1_{ms}ms"] = figures["micro_f1"]
            summary[f"point_precision_{ms}ms"] = figures["precision"]
            summary[f"point_recall_{ms}ms"] = figures["recall"]
        summary["n_pred_events"] = result["points"]["tolerances"][str(max(TOLERANCES))]["n_pred"]
        summary["n_true_events"] = result["points"]["tolerances"][str(max(TOLERANCES))]["n_true"]
    return summary


def run(datasets: list[str], seeds: list[int], workdir: Path) -> dict:
    """Train, predict and score every (dataset, seed, system); return per-run rows and aggregates."""
    scorer = load_scorer()
    runs = []
    for name in datasets:
        data = dataset(name)
        for seed in seeds:
            for system in SYSTEMS:
                out = workdir / name / f"seed{seed}" / system
                out.mkdir(parents=True, exist_ok=True)
                log_path = out / "worker.log"
                log.info("quality: %s seed %d %s ...", name, seed, SYSTEMS[system])
                code, wall, peak_mb = run_child(["-m", "bench.worker", "--dataset", name, "--system", system, "--seed", str(seed), "--out", str(out)], log_path)
                if code != 0:
                    raise RuntimeError(f"worker {name}/{seed}/{system} exited {code}:\n{tail(log_path)}")
                result = json.loads((out / "result.json").read_text())
                scored = scorer.score(str(data.directory), str(out / "pred"), "test", None, 0.5, TOLERANCES)
                (out / "score.json").write_text(json.dumps(scored, indent=1))
                row = {
                    "dataset": name, "seed": seed, "system": system,
                    "fit_seconds": round(result["fit_seconds"], 2), "epochs": result["epochs"],
                    "stop_reason": result["stop_reason"], "predict_test_seconds": round(result["predict_seconds"], 3),
                    "process_wall_seconds": round(wall, 2), "peak_rss_mb": round(peak_mb, 1),
                    **summarise_score(scored),
                    "details": {k: v for k, v in result.items() if k not in ("fit_seconds", "epochs", "stop_reason", "predict_seconds")},
                    "artifacts": str(out),
                }
                log.info(
                    "quality: %s seed %d %s: row F1 %.3f event F1 %s point F1@50ms %s, %.1f s, %d epochs",
                    name, seed, SYSTEMS[system], row["row_macro_f1"], _fmt(row.get("event_f1")), _fmt(row.get("point_f1_50ms")), row["fit_seconds"], row["epochs"],
                )
                runs.append(row)
    return {"runs": runs, "aggregate": aggregate(runs)}


def _fmt(value, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


METRICS = ("row_macro_f1", "event_f1", "point_f1_20ms", "point_f1_50ms", "point_precision_50ms", "fit_seconds", "epochs", "peak_rss_mb")


def aggregate(runs: list[dict]) -> dict:
    """Mean / min / max over seeds per dataset and system."""
    out: dict = {}
    for row in runs:
        out.setdefault(row["dataset"], {}).setdefault(row["system"], []).append(row)
    summary: dict = {}
    for name, systems in out.items():
        for system, rows in systems.items():
            figures = {}
            for metric in METRICS:
                values = [r[metric] for r in rows if r.get(metric) is not None]
                if values:
                    figures[metric] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
            summary.setdefault(name, {})[system] = {"seeds": [r["seed"] for r in rows], **figures}
    return summary


def render(results: dict) -> str:
    """Side-by-side table: one line per dataset, seed and system, then the mean over seeds."""
    headers = ["dataset", "seed", "system", "row macro F1", "event F1@IoU.5", "point F1 ±20ms", "point F1 ±50ms", "point P ±50ms", "train s", "epochs", "trainer peak MB"]
    rows = []

    def line(name, seed, system, get):
        return [
            name, seed, SYSTEMS[system], _fmt(get("row_macro_f1")), _fmt(get("event_f1")), _fmt(get("point_f1_20ms")),
            _fmt(get("point_f1_50ms")), _fmt(get("point_precision_50ms")), _fmt(get("fit_seconds"), "{:.1f}"),
            _fmt(get("epochs"), "{:.0f}" if seed != "mean" else "{:.1f}"), _fmt(get("peak_rss_mb"), "{:.0f}"),
        ]

    for name in dict.fromkeys(r["dataset"] for r in results["runs"]):
        for row in (r for r in results["runs"] if r["dataset"] == name):
            rows.append(line(name, row["seed"], row["system"], row.get))
        for system, figures in results["aggregate"].get(name, {}).items():
            rows.append(line(name, "mean", system, lambda metric, figures=figures: figures[metric]["mean"] if metric in figures else None))
    return table(headers, rows)
