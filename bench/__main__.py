"""``python -m bench``: quality and speed of ts-segmenter vs the seed's algorithm (issue 4).

Parts (``--only`` takes a comma-separated list; ``speed`` means throughput,serving,rollout):

* ``quality``: train both systems on each dataset's train split for every seed, score the test split;
* ``throughput``: predictor rows/s on a 100k-row × 6-channel series vs the seed's predict path;
* ``serving``: /predict latency through the gateway vs direct V2 calls, a 100k-row task, a webhook
  burst, gateway and predictor memory (real server processes on 127.0.0.1);
* ``rollout``: START_TRAINING → new version served, through a real Label Studio.

Writes ``bench/results/latest.json``; a full run (no ``--only``/``--datasets``/``--seeds``/``--quick``)
also rewrites ``docs/benchmarks.md`` (``--docs`` forces it, ``--no-docs`` prevents it). Missed targets
do not fail the run; the exit code is 1 only when a part crashed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import machine, run_child, tail
from bench.data import DATASETS, REPO

RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
PARTS = ("quality", "throughput", "serving", "rollout")
GROUPS = {"speed": ("throughput", "serving", "rollout"), "all": PARTS}

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="all", help=f"parts to run: {', '.join(PARTS)}, speed or all (default)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="datasets for the quality part")
    parser.add_argument("--seeds", default=None, help="seeds for the quality part (default 0,1,2; 0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one seed, fewer latency samples (for development)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None, help="rewrite docs/benchmarks.md (default: only on a full run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="results file")
    args = parser.parse_args(argv)
    parts: list[str] = []
    for name in args.only.split(","):
        name = name.strip()
        if name in GROUPS:
            parts += GROUPS[name]
        elif name in PARTS:
            parts.append(name)
        else:
            parser.error(f"unknown part {name!r}")
    args.parts = [p for p in PARTS if p in parts]
    args.dataset_list = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.dataset_list if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}")
    args.seed_list = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    args.full = args.only == "all" and args.datasets == ",".join(DATASETS) and args.seeds is None and not args.quick
    return args


def speed_models(results: dict, workdir: Path) -> tuple[Path, Path, dict]:
    """basicmotions seed-0 models of both systems: the quality run's, or freshly trained ones."""
    runs = {r["system"]: Path(r["artifacts"]) for r in (results.get("quality") or {}).get("runs", []) if r["dataset"] == "basicmotions" and r["seed"] == 0}
    memory: dict = {}
    if len(runs) < 2:
        for system in ("ours", "seed"):
            out = workdir / "speed-models" / system
            out.mkdir(parents=True, exist_ok=True)
            log.info("training a basicmotions seed-0 %s model for the speed parts ...", system)
            code, _, peak = run_child(["-m", "bench.worker", "--dataset", "basicmotions", "--system", system, "--seed", "0", "--out", str(out)], out / "worker.log")
            if code != 0:
                raise RuntimeError(f"training the {system} speed model failed ({code}):\n{tail(out / 'worker.log')}")
            runs[system] = out
            memory[system] = round(peak, 1)
    return runs["ours"] / "model", runs["seed"] / "seed_model.pt", memory


def trainer_memory(results: dict, fallback: dict) -> dict:
    """Peak RSS of the training processes, per dataset and system (max over seeds)."""
    out: dict = {}
    for row in (results.get("quality") or {}).get("runs", []):
        figures = out.setdefault(row["dataset"], {})
        figures[row["system"]] = max(figures.get(row["system"], 0.0), row["peak_rss_mb"])
    if not out and fallback:
        out["basicmotions"] = fallback
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    workdir = RESULTS / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    results: dict = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "args": {"parts": args.parts, "datasets": args.dataset_list, "seeds": args.seed_list, "quick": args.quick, "full": args.full},
        "errors": {},
    }
    log.info("bench: parts %s, datasets %s, seeds %s on %s", args.parts, args.dataset_list, args.seed_list, results["machine"]["cpu"])

    def attempt(part: str, action):
        part_started = time.perf_counter()
        try:
            value = action()
        except Exception:  # noqa: BLE001 - one broken part must not lose the others' figures
            log.exception("bench part %s crashed", part)
            results["errors"][part] = traceback.format_exc()
            value = None
        results.setdefault("part_seconds", {})[part] = round(time.perf_counter() - part_started, 1)
        return value

    if "quality" in args.parts:
        from bench import quality

        results["quality"] = attempt("quality", lambda: quality.run(args.dataset_list, args.seed_list, workdir / "quality"))
        if results["quality"]:
            print("\n" + quality.render(results["quality"]) + "\n", flush=True)

    speed: dict = {}
    needs_models = [p for p in ("throughput", "serving") if p in args.parts]
    models = attempt("speed-models", lambda: speed_models(results, workdir)) if needs_models else None
    if models:
        ours_model, seed_model, fallback_memory = models
        if "throughput" in args.parts:
            from bench import speed as throughput

            speed["throughput"] = attempt("throughput", lambda: throughput.run(ours_model, seed_model, repeats=2 if args.quick else 5, seed_repeats=1 if args.quick else 2))
        if "serving" in args.parts:
            from bench import serving

            speed["serving"] = attempt("serving", lambda: serving.run(ours_model, workdir / "serving", quick=args.quick))
        speed["trainer_memory"] = trainer_memory(results, fallback_memory)
    if "rollout" in args.parts:
        from bench import rollout

        (workdir / "rollout").mkdir(parents=True, exist_ok=True)
        speed["rollout"] = attempt("rollout", lambda: rollout.run(workdir / "rollout"))
    if speed:
        results["speed"] = speed

    from bench import report

    results["targets"] = report.evaluate(results)
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))

    if speed:
        print("\n" + report.render_speed(results) + "\n")
    print(report.render_targets(results["targets"]) + "\n")
    print(f"results: {args.out}")
    if args.docs or (args.docs is None and args.full):
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(report.markdown(results))
        print(f"report: {DOCS}")
    if results["errors"]:
        print(f"parts that crashed: {', '.join(results['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
