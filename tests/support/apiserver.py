"""A real Kubernetes API server (kube-apiserver v1.20 + etcd) for tests.

Load it as a pytest plugin from a test module or ``conftest.py``::

    pytest_plugins = ["support.apiserver"]

    def test_something(apiserver):
        core = kubernetes.client.CoreV1Api(apiserver.api_client())
        ...

The session-scoped :func:`apiserver` fixture finds the cached binaries (or
builds them with ``scripts/build-kube-apiserver.sh``; the first build takes
7-13 minutes, later runs reuse ``~/.cache/ts-segmenter``), then starts etcd,
kube-apiserver and, by default, kube-controller-manager on free 127.0.0.1
ports in a temporary directory. When the binaries cannot be built, tests are
skipped - except under ``CI=true``, where the fixture fails loudly instead.

Nothing runs workloads: there is no kubelet and no scheduler, so Pods and
PVCs stay Pending. Tests play the kubelet by writing status (a Job's
``/status`` subresource, or a Pod's phase, which the ``job`` controller then
turns into Job conditions). See ``/work/shared/docs/APISERVER.md`` for the
limits of a 1.20 server.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client
import pytest
import yaml
from kubernetes.client.rest import ApiException

__all__ = [
    "ApiServer",
    "ApiServerError",
    "ApiServerUnavailable",
    "apiserver",
    "ensure_binaries",
    "running_under_ci",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-kube-apiserver.sh"
#: Environment variable naming a directory that already holds
#: ``kube-apiserver`` and ``kube-controller-manager`` (skips the build script).
BIN_DIR_ENV = "TS_SEGMENTER_KUBE_BIN_DIR"

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
SERVING_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
)
DEFAULT_CONTROLLERS = (
    "namespace",
    "garbagecollector",
    "serviceaccount",
    "serviceaccount-token",
    "job",
)

ISVC_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_CRD_NAME = f"{ISVC_PLURAL}.{ISVC_GROUP}"

_POLL_INTERVAL = 0.1
_STOP_GRACE_SECONDS = 5.0

T = TypeVar("T")


class ApiServerUnavailable(RuntimeError):
    """The kube-apiserver binaries are missing and cannot be built here."""


class ApiServerError(RuntimeError):
    """A component failed to start, or a wait on the API server timed out."""


def running_under_ci() -> bool:
    """Return True when the ``CI`` environment variable is set to a true value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def ensure_binaries(on_build: Callable[[str], None] | None = None) -> Path:
    """Return the directory holding ``kube-apiserver`` and ``kube-controller-manager``.

    Uses ``$TS_SEGMENTER_KUBE_BIN_DIR`` when set, otherwise runs
    ``scripts/build-kube-apiserver.sh``, which answers at once from its cache or
    builds the binaries (minutes) and caches them. ``etcd`` must be on ``PATH``
    afterwards (the script installs Debian's ``etcd-server``).

    Args:
        on_build: called with a progress message when the script has not
            answered within a few seconds (i.e. it is building), and again
            when it is done.

    Raises:
        ApiServerUnavailable: the binaries (or etcd) are missing and the build
            script failed or cannot run; the message carries the reason.
    """
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        bin_dir = Path(override)
    else:
        if sys.platform != "linux":
            raise ApiServerUnavailable(f"building kube-apiserver needs Linux, not {sys.platform}")
        if not BUILD_SCRIPT.is_file():
            raise ApiServerUnavailable(f"build script not found: {BUILD_SCRIPT}")
        if shutil.which("bash") is None:
            raise ApiServerUnavailable("bash is not available to run the build script")
        with tempfile.TemporaryFile(mode="w+", prefix="kube-apiserver-build-") as errors:
            started = time.monotonic()
            proc = subprocess.Popen(
                ["bash", str(BUILD_SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            try:
                stdout, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                if on_build is not None:
                    on_build(f"building kube-apiserver with {BUILD_SCRIPT.name} (takes ~10 min once)")
                stdout, _ = proc.communicate()
            elapsed = time.monotonic() - started
            if proc.returncode != 0:
                errors.seek(0)
                tail = "".join(errors.readlines()[-30:])
                raise ApiServerUnavailable(
                    f"{BUILD_SCRIPT.name} exited with {proc.returncode} after {elapsed:.0f} s:\n{tail}"
                )
        lines = stdout.strip().splitlines()
        if not lines:
            raise ApiServerUnavailable(f"{BUILD_SCRIPT.name} printed no binary directory")
        bin_dir = Path(lines[-1])
        if on_build is not None and elapsed > 5:
            on_build(f"kube-apiserver binaries ready after {elapsed:.0f} s in {bin_dir}")
    for name in ("kube-apiserver", "kube-controller-manager"):
        if not os.access(bin_dir / name, os.X_OK):
            raise ApiServerUnavailable(f"{bin_dir / name} is missing or not executable")
    if shutil.which("etcd") is None:
        raise ApiServerUnavailable("etcd is not on PATH (Debian package etcd-server)")
    return bin_dir


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free loopback ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(_free_port())
    return sorted(ports)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the child if the test process dies without teardown."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _poll(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` until it returns something other than None/False.

    Raises ApiServerError naming ``what`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise ApiServerError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(_POLL_INTERVAL)


_WORKDIR_PREFIX = "ts-segmenter-apiserver-"


def _sweep_stale_workdirs(base: Path) -> None:
    """Delete work dirs left by test processes that were killed (e.g. SIGKILL)."""
    for old in base.glob(f"{_WORKDIR_PREFIX}*"):
        try:
            owner = int((old / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("r", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


class ApiServer:
    """etcd + kube-apiserver (+ optional kube-controller-manager) on 127.0.0.1.

    Use it as a context manager (``with ApiServer() as server: ...``) or call
    :meth:`start` and :meth:`stop`. Everything lives in a private temporary
    directory (certificates, token file, etcd data, kubeconfig, logs) which
    :meth:`stop` removes.

    Authentication is by static bearer tokens: :attr:`admin_token` belongs to
    user ``admin`` in group ``system:masters`` (cluster admin);
    :attr:`user_token` belongs to user ``test-user`` with no groups, so it has
    no rights until a RoleBinding grants some. Authorization is RBAC.

    Attributes:
        bin_dir: directory with ``kube-apiserver`` / ``kube-controller-manager``.
        server_url: ``https://127.0.0.1:<port>`` (valid after :meth:`start`).
        ca_path: CA certificate that signed the serving certificate.
        admin_token: bearer token of the cluster admin.
        user_token: bearer token of ``test-user`` (no rights by default).
        kubeconfig_path: admin kubeconfig (CA embedded).
        log_paths: component name -> log file, for printing tails on failure.
        workdir: the temporary directory (None when stopped).
    """

    #: Group, version and plural of the CRD installed by :meth:`install_isvc_crd`.
    ISVC_GROUP = ISVC_GROUP
    ISVC_VERSION = ISVC_VERSION
    ISVC_PLURAL = ISVC_PLURAL

    def __init__(
        self,
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        controller_manager: bool = True,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_users: Iterable[tuple[str, str, Sequence[str]]] = (),
        extra_apiserver_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        """Configure (but do not start) the server.

        Args:
            bin_dir: where the Kubernetes binaries are; None calls
                :func:`ensure_binaries` (may build them, or raise
                :class:`ApiServerUnavailable`).
            controller_manager: also run kube-controller-manager with
                ``controllers`` (namespace deletion, garbage collection,
                ``default`` ServiceAccounts and their token Secrets, and the
                ``job`` controller which creates Pods for Jobs).
            controllers: value of ``--controllers``.
            extra_users: more static-token users as ``(token, user, groups)``.
            extra_apiserver_args: appended to the kube-apiserver command line,
                e.g. ``["--feature-gates=TTLAfterFinished=true"]``.
            startup_timeout: seconds allowed for each component to get ready.
        """
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.controller_manager = controller_manager
        self.controllers = tuple(controllers)
        self.extra_users = [(t, u, tuple(g)) for t, u, g in extra_users]
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.startup_timeout = startup_timeout

        self.admin_token = secrets.token_hex(24)
        self.user_token = secrets.token_hex(24)
        self._controller_token = secrets.token_hex(24)

        self.workdir: Path | None = None
        self.server_url = ""
        self.port = 0
        self.etcd_url = ""
        self.log_paths: dict[str, Path] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_handles: list[Any] = []

    # ------------------------------------------------------------------ paths
    def _path(self, name: str) -> Path:
        if self.workdir is None:
            raise ApiServerError("the API server is not running")
        return self.workdir / name

    @property
    def ca_path(self) -> Path:
        """Path of the CA certificate (PEM) that clients must trust."""
        return self._path("pki/ca.crt")

    @property
    def kubeconfig_path(self) -> Path:
        """Path of the admin kubeconfig written at start-up."""
        return self._path("admin.kubeconfig")

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ApiServer:
        """Start etcd, kube-apiserver and (optionally) kube-controller-manager.

        Returns once ``/readyz`` answers ``ok`` and, with the controller
        manager, once the ``default`` ServiceAccount of namespace ``default``
        has its token. A port taken between picking and binding is retried.

        Raises:
            ApiServerUnavailable: binaries missing and not buildable.
            ApiServerError: a component exited or did not get ready in time.
        """
        if self.workdir is not None:
            raise ApiServerError("already started")
        if self.bin_dir is None:
            self.bin_dir = ensure_binaries()
        attempts = 3
        for attempt in range(1, attempts + 1):
            self._make_workdir()
            try:
                self._write_pki()
                self._write_tokens()
                self._start_etcd()
                self._start_apiserver()
                self.write_kubeconfig(self.kubeconfig_path, self.admin_token)
                if self.controller_manager:
                    self._start_controller_manager()
                return self
            except _PortClash:
                self.stop()
                if attempt == attempts:
                    raise ApiServerError("could not bind free ports after 3 attempts") from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop all components (SIGTERM, SIGKILL after 5 s) and delete the temp dir."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @property
    def running(self) -> bool:
        """True while every started component is still alive."""
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    # ------------------------------------------------------------------- logs
    def log_tail(self, name: str, lines: int = 40) -> str:
        """Return the last ``lines`` lines of a component's log ('' if none)."""
        path = self.log_paths.get(name)
        return _tail(path, lines) if path else ""

    def format_logs(self, lines: int = 40) -> str:
        """Return the tails of all component logs, each under a header."""
        parts = []
        for name, path in self.log_paths.items():
            parts.append(f"----- {name} ({path}) -----\n{_tail(path, lines)}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- startup
    def _make_workdir(self) -> None:
        # tmpfs makes etcd's fsyncs cheap; fall back to the normal temp dir.
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
        _sweep_stale_workdirs(base)
        self.workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX, dir=base))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        (self.workdir / "pki").mkdir()
        (self.workdir / "logs").mkdir()
        self.log_paths = {}

    def _openssl(self, *args: str) -> None:
        proc = subprocess.run(
            ["openssl", *args],
            cwd=self._path("pki"),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ApiServerError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")

    def _write_pki(self) -> None:
        if shutil.which("openssl") is None:
            raise ApiServerUnavailable("openssl is not installed")
        pki = self._path("pki")
        (pki / "openssl.cnf").write_text(
            "[req]\n"
            "distinguished_name = dn\n"
            "prompt = no\n"
            "[dn]\n"
            "CN = placeholder\n"
            "[v3_ca]\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
            "[v3_server]\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = {','.join(SERVING_SANS)}\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
        )
        # ECDSA P-256 for the TLS chain (key generation is instant), RSA for
        # the service-account signing key as the 1.20 defaults expect.
        common = ("-config", "openssl.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
        self._openssl(
            "req", "-x509", "-nodes", "-sha256", "-days", "3650",
            *common, "-extensions", "v3_ca", "-subj", "/CN=ts-segmenter-test-ca",
            "-keyout", "ca.key", "-out", "ca.crt",
        )  # fmt: skip
        self._openssl(
            "req", "-new", "-nodes", "-sha256",
            *common, "-subj", "/CN=kube-apiserver", "-keyout", "server.key", "-out", "server.csr",
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(secrets.randbits(63)), "-days", "365", "-sha256",
            "-extfile", "openssl.cnf", "-extensions", "v3_server", "-out", "server.crt",
        )  # fmt: skip
        self._openssl("genrsa", "-out", "sa.key", "2048")
        self._openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _write_tokens(self) -> None:
        rows = [
            (self.admin_token, "admin", ("system:masters",)),
            (self.user_token, "test-user", ()),
            (self._controller_token, "system:kube-controller-manager", ("system:masters",)),
            *self.extra_users,
        ]
        lines = []
        for token, user, groups in rows:
            line = f"{token},{user},{user}"
            if groups:
                line += ',"' + ",".join(groups) + '"'
            lines.append(line)
        path = self._path("tokens.csv")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log_path = self._path(f"logs/{name}.log")
        handle = log_path.open("ab")
        self._log_handles.append(handle)
        self.log_paths[name] = log_path
        proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._procs[name] = proc
        return proc

    def _dead(self, name: str) -> bool:
        proc = self._procs[name]
        if proc.poll() is None:
            return False
        log = self.log_tail(name, 60)
        if "address already in use" in log.lower():
            raise _PortClash(name)
        raise ApiServerError(f"{name} exited with {proc.returncode} during start-up:\n{log}")

    def _start_etcd(self) -> None:
        client_port, peer_port = _free_ports(2)
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ApiServerUnavailable("etcd is not on PATH (Debian package etcd-server)")
        self._spawn(
            "etcd",
            [
                etcd,
                "--name=t",
                f"--data-dir={self._path('etcd')}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=t={peer_url}",
            ],
        )

        def healthy() -> bool:
            if self._dead("etcd"):
                return False
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                    return json.loads(resp.read()).get("health") == "true"
            except (OSError, ValueError):
                return False

        _poll(healthy, timeout=self.startup_timeout, what="etcd /health",
              on_timeout=lambda: "\n" + self.log_tail("etcd"))  # fmt: skip

    def _start_apiserver(self) -> None:
        assert self.bin_dir is not None
        self.port = _free_port()
        self.server_url = f"https://127.0.0.1:{self.port}"
        pki = self._path("pki")
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={self._path('tokens.csv')}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self._path('apiserver-certs')}",
                *self.extra_apiserver_args,
            ],
        )
        context = ssl.create_default_context(cafile=str(self.ca_path))
        request = urllib.request.Request(
            f"{self.server_url}/readyz",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

        def ready() -> bool:
            if self._dead("kube-apiserver"):
                return False
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as resp:
                    return resp.status == 200 and resp.read().strip() == b"ok"
            except (OSError, urllib.error.HTTPError):
                return False

        _poll(ready, timeout=self.startup_timeout, what="kube-apiserver /readyz",
              on_timeout=lambda: "\n" + self.log_tail("kube-apiserver"))  # fmt: skip

    def _start_controller_manager(self) -> None:
        assert self.bin_dir is not None
        kubeconfig = self._path("controller-manager.kubeconfig")
        self.write_kubeconfig(kubeconfig, self._controller_token)
        pki = self._path("pki")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--port=0",
            ],
        )
        if {"serviceaccount", "serviceaccount-token"} <= set(self.controllers):
            # The first default-SA token proves the controllers are running.
            core = kubernetes.client.CoreV1Api(self.api_client())

            def default_token() -> str | None:
                if self._dead("kube-controller-manager"):
                    return None
                return self._find_sa_token(core, "default", "default")

            _poll(default_token, timeout=self.startup_timeout,
                  what="kube-controller-manager to create the default ServiceAccount token",
                  on_timeout=lambda: "\n" + self.log_tail("kube-controller-manager"))  # fmt: skip

    # ---------------------------------------------------------------- clients
    def api_client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """Return a new ApiClient for ``token`` (the admin token when None)."""
        config = kubernetes.client.Configuration()
        config.host = self.server_url
        config.ssl_ca_cert = str(self.ca_path)
        config.verify_ssl = True
        config.api_key = {"BearerToken": token if token is not None else self.admin_token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return kubernetes.client.ApiClient(config)

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        token: str | None = None,
        *,
        namespace: str | None = None,
    ) -> Path:
        """Write a kubeconfig for ``token`` (admin when None) with the CA embedded.

        Args:
            path: file to (over)write; parent directories are created.
            token: bearer token of the user.
            namespace: default namespace of the context, if any.

        Returns:
            The path written.
        """
        context: dict[str, str] = {"cluster": "ts-segmenter-test", "user": "test-user"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ts-segmenter-test",
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_path.read_bytes()
                        ).decode("ascii"),
                    },
                }
            ],
            "users": [
                {
                    "name": "test-user",
                    "user": {"token": token if token is not None else self.admin_token},
                }
            ],
            "contexts": [{"name": "ts-segmenter-test", "context": context}],
            "current-context": "ts-segmenter-test",
            "preferences": {},
        }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(config, sort_keys=False))
        out.chmod(0o600)
        return out

    # ------------------------------------------------------------- resources
    def create_namespace(
        self, name: str, *, wait_for_default_service_account: bool | None = None
    ) -> kubernetes.client.V1Namespace:
        """Create namespace ``name`` (an existing one is returned as is).

        With the controller manager running (the default) this also waits until
        the namespace's ``default`` ServiceAccount has its token, because the
        ServiceAccount admission plugin rejects Pods (including the ones the
        job controller creates) until then. Pass
        ``wait_for_default_service_account=False`` to skip that wait.
        """
        core = kubernetes.client.CoreV1Api(self.api_client())
        body = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
        try:
            namespace = core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            namespace = core.read_namespace(name)
        wait = wait_for_default_service_account
        if wait is None:
            wait = self.controller_manager and {"serviceaccount", "serviceaccount-token"} <= set(
                self.controllers
            )
        if wait:
            _poll(lambda: self._find_sa_token(core, name, "default"), timeout=30,
                  what=f"the default ServiceAccount token in namespace {name}")  # fmt: skip
        return namespace

    @contextlib.contextmanager
    def fresh_namespace(self, prefix: str) -> Iterator[str]:
        """A new namespace ``<prefix>-<random>`` with the InferenceService CRD installed, deleted afterwards."""
        self.install_isvc_crd()
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create_namespace(name)
        try:
            yield name
        finally:
            kubernetes.client.CoreV1Api(self.api_client()).delete_namespace(name)

    @staticmethod
    def _find_sa_token(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> str | None:
        try:
            secrets_list = core.list_namespaced_secret(
                namespace, field_selector="type=kubernetes.io/service-account-token"
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for secret in secrets_list.items:
            annotations = secret.metadata.annotations or {}
            token = (secret.data or {}).get("token")
            if annotations.get("kubernetes.io/service-account.name") == name and token:
                return base64.b64decode(token).decode("ascii")
        return None

    def service_account_token(self, namespace: str, name: str, timeout: float = 30) -> str:
        """Return the bearer token of ServiceAccount ``namespace/name``.

        Polls the API until the token controller has filled the SA's
        auto-created ``kubernetes.io/service-account-token`` Secret (the SA
        itself may be created after this call starts). Without the controller
        manager there is no such Secret, so a TokenRequest token (1 h) is
        returned instead once the ServiceAccount exists.

        Raises:
            ApiServerError: no token within ``timeout`` seconds.
        """
        core = kubernetes.client.CoreV1Api(self.api_client())
        if self.controller_manager and "serviceaccount-token" in self.controllers:
            return _poll(lambda: self._find_sa_token(core, namespace, name), timeout=timeout,
                         what=f"a token Secret for ServiceAccount {namespace}/{name}")  # fmt: skip

        def request_token() -> str | None:
            body = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            )
            try:
                result = core.create_namespaced_service_account_token(name, namespace, body)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return str(result.status.token)

        return _poll(request_token, timeout=timeout,
                     what=f"ServiceAccount {namespace}/{name}")  # fmt: skip

    def install_isvc_crd(self, timeout: float = 30) -> None:
        """Install a permissive ``inferenceservices.serving.kserve.io`` CRD.

        Version v1beta1 (served, stored), namespaced, short name ``isvc``, a
        ``status`` subresource and ``x-kubernetes-preserve-unknown-fields`` for
        the whole object, so any spec is accepted (validate against the real
        KServe schema separately). Idempotent. Returns once the CRD is
        Established and its resource answers a list request.
        """
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": ISVC_CRD_NAME},
            "spec": {
                "group": ISVC_GROUP,
                "scope": "Namespaced",
                "names": {
                    "plural": ISVC_PLURAL,
                    "singular": "inferenceservice",
                    "kind": "InferenceService",
                    "listKind": "InferenceServiceList",
                    "shortNames": ["isvc"],
                },
                "versions": [
                    {
                        "name": ISVC_VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        client = self.api_client()
        ext = kubernetes.client.ApiextensionsV1Api(client)
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise

        def established() -> bool:
            # Raw JSON: the generated models reject some CRD status shapes.
            resp = ext.read_custom_resource_definition(ISVC_CRD_NAME, _preload_content=False)
            conditions = json.loads(resp.data).get("status", {}).get("conditions") or []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

        _poll(established, timeout=timeout, what=f"CRD {ISVC_CRD_NAME} to be Established")
        custom = kubernetes.client.CustomObjectsApi(client)

        def served() -> bool:
            try:
                custom.list_cluster_custom_object(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        _poll(served, timeout=timeout, what=f"{ISVC_PLURAL}.{ISVC_GROUP} to be served")


class _PortClash(Exception):
    """A component lost the race for a port picked as free."""


# --------------------------------------------------------------- pytest glue
def _announce(config: pytest.Config, message: str) -> None:
    """Write ``message`` to the terminal even while output is captured."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(message)


@pytest.fixture(scope="session")
def apiserver(pytestconfig: pytest.Config) -> Iterator[ApiServer]:
    """A running :class:`ApiServer` (with kube-controller-manager) for the session.

    Builds the binaries on first use (minutes; cached afterwards). If they
    cannot be built, the requesting tests are skipped - unless ``CI`` is set,
    in which case they fail with the reason.
    """
    try:
        found = ensure_binaries(on_build=lambda msg: _announce(pytestconfig, f"apiserver fixture: {msg}"))
    except ApiServerUnavailable as exc:
        if running_under_ci():
            pytest.fail(f"kube-apiserver unavailable under CI: {exc}", pytrace=False)
        pytest.skip(f"kube-apiserver unavailable: {exc}")
    with ApiServer(found) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the component log tails to failing tests that used ``apiserver``."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "apiserver" not in getattr(item, "fixturenames", ()):
        return
    server = getattr(item, "funcargs", {}).get("apiserver")
    if isinstance(server, ApiServer) and server.workdir is not None:
        report.sections.append(("apiserver logs", server.format_logs(lines=30)))
