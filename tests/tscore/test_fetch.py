"""Downloading task CSVs from a real local HTTP server standing in for Label Studio and a file host.

The server is real HTTP (``http.server`` on a free port): it checks the Authorization headers
the way Label Studio does (legacy ``Token``, or ``Bearer`` with an access token obtained at
``/api/token/refresh/`` from a personal access token).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures import free_port
from tscore.errors import DataFetchError, InvalidInput
from tscore.fetch import INLINE_READ_BYTES, TaskDataFetcher, is_personal_access_token

CSV = b"time,a,b\n0,1,2\n1,3,4\n"
LEGACY = "0123456789abcdef0123456789abcdef01234567"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


PAT = ".".join([_b64({"alg": "HS256", "typ": "JWT"}), _b64({"token_type": "refresh", "exp": 4102444800, "jti": "abc", "user_id": 1}), "c2lnbmF0dXJl"])
ACCESS = ".".join([_b64({"alg": "HS256", "typ": "JWT"}), _b64({"token_type": "access", "exp": 4102444800}), "YWNjZXNz"])


class FakeLabelStudio:
    """Records requests; serves CSVs behind LS-style auth, plus a few misbehaving files."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.refreshes: list[dict] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {"Content-Length": str(len(body))}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                owner.requests.append(("POST", self.path, self.headers.get("Authorization")))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.refreshes.append(body)
                if self.path == "/api/token/refresh/" and body.get("refresh") == PAT:
                    self._send(200, json.dumps({"access": ACCESS}).encode())
                else:
                    self._send(401, b'{"detail": "Token is invalid"}')

            def do_GET(self):
                auth = self.headers.get("Authorization")
                owner.requests.append(("GET", self.path, auth))
                if self.path.startswith("/data/upload/"):
                    if auth in (f"Token {LEGACY}", f"Bearer {ACCESS}"):
                        self._send(200, CSV)
                    else:
                        self._send(401, b'{"detail": "Authentication credentials were not provided."}')
                elif self.path == "/static.csv":
                    self._send(200, CSV)
                elif self.path == "/big-declared.csv":
                    self._send(200, b"x" * 5000)
                elif self.path == "/big-chunked.csv":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(10):
                        chunk = b"y" * 1000
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                elif self.path == "/slow.csv":
                    owner.release.wait(10)  # holds the response until the test is over
                    self._send(200, CSV)
                else:
                    self._send(404, b"not found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def ls_server():
    server = FakeLabelStudio()
    yield server
    server.close()


@pytest.fixture
def ls(ls_server):
    ls_server.requests.clear()
    ls_server.refreshes.clear()
    return ls_server


@pytest.fixture
async def make_fetcher(ls, tmp_path):
    made = []

    def make(**overrides) -> TaskDataFetcher:
        options = dict(label_studio_url=ls.url + "/", api_key=LEGACY, local_files_root=None, max_bytes=10_000, timeout=5.0)
        options.update(overrides)
        fetcher = TaskDataFetcher(**options)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()


def test_token_kinds_are_told_apart():
    assert is_personal_access_token(PAT)
    assert not is_personal_access_token(LEGACY)
    assert not is_personal_access_token("a.b.c")
    assert not is_personal_access_token("")


async def test_upload_path_with_a_legacy_token(ls, make_fetcher):
    fetcher = make_fetcher()
    assert await fetcher.fetch("/data/upload/1/16b05605-ts_upload.csv") == CSV
    assert ls.requests == [("GET", "/data/upload/1/16b05605-ts_upload.csv", f"Token {LEGACY}")]


async def test_upload_path_without_a_key_is_refused_by_label_studio(ls, make_fetcher):
    fetcher = make_fetcher(api_key="")
    with pytest.raises(DataFetchError, match="answered 401") as raised:
        await fetcher.fetch("/data/upload/1/x.csv")
    assert raised.value.status_code == 424


async def test_personal_access_token_is_exchanged_once_then_sent_as_bearer(ls, make_fetcher):
    fetcher = make_fetcher(api_key=PAT)
    assert await fetcher.fetch("/data/upload/1/a.csv") == CSV
    assert await fetcher.fetch("data/upload/1/b.csv") == CSV
    assert ls.refreshes == [{"refresh": PAT}]
    gets = [r for r in ls.requests if r[0] == "GET"]
    assert gets == [("GET", "/data/upload/1/a.csv", f"Bearer {ACCESS}"), ("GET", "/data/upload/1/b.csv", f"Bearer {ACCESS}")]
    # The PAT itself never travels as a bearer token.
    assert all(auth != f"Bearer {PAT}" for _, _, auth in ls.requests)


async def test_a_refused_personal_access_token_is_a_clear_error(ls, make_fetcher):
    stale = PAT[:-4] + "AAAA"
    fetcher = make_fetcher(api_key=stale)
    with pytest.raises(DataFetchError, match="refused the personal access token"):
        await fetcher.fetch("/data/upload/1/a.csv")


async def test_absolute_url_on_another_host_gets_no_credentials(ls, make_fetcher):
    fetcher = make_fetcher()
    assert await fetcher.fetch(f"http://localhost:{ls.port}/static.csv") == CSV
    assert ls.requests == [("GET", "/static.csv", None)]


async def test_absolute_url_on_the_label_studio_host_gets_credentials(ls, make_fetcher):
    fetcher = make_fetcher()
    assert await fetcher.fetch(f"{ls.url}/data/upload/2/c.csv") == CSV
    assert ls.requests[-1][2] == f"Token {LEGACY}"


@pytest.mark.parametrize("path", ["/big-declared.csv", "/big-chunked.csv"])
async def test_size_limit(ls, make_fetcher, path):
    fetcher = make_fetcher(max_bytes=2048)
    with pytest.raises(DataFetchError, match="larger than the 2048-byte limit"):
        await fetcher.fetch(f"http://localhost:{ls.port}{path}")
    assert len(await make_fetcher(max_bytes=20_000).fetch(f"http://localhost:{ls.port}{path}")) in (5000, 10_000)


async def test_timeout(ls, make_fetcher):
    fetcher = make_fetcher(timeout=0.3)
    with pytest.raises(DataFetchError, match="timed out"):
        await fetcher.fetch(f"{ls.url}/slow.csv")


async def test_not_found_names_the_status(ls, make_fetcher):
    with pytest.raises(DataFetchError, match="answered 404"):
        await make_fetcher().fetch(f"{ls.url}/nothing.csv")


async def test_unreachable_port(make_fetcher):
    port = free_port()
    with pytest.raises(DataFetchError, match=f"127.0.0.1:{port}/x.csv failed: ConnectError"):
        await make_fetcher().fetch(f"http://127.0.0.1:{port}/x.csv")


async def test_local_files_only_under_the_configured_root(make_fetcher, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "task.csv").write_bytes(CSV)
    (tmp_path / "secret.csv").write_bytes(b"secret")
    (root / "escape.csv").symlink_to(tmp_path / "secret.csv")
    fetcher = make_fetcher(local_files_root=root)
    assert await fetcher.fetch("sub/task.csv") == CSV
    assert await fetcher.fetch(str(root / "sub" / "task.csv")) == CSV
    assert await fetcher.fetch(f"file://{root / 'sub' / 'task.csv'}") == CSV
    for outside in ("../secret.csv", "sub/../../secret.csv", str(tmp_path / "secret.csv"), "escape.csv", "/etc/passwd"):
        with pytest.raises(InvalidInput, match="outside LOCAL_FILES_ROOT"):
            await fetcher.fetch(outside)
    with pytest.raises(DataFetchError, match="cannot read task CSV 'sub/missing.csv'"):
        await fetcher.fetch("sub/missing.csv")


async def test_local_file_size_limit(make_fetcher, tmp_path):
    (tmp_path / "big.csv").write_bytes(b"z" * 300)
    with pytest.raises(DataFetchError, match="larger than the 100-byte limit"):
        await make_fetcher(local_files_root=tmp_path, max_bytes=100).fetch("big.csv")


async def test_local_paths_are_refused_without_a_root(make_fetcher, tmp_path):
    (tmp_path / "task.csv").write_bytes(CSV)
    with pytest.raises(InvalidInput, match="no LOCAL_FILES_ROOT is configured"):
        await make_fetcher().fetch(str(tmp_path / "task.csv"))


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("ftp://example.com/x.csv", "unsupported scheme 'ftp'"),
        ("s3://bucket/x.csv", "unsupported scheme 's3'"),
        ("gopher://x", "unsupported scheme"),
        ("http:///x.csv", "has no host"),
        ("", "no CSV reference"),
        ("   ", "no CSV reference"),
        (None, "no CSV reference"),
        (42, "no CSV reference"),
    ],
)
async def test_unusable_references_are_400(make_fetcher, reference, words):
    with pytest.raises(InvalidInput, match=words) as raised:
        await make_fetcher().fetch(reference)
    assert raised.value.status_code == 400


async def test_local_files_beside_the_root_with_the_same_prefix_are_outside(make_fetcher, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root-other").mkdir()
    (tmp_path / "root-other" / "task.csv").write_bytes(CSV)
    with pytest.raises(InvalidInput, match="outside LOCAL_FILES_ROOT"):
        await make_fetcher(local_files_root=tmp_path / "root").fetch("../root-other/task.csv")


async def test_large_local_files_are_read_whole_and_directories_are_refused(make_fetcher, tmp_path):
    content = CSV * (2 * INLINE_READ_BYTES // len(CSV) + 1)  # read off the event loop
    (tmp_path / "large.csv").write_bytes(content)
    (tmp_path / "folder.csv").mkdir()
    fetcher = make_fetcher(local_files_root=tmp_path, max_bytes=len(content))
    assert await fetcher.fetch("large.csv") == content
    with pytest.raises(DataFetchError, match="cannot read task CSV 'folder.csv'"):
        await fetcher.fetch("folder.csv")
