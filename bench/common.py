"""Helpers shared by the benchmark's parts: child processes, ports, polling, memory, tables."""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.data import REPO

#: Environment variables that would change ts-segmenter's or the servers' defaults; children never inherit them.
_SETTINGS_PREFIXES = ("TRAIN_", "SEQUENCE_SIZE", "HIDDEN_SIZE", "NUM_LAYERS", "BIDIRECTIONAL", "DROPOUT", "BALANCED_ACCURACY_THRESHOLD",
                      "MIN_CLASS_F1_THRESHOLD", "USE_CLASS_WEIGHTS", "BATCH_SIZE", "LEARNING_RATE", "PATIENCE", "MAX_PATIENCE",
                      "VALIDATION_", "SEED", "DEVICE", "NUM_THREADS", "PUBLISHER", "PREDICTOR_", "MODEL_DIR", "LABEL_STUDIO_",
                      "LOCAL_FILES_ROOT", "ORCHESTRATOR", "START_TRAINING_EACH_N_UPDATES", "BASIC_AUTH_", "PORT", "HOST",
                      "KEEP_VERSIONS", "MAX_CONCURRENT_TRAININGS", "PREDICT_CONCURRENCY", "LOG_LEVEL")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark child: defaults only, one OpenMP thread, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_SETTINGS_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_child(args: Sequence[str], log: Path, *, env: dict[str, str] | None = None, timeout: float = 900.0) -> tuple[int, float, float]:
    """Run ``python <args>`` to completion; return ``(exit code, wall seconds, peak RSS in MB)``.

    The peak RSS comes from ``os.wait4`` on that very child (its ``ru_maxrss``).
    """
    started = time.perf_counter()
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env or child_env(), stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = -9
            return -9, time.perf_counter() - started, usage.ru_maxrss / 1024
        time.sleep(0.05)  # polling a child we cannot select() on


def free_port() -> int:
    """A 127.0.0.1 port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll ``condition`` until truthy; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": round(values.get("VmRSS", 0.0), 1), "peak_rss_mb": round(values.get("VmHWM", 0.0), 1)}


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean/max in milliseconds of latencies given in seconds."""
    array = np.asarray(samples, dtype=np.float64) * 1000
    return {
        "n": int(len(array)),
        "p50_ms": round(float(np.percentile(array, 50)), 2),
        "p99_ms": round(float(np.percentile(array, 99)), 2),
        "mean_ms": round(float(array.mean()), 2),
        "max_ms": round(float(array.max()), 2),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        memory_gb = 0.0
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "max_rss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (also readable on a terminal)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
