"""A real Label Studio (LS 1.23.2) for end-to-end tests, started on 127.0.0.1.

``scripts/install-label-studio.sh`` builds (once, cached under ``$TS_SEGMENTER_CACHE`` or
``~/.cache/ts-segmenter``) a separate venv with ``label-studio`` and a template data dir on which
the database migrations have already run. :class:`LabelStudio` copies that template into a fresh
temporary directory and starts ``label-studio start`` on a free loopback port, so a warm start
takes seconds instead of the ~90 s of a cold migration. The LS instance is real: the tests talk
to it over HTTP only.

Use it as a context manager, or through the session-scoped ``label_studio`` pytest fixture::

    pytest_plugins = ["support.labelstudio"]

    def test_something(label_studio):
        project_id = label_studio.create_project("demo", label_config)

Nothing here ever skips: when the cache is missing it is built (needs PyPI), and when LS cannot
start the test errors with the tail of the LS log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

LS_VERSION = "1.23.2"
SDK_VERSION = "2.1.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-label-studio.sh"
CREDENTIALS_FILE = "ts-segmenter-credentials.json"

#: Feature flag that makes LS validate predictions against the label config (400 on bad ones).
PREDICTION_VALIDATION_FLAG = "fflag_feat_utc_210_prediction_validation_15082025"

# LS reads these bare names besides the LABEL_STUDIO_-prefixed ones; none may leak in from the caller.
_LEAKY_ENV = (
    "HOST",
    "PORT",
    "USERNAME",
    "PASSWORD",
    "DEBUG",
    "USER_TOKEN",
    "BASE_DATA_DIR",
    "DATABASE_NAME",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DB",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LOG_LEVEL",
)


def cache_dir() -> Path:
    """The cache root shared with ``scripts/install-label-studio.sh``."""
    return Path(os.environ.get("TS_SEGMENTER_CACHE") or Path.home() / ".cache" / "ts-segmenter")


def ensure_installed(timeout_s: float = 1800.0) -> tuple[Path, Path]:
    """Run the (idempotent, locked) install script; return ``(venv, template)``.

    A warm cache costs well under a second. A cold one installs LS from PyPI (~3 min) and migrates
    a template data dir (~40-100 s). Raises ``RuntimeError`` with the script's output on failure.
    """
    proc = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT} failed (rc={proc.returncode}):\n{proc.stdout[-6000:]}")
    paths = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.startswith(("venv: ", "template: ")))
    return Path(paths["venv"]), Path(paths["template"])


def _free_port() -> int:
    """A loopback port that nothing listens on right now (LS checks ``localhost`` the same way)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not _port_open("127.0.0.1", port) and not _port_open("localhost", port):
            return port
    raise RuntimeError("no free loopback port found")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening_ports(pid: int) -> set[int] | None:
    """TCP ports in LISTEN state owned by ``pid`` (Linux /proc); ``None`` where /proc is unavailable."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports
    except OSError:
        return None


def _poll(condition, *, timeout_s: float, interval_s: float = 0.2, what: str) -> Any:
    """Call ``condition()`` until it returns something truthy or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class LabelStudioError(RuntimeError):
    """LS failed to start, or answered an API call unexpectedly (the message holds the log tail)."""


class _PortTaken(LabelStudioError):
    """LS found its port in use and moved to another one (or another process owns the port)."""


_SERVING_RE = re.compile(rb"Starting development server at http://127\.0\.0\.1:(\d+)/")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux), so no LS is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LabelStudio:
    """One real Label Studio process on 127.0.0.1 with its own throw-away data dir.

    Attributes after :meth:`start`: ``url`` (``http://127.0.0.1:<port>``), ``port``, ``pid``,
    ``api_key`` (the admin's legacy token, sent as ``Authorization: Token <key>``), ``email``,
    ``password``, ``data_dir``, ``log_path`` and ``timings`` (seconds: install check, copy, start).

    On Linux LS gets SIGTERM when the thread that started it dies (``PR_SET_PDEATHSIG``), so a
    killed test run leaves no LS behind; start it from a thread that outlives its use (the main one).
    """

    def __init__(
        self,
        *,
        start_timeout_s: float = 180.0,
        extra_env: dict[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        """Configure (not start) an instance.

        ``extra_env`` is added to LS's environment (e.g. ``ML_TIMEOUT_PREDICT``); ``workdir`` is
        where the data dir and log go (default: a new temp dir, removed on :meth:`stop`).
        """
        self.start_timeout_s = start_timeout_s
        self.extra_env = dict(extra_env or {})
        self._workdir_given = workdir
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._pat: str | None = None
        self._http: httpx.Client | None = None
        self.url = ""
        self.port = 0
        self.pid = 0
        self.api_key = ""
        self.email = ""
        self.password = ""
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LabelStudio:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LabelStudio:
        """Install if needed, copy the template, start LS and wait for ``/health``; return ``self``."""
        t0 = time.monotonic()
        venv, template = ensure_installed()
        self.timings["install_check_s"] = time.monotonic() - t0
        creds = json.loads((template / CREDENTIALS_FILE).read_text())
        self.email, self.password, self.api_key = creds["email"], creds["password"], creds["legacy_token"]

        if self._workdir_given is not None:
            self._workdir = Path(self._workdir_given)
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="ts-segmenter-ls-"))
        self.data_dir = self._workdir / "data"
        t1 = time.monotonic()
        shutil.copytree(template, self.data_dir)
        self.timings["copy_s"] = time.monotonic() - t1

        try:
            for attempt in range(3):  # the port can be taken between our check and LS's bind: retry
                self.port = _free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.log_path = self._workdir / f"label-studio-{attempt}.log"
                t2 = time.monotonic()
                self._spawn(venv)
                try:
                    self._wait_healthy()
                except _PortTaken:
                    self._kill()
                    if attempt == 2:
                        raise
                    continue
                self.timings["start_s"] = time.monotonic() - t2
                self.timings["total_s"] = time.monotonic() - t0
                return self
        except BaseException:
            self.stop(remove_workdir=False)  # keep the log for the error message / post-mortem
            raise
        raise AssertionError("unreachable")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_") and k not in _LEAKY_ENV}
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_USERNAME": self.email,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.api_key,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "ML_BLOCK_LOCAL_IP": "false",
                "SSRF_PROTECTION_ENABLED": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "COLLECT_ANALYTICS": "false",
                "LATEST_VERSION_CHECK": "false",
                PREDICTION_VALIDATION_FLAG: "true",
                "PYTHONUNBUFFERED": "1",  # the log shows the serving port at once, and is complete on a crash
            }
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, venv: Path) -> None:
        assert self.log_path is not None and self.data_dir is not None
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in _kill()
        self._proc = subprocess.Popen(
            [
                str(venv / "bin" / "label-studio"),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=self.data_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest only; it stops LS itself
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.pid = self._proc.pid

    def _wait_healthy(self) -> None:
        """Poll ``/health`` until it answers 200, LS exits, LS reports another port, or the deadline."""
        assert self._proc is not None and self.log_path is not None
        proc = self._proc

        def serving_port() -> int | None:
            m = _SERVING_RE.search(self.log_path.read_bytes())
            return int(m.group(1)) if m else None

        def healthy() -> bool:
            if proc.poll() is not None:
                raise LabelStudioError(f"Label Studio exited with rc={proc.returncode} before /health answered\n{self.log_tail()}")
            port = serving_port()
            if port is not None and port != self.port:
                raise _PortTaken(f"Label Studio moved from port {self.port} to {port}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=2.0)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and port == self.port

        try:
            _poll(healthy, timeout_s=self.start_timeout_s, what=f"{self.url}/health")
        except TimeoutError as e:
            raise LabelStudioError(f"{e}\n{self.log_tail()}") from e
        # /health answered on our port and LS says it serves there: check that it is OUR process.
        ports = _listening_ports(self.pid)
        if ports is not None and self.port not in ports:
            raise _PortTaken(f"pid {self.pid} listens on {sorted(ports)}, not on {self.port}")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, remove_workdir: bool | None = None) -> None:
        """Stop LS by its PID (SIGTERM, then SIGKILL after 10 s) and remove the temp dir.

        The temp dir is kept when ``remove_workdir`` is False, when a ``workdir`` was given, or
        when ``TS_SEGMENTER_KEEP_LS=1`` (to read the log after a failure).
        """
        if self._http is not None:
            self._http.close()
            self._http = None
        self._kill()
        if remove_workdir is None:
            remove_workdir = self._workdir_given is None and os.environ.get("TS_SEGMENTER_KEEP_LS") != "1"
        if remove_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """Whether the LS process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def listening_ports(self) -> set[int] | None:
        """TCP ports the LS process listens on (Linux /proc), or ``None`` where that cannot be read."""
        return _listening_ports(self.pid) if self.running else set()

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the LS log, labelled with its path (for failure messages)."""
        if self.log_path is None or not self.log_path.exists():
            return "(no Label Studio log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- tail of {self.log_path} ---\n" + "\n".join(text)

    # ------------------------------------------------------------------ clients
    def sdk(self, api_key: str | None = None, timeout: float = 60.0):
        """A ``label_studio_sdk.LabelStudio`` client (legacy key by default; a PAT works too)."""
        from label_studio_sdk import LabelStudio as SdkClient

        return SdkClient(base_url=self.url, api_key=api_key or self.api_key, timeout=timeout)

    @property
    def http(self) -> httpx.Client:
        """An ``httpx.Client`` on :attr:`url` that sends ``Authorization: Token <api_key>``."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {self.api_key}"}, timeout=60.0)
        return self._http

    def _check(self, r: httpx.Response, *expected: int) -> httpx.Response:
        if r.status_code not in expected:
            raise LabelStudioError(f"{r.request.method} {r.request.url} -> {r.status_code} (expected {expected}): {r.text[:2000]}")
        return r

    # ------------------------------------------------------------------ helpers for tests
    def create_project(self, title: str, label_config: str) -> int:
        """Create a project; return its id."""
        return int(self.sdk().projects.create(title=title, label_config=label_config).id)

    def task_ids(self, project_id: int) -> list[int]:
        """Ids of all tasks of a project."""
        return [int(t.id) for t in self.sdk().tasks.list(project=project_id)]

    def task(self, task_id: int) -> dict[str, Any]:
        """One task as LS's REST API returns it (``data``, ``annotations``, ...)."""
        return self._check(self.http.get(f"/api/tasks/{task_id}"), 200).json()

    def import_csv_task(self, project_id: int, csv_path: str | os.PathLike[str]) -> int:
        """Upload a CSV as ONE time-series task (the UI's "treat CSV as time series"); return its id.

        Two steps, as the LS UI does it: upload without committing
        (``POST /api/projects/<id>/import?commit_to_project=false``), then
        ``POST /api/projects/<id>/reimport {"file_upload_ids": [...], "files_as_tasks_list": false}``.
        The task's ``data.csv_url`` is then a relative ``/data/upload/<project>/<uuid>-<name>.csv``.
        """
        path = Path(csv_path)
        before = set(self.task_ids(project_id))
        with path.open("rb") as fh:
            r = self.http.post(
                f"/api/projects/{project_id}/import",
                params={"commit_to_project": "false"},
                files={"file": (path.name, fh, "text/csv")},
            )
        upload_ids = self._check(r, 200, 201).json()["file_upload_ids"]
        r = self.http.post(
            f"/api/projects/{project_id}/reimport",
            json={"file_upload_ids": upload_ids, "files_as_tasks_list": False},
        )
        body = self._check(r, 200, 201).json()
        new = sorted(set(self.task_ids(project_id)) - before)
        if body.get("task_count") != 1 or len(new) != 1:
            raise LabelStudioError(f"expected one new task from {path.name}, got {new}; reimport said {body}")
        return new[0]

    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> int:
        """Save an annotation (list of regions) on a task as the admin; return the annotation id."""
        return int(self.sdk().annotations.create(id=task_id, result=result).id)

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        """All annotations of a task, as plain dicts."""
        return [a.model_dump() for a in self.sdk().annotations.list(id=task_id)]

    def connect_ml_backend(self, project_id: int, url: str, title: str = "ts-segmenter") -> int:
        """Connect an ML backend to a project (LS calls its /health and /setup now); return its id."""
        return int(self.sdk().ml.create(project=project_id, url=url, title=title, is_interactive=True).id)

    def train(self, ml_backend_id: int) -> None:
        """Press "Start training": LS sends START_TRAINING to the backend's /webhook."""
        self.sdk().ml.train(id=ml_backend_id)

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int] | None = None) -> None:
        """Data Manager action "Retrieve predictions" for all tasks, or for ``task_ids`` only."""
        selected = {"all": True} if task_ids is None else {"all": False, "included": [int(t) for t in task_ids]}
        self.sdk().actions.create(id="retrieve_tasks_predictions", project=project_id, selected_items=selected)

    def predictions(self, task_id: int) -> list[dict[str, Any]]:
        """The predictions LS stored for a task, as plain dicts (``result``, ``score``, ``model_version``)."""
        return [p.model_dump() for p in self.sdk().predictions.list(task=task_id)]

    def personal_access_token(self) -> str:
        """A personal access token (a refresh JWT) for the admin user; created once, then cached.

        ``POST /api/token/`` (``ls.tokens.create()``) with the legacy key. LS allows one live PAT
        per user (a second POST answers 409), so the token is cached on this instance. JWT API
        tokens are enabled by default for the organisation (``api_tokens_enabled``).
        """
        if self._pat is None:
            self._pat = str(self.sdk().tokens.create().token)
        return self._pat

    def access_token(self, pat: str | None = None) -> str:
        """Exchange a PAT for a short-lived (300 s) access JWT at ``POST /api/token/refresh/``."""
        refresh = pat or self.personal_access_token()
        r = httpx.post(f"{self.url}/api/token/refresh/", json={"refresh": refresh}, timeout=30.0)
        return self._check(r, 200).json()["access"]


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LabelStudio]:
    """A real Label Studio shared by the whole test session (fresh data dir, stopped at the end)."""
    ls = LabelStudio()
    try:
        ls.start()
    except Exception as e:  # noqa: BLE001 - surface as a test error, never a skip
        pytest.fail(f"could not start Label Studio: {e}", pytrace=False)
    try:
        yield ls
    finally:
        ls.stop()
