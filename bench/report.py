"""Targets of issue 4 next to the measured values, and the Markdown report (docs/benchmarks.md)."""

from __future__ import annotations

from bench.common import table
from bench.quality import render as render_quality


def _agg(results: dict, dataset: str, system: str, metric: str, how: str = "mean"):
    try:
        return results["quality"]["aggregate"][dataset][system][metric][how]
    except (KeyError, TypeError):
        return None


def _get(results: dict, *path):
    value = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _target(name: str, measured, limit: float | None, *, at_least: bool, unit: str = "", baseline=None, note: str = "") -> dict:
    if measured is None or limit is None:
        status = "n/a"
    else:
        status = "PASS" if (measured >= limit if at_least else measured <= limit) else "FAIL"
    return {
        "target": name, "limit": f"{'≥' if at_least else '≤'} {limit:.4g}{unit}" if limit is not None else "≤ the seed's", "measured": None if measured is None else round(float(measured), 4),
        "baseline": None if baseline is None else round(float(baseline), 4), "unit": unit, "status": status, "note": note,
    }


def evaluate(results: dict) -> list[dict]:
    """Every target of issue 4 with its measured value and PASS / FAIL (n/a when not measured)."""
    seeds = len(_get(results, "quality", "aggregate", "basicmotions", "ours", "seeds") or [])
    seeds_note = f"{seeds} seed(s)" if seeds else ""
    gait_seeds = len(_get(results, "quality", "aggregate", "gait_events", "ours", "seeds") or [])
    gait_note = f"{gait_seeds} seed(s)" if gait_seeds else ""
    throughput = _get(results, "speed", "throughput") or {}
    serving = _get(results, "speed", "serving") or {}
    targets = [
        _target("basicmotions event F1 @IoU0.5, mean of seeds", _agg(results, "basicmotions", "ours", "event_f1"), 0.95, at_least=True,
                baseline=_agg(results, "basicmotions", "seed", "event_f1"), note=seeds_note),
        _target("basicmotions event F1 @IoU0.5, worst seed", _agg(results, "basicmotions", "ours", "event_f1", "min"), 0.90, at_least=True,
                baseline=_agg(results, "basicmotions", "seed", "event_f1", "min"), note=seeds_note),
        _target("basicmotions per-row macro F1, mean of seeds", _agg(results, "basicmotions", "ours", "row_macro_f1"), 0.97, at_least=True,
                baseline=_agg(results, "basicmotions", "seed", "row_macro_f1"),
                note=_notes(seeds_note, "worst", _agg(results, "basicmotions", "ours", "row_macro_f1", "min"))),
        _target("gait_events point F1 ±50 ms, mean of seeds", _agg(results, "gait_events", "ours", "point_f1_50ms"), 0.98, at_least=True,
                baseline=_agg(results, "gait_events", "seed", "point_f1_50ms"), note=_notes(gait_note, "worst", _agg(results, "gait_events", "ours", "point_f1_50ms", "min"))),
        _target("gait_events point F1 ±20 ms, mean of seeds", _agg(results, "gait_events", "ours", "point_f1_20ms"), 0.95, at_least=True,
                baseline=_agg(results, "gait_events", "seed", "point_f1_20ms"), note=_notes(gait_note, "worst", _agg(results, "gait_events", "ours", "point_f1_20ms", "min"))),
        _target("gait_events point precision ±50 ms (no spurious events), mean", _agg(results, "gait_events", "ours", "point_precision_50ms"), 0.97,
                at_least=True, baseline=_agg(results, "gait_events", "seed", "point_precision_50ms"),
                note=_notes(gait_note, "worst", _agg(results, "gait_events", "ours", "point_precision_50ms", "min"))),
        _target("predictor rows/s vs the seed's predict path (100k × 6)", throughput.get("speedup"), 20, at_least=True, unit="×",
                note=f"{_fmt(_get(throughput, 'ours', 'rows_per_s'))} vs {_fmt(_get(throughput, 'seed', 'rows_per_s'))} rows/s"),
        _target("one 100k-row task through the gateway", _get(serving, "big_task", "gateway_seconds_median"), 1.0, at_least=False, unit=" s",
                note=f"direct V2 call {_fmt(_get(serving, 'big_task', 'direct_v2_seconds_median'))} s"),
        _target("gateway overhead over a direct predictor call, p50", _get(serving, "latency", "gateway_overhead_p50_ms"), 2.0, at_least=False, unit=" ms",
                note=f"CSV read+parse alone {_fmt(_get(serving, 'latency', 'gateway_csv_parse', 'read_series_p50_ms'))} ms; "
                     f"a bare Python proxy adds {_fmt(_get(serving, 'latency', 'bare_forwarder', 'overhead_p50_ms'))} ms"),
        _target("basicmotions training time vs the seed's (mean s)", _agg(results, "basicmotions", "ours", "fit_seconds"), _agg(results, "basicmotions", "seed", "fit_seconds"),
                at_least=False, unit=" s", baseline=_agg(results, "basicmotions", "seed", "fit_seconds"), note="limit = the seed's mean"),
        _target("gait_events training time vs the seed's (mean s)", _agg(results, "gait_events", "ours", "fit_seconds"), _agg(results, "gait_events", "seed", "fit_seconds"),
                at_least=False, unit=" s", baseline=_agg(results, "gait_events", "seed", "fit_seconds"), note="limit = the seed's mean"),
        _target("START_TRAINING → new version served (basicmotions, real LS)", _get(results, "speed", "rollout", "start_training_to_served_seconds"), 30, at_least=False, unit=" s",
                note=f"fit {_fmt(_get(results, 'speed', 'rollout', 'trainer_timings', 'fit_s'))} s"),
        _target("gateway peak RSS", _get(serving, "gateway_memory", "peak_rss_mb"), 150, at_least=False, unit=" MB",
                note=f"after start {_fmt(_get(serving, 'gateway_started_rss', 'rss_mb'))} MB, now {_fmt(_get(serving, 'gateway_memory', 'rss_mb'))} MB"),
        _target("predictor RSS per extra loaded project", _get(serving, "predictor_projects", "mb_per_extra_project"), 10, at_least=False, unit=" MB"),
    ]
    return targets


def _notes(prefix: str, label: str, value) -> str:
    parts = [prefix] if prefix else []
    if value is not None:
        parts.append(f"{label} {_fmt(value)}")
    return ", ".join(parts)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def render_targets(targets: list[dict]) -> str:
    """The targets as a table."""
    def fine(value):
        return f"{value:.4f}" if isinstance(value, float) and abs(value) <= 1 else _fmt(value)

    rows = [[t["target"], t["limit"], fine(t["measured"]), fine(t["baseline"]), t["status"], t["note"]] for t in targets]
    return table(["target (issue 4)", "limit", "ts-segmenter", "seed baseline", "status", "note"], rows)


def render_speed(results: dict) -> str:
    """The speed, latency and memory figures as one table."""
    t = _get(results, "speed", "throughput") or {}
    s = _get(results, "speed", "serving") or {}
    r = _get(results, "speed", "rollout") or {}
    lat = s.get("latency") or {}
    rows = []

    def add(measure, ours, seed=None, note=""):
        rows.append([measure, _fmt(ours), _fmt(seed), note])

    if t:
        add("predict 100k × 6 rows: rows/s (1 thread)", t["ours"]["rows_per_s"], t["seed"]["rows_per_s"], f"{t['speedup']}×; seed: network+averaging {t['seed']['network_and_averaging_seconds']:.2f} s, grouping and rest {t['seed']['grouping_and_rest_seconds']:.2f} s")
        add("predict 100k × 6 rows: seconds", t["ours"]["seconds"], t["seed"]["seconds"], f"seed {t['seed']['seconds_per_10k_rows']} s per 10k rows; segments {t['ours']['segments']} vs {t['seed']['segments']}")
    if lat:
        for clients in (1, 16):
            d, g = lat.get(f"direct_c{clients}"), lat.get(f"gateway_c{clients}")
            if d and g:
                add(f"1000-row task, {clients} client(s): direct V2 p50 / p99 ms", f"{d['p50_ms']} / {d['p99_ms']}", None, f"{d['requests_per_s']} req/s")
                server = f"; gateway's own mean (its /metrics) {g['server_side_mean_ms']} ms" if "server_side_mean_ms" in g else ""
                add(f"1000-row task, {clients} client(s): gateway /predict p50 / p99 ms", f"{g['p50_ms']} / {g['p99_ms']}", None, f"{g['requests_per_s']} req/s{server}")
        add("gateway overhead p50 ms (gateway p50 − direct p50, 1 client)", lat.get("gateway_overhead_p50_ms"), None, f"CSV read+parse alone {_get(lat, 'gateway_csv_parse', 'read_series_p50_ms')} ms")
        if lat.get("cpu_ms_per_request_c1"):
            cpu = lat["cpu_ms_per_request_c1"]
            add("server CPU ms per request, 1 client: gateway /predict / predictor V2 infer", f"{cpu.get('gateway')} / {cpu.get('predictor')}", None,
                "user + system time from /proc over the 1-client run")
        if lat.get("bare_forwarder"):
            floor = lat["bare_forwarder"]
            add("floor: bare Python proxy overhead p50 ms (forwarded p50 − direct p50, 1 client)", floor["overhead_p50_ms"], None,
                f"{floor['forwarder_cpu_ms_per_request']} ms CPU per request; `bench/forwarder.py` relays the same V2 call")
    if s.get("big_task"):
        b = s["big_task"]
        add("100k-row task through the gateway, s (median)", b["gateway_seconds_median"], None, f"direct V2 {b['direct_v2_seconds_median']} s; {b['regions']} regions")
    for kind, w in (s.get("webhook") or {}).items():
        started = _get(w, "trainings", "trainings_started")
        add(f"/webhook ack, burst of 100 {kind} events: p50 / p99 / max ms", f"{w['p50_ms']} / {w['p99_ms']} / {w['max_ms']}", None,
            f"burst {w['burst_seconds']} s; server-side mean {w.get('server_side_mean_ms')} ms; HTTP {w['status_codes']}"
            + (f"; trainings started {started}" if started is not None else ""))
    if r:
        add("START_TRAINING → served, s (real LS, basicmotions)", r.get("start_training_to_served_seconds"), None,
            f"trainer process {r.get('trainer_process_seconds')} s: {r.get('trainer_timings')}")
    if s.get("gateway_memory"):
        add("gateway RSS MB: after start / now / peak", f"{_get(s, 'gateway_started_rss', 'rss_mb')} / {s['gateway_memory']['rss_mb']} / {s['gateway_memory']['peak_rss_mb']}", None, "peak after the 100k-row task and the webhook burst")
    if s.get("predictor_projects"):
        p = s["predictor_projects"]
        add(f"predictor RSS MB: 1 project / {p['projects']} projects", f"{p['one_project']['rss_mb']} / {p['many_projects']['rss_mb']}", None, f"{p['mb_per_extra_project']} MB per extra project")
    for point in s.get("memory_timeline") or []:
        add(f"RSS MB {point['phase']}: gateway / predictor (now, peak)",
            f"{point['gateway']['rss_mb']}, {point['gateway']['peak_rss_mb']} / {point['predictor']['rss_mb']}, {point['predictor']['peak_rss_mb']}", None, "")
    trainer = _get(results, "speed", "trainer_memory") or {}
    for name, figures in trainer.items():
        add(f"trainer peak RSS MB ({name}; training + test prediction)", figures.get("ours"), figures.get("seed"), "ru_maxrss of the training process")
    return table(["measure", "ts-segmenter", "seed baseline", "note"], rows)


def markdown(results: dict) -> str:
    """docs/benchmarks.md."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "_Written by `make bench` (`python -m bench`); the tables below are from the latest full run and are",
        "overwritten by the next one. Raw figures: `bench/results/latest.json`._",
        "",
        "The benchmark compares ts-segmenter's defaults with a re-implementation of the seed's algorithm",
        "(`bench/baseline.py`: batch 16, stopping judged on the training windows, no normalisation, windows",
        "across task boundaries, 50 %-overlap averaging, argmax runs, per-row pandas grouping). Both train on",
        "the train split of each dataset in `../shared/data` and are scored on the test split by",
        "`../shared/tools/score_segments.py` (IoU 0.5; point tolerances ±20 and ±50 ms). ts-segmenter runs",
        "`trainer.fit.fit` with `TrainingSettings(seed=s)` and nothing else; no per-dataset settings.",
        "Both use one torch thread (the trainer's default `NUM_THREADS=1`; the baseline is given the same).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM; GPU: {m['cuda'] or 'none (CPU only)'}",
        f"- Python {m['python']}, torch {m['torch']}, {m['platform']}",
        f"- run: {results['started_at']} → {results['finished_at']} ({results['wall_seconds']:.0f} s); "
        f"load average at start {m['load_average_at_start']}, at end {results.get('load_average_at_end')}",
        f"- options: parts {results['args']['parts']}, datasets {results['args']['datasets']}, seeds {results['args']['seeds']}"
        f"{', quick' if results['args']['quick'] else ''}",
        "- the machine is shared with other work: wall-clock figures carry that noise.",
        "",
        "## Targets (issue 4)",
        "",
        render_targets(results["targets"]),
        "",
    ]
    if results.get("quality"):
        lines += ["## Quality (test split)", "", render_quality(results["quality"]), "",
                  "`train s` is the wall time of `fit` alone (data already parsed); `trainer peak MB` is the peak RSS",
                  "of the process that trained and predicted the test split.", ""]
    if results.get("speed"):
        lines += ["## Speed, latency and memory", "", render_speed(results), "", *NOTES, ""]
    if results.get("errors"):
        lines += ["## Errors in this run", ""] + [f"- {part}: `{error.splitlines()[-1] if error else ''}`" for part, error in results["errors"].items()] + [""]
    if not m.get("cuda"):
        lines += ["## GPU", "", "No GPU was available to this run; all figures are CPU figures.", ""]
    return "\n".join(lines)


NOTES = [
    "What each number includes:",
    "",
    "- **rows/s**: in-process, one torch thread, same series (100k rows of shuffled basicmotions test",
    "  instances plus noise, 6 channels), both models trained on basicmotions seed 0 (hidden 64, window 50).",
    "  ts-segmenter: `TrainedModel.segments(values)` (normalise, windows, network, overlap averaging,",
    "  decoding). Seed: its predict path from an already parsed DataFrame (network over all windows,",
    "  averaging loop, argmax, per-row `iterrows` grouping, region building). CSV parsing is excluded from both.",
    "  Each side's figure is its fastest run (5 of ours, 2 of the seed's): interference on a shared",
    "  machine only slows a run down.",
    "- **direct V2**: a binary V2 `infer` call to the real predictor server with the already parsed",
    "  `[1000, 6]` FP32 tensor (HTTP + tensor decoding + model + response). **gateway /predict**: a Label",
    "  Studio `/predict` request naming the task CSV as a local file; the gateway reads and parses the",
    "  CSV, makes the same V2 call and maps segments to LS regions. The overhead is the difference of",
    "  the p50s (1 client, calls alternating); the CSV read+parse alone is measured in-process.",
    "  **server CPU per request**: each server's user + system time (`/proc/<pid>/stat`) over the",
    "  1-client run, divided by the requests it served (the predictor serves both kinds of call).",
    "  **floor**: `bench/forwarder.py`, a pass-through proxy on the gateway's own stack (uvicorn,",
    "  Starlette, aiohttp) that relays the direct V2 call byte for byte, measured the same way: what a",
    "  second HTTP hop in Python costs on this machine before the gateway does any work of its own.",
    "- The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams",
    "  (`bench/rawhttp.py`; httpx's async client alone cost milliseconds per request under",
    "  concurrency). It runs on the same 2 cores as both servers, so 16-client figures are CPU-bound.",
    "  \"gateway's own mean\" is the gateway's `/metrics` latency histogram over the same requests.",
    "- **/webhook**: 100 concurrent POSTs on pre-opened connections, first 100 ignored actions",
    "  (`TASKS_CREATED`), then 100 training actions (ANNOTATION_CREATED / START_TRAINING alternating)",
    "  for a project whose Label Studio does not exist: the first launches a trainer process, the",
    "  rest coalesce into one follow-up; both fail fast and are waited for before memory is read.",
    "  server-side mean is from the gateway's own `/metrics` histogram.",
    "- **START_TRAINING → served**: real Label Studio 1.23.2 with the 4 basicmotions train CSVs imported",
    "  and annotated; the gateway in local mode (it spawns its predictor and the trainer); from the",
    "  `/webhook` POST until `/setup` reports the new version (trainer start, LS download, fit, artifact",
    "  write, predictor load, gateway refresh), confirmed by a `/predict` answered by that version.",
    "- **memory**: VmRSS / VmHWM from `/proc`. Predictor per project: a fresh predictor, 3 inferences",
    "  per project, 1 then 11 projects loaded through the repository API.",
]
