"""Predictor throughput: rows/s on a 100k-row × 6-channel series, ts-segmenter vs the seed's predict path.

Both run in this process on one torch thread with a model trained on basicmotions (seed 0,
hidden size 64, window 50 for both):

* ts-segmenter: ``TrainedModel.segments(values)``: normalisation, windowed network, overlap
  averaging and decoding into segments (what the predictor server runs per request).
* baseline: the seed's predict path from an already parsed ``DataFrame`` (CSV parsing is
  excluded for both): network over all windows, averaging loop, argmax, per-row grouping loop.

Each side's figure is its fastest run: on a shared machine interference only ever slows a run
down, so the minimum is the least noisy estimate of what the code costs (as ``timeit`` advises).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import torch

from bench.baseline import SeedSegmenter
from bench.data import dataset, synthetic_series
from tscore.model import TrainedModel

log = logging.getLogger("bench")

ROWS = 100_000


def run(ours_model: Path, seed_model: Path, *, repeats: int = 5, seed_repeats: int = 2, rows: int = ROWS) -> dict:
    """Time both predict paths on the same synthetic series; return rows/s and the ratio."""
    torch.set_num_threads(1)
    values = synthetic_series(rows)
    channels = list(dataset("basicmotions").config.channels)

    model = TrainedModel.load(ours_model)
    model.segments(values[:5000])  # warm-up: first-call allocations
    ours_times, segment_counts = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        segments, _ = model.segments(values)
        ours_times.append(time.perf_counter() - started)
        segment_counts.append(len(segments))
    ours_s = min(ours_times)

    baseline = SeedSegmenter.from_state(torch.load(seed_model, weights_only=False))
    frame = pd.DataFrame(values, columns=channels)
    frame.insert(0, "time", [i / 10 for i in range(len(values))])
    baseline.predict_probs(values[:5000])
    seed_times, network_times, regions = [], [], []
    for _ in range(seed_repeats):
        started = time.perf_counter()
        baseline.predict_probs(values)
        network_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        regions = baseline.predict_frame(frame.copy(), "time")
        seed_times.append(time.perf_counter() - started)
    seed_s = min(seed_times)
    network_s = min(network_times)

    result = {
        "rows": rows,
        "channels": values.shape[1],
        "torch_threads": torch.get_num_threads(),
        "ours": {
            "seconds": round(ours_s, 4), "all_seconds": [round(t, 4) for t in ours_times], "rows_per_s": round(rows / ours_s),
            "segments": segment_counts[-1], "window": model.window, "hidden_size": model.net.spec.hidden_size,
            "bidirectional": model.net.spec.bidirectional, "num_layers": model.net.spec.num_layers,
        },
        "seed": {
            "seconds": round(seed_s, 4), "all_seconds": [round(t, 4) for t in seed_times], "rows_per_s": round(rows / seed_s),
            "network_and_averaging_seconds": round(network_s, 4), "grouping_and_rest_seconds": round(max(0.0, seed_s - network_s), 4),
            "seconds_per_10k_rows": round(seed_s / rows * 10_000, 3), "segments": len(regions),
            "window": baseline.settings.sequence_size, "hidden_size": baseline.settings.hidden_size,
        },
    }
    result["speedup"] = round(result["ours"]["rows_per_s"] / result["seed"]["rows_per_s"], 1)
    log.info(
        "throughput: ts-segmenter %.0f rows/s (%.3f s), seed %.0f rows/s (%.3f s, of which network %.3f s): %.1fx",
        result["ours"]["rows_per_s"], ours_s, result["seed"]["rows_per_s"], seed_s, network_s, result["speedup"],
    )
    return result
