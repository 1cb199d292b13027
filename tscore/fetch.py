"""Download a task's CSV the way Label Studio stores it.

A task's data value may be a path relative to Label Studio (``/data/upload/...``,
``/data/local-files/?d=...``), an absolute http(s) URL, or, only when a local root is
configured, a local file path under that root. Label Studio URLs carry the API key: a legacy
token as ``Token <key>``, or a personal access token exchanged for a short-lived access token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tscore.errors import DataFetchError, InvalidInput
from tscore.settings import CommonSettings

log = logging.getLogger(__name__)

_ACCESS_TOKEN_LIFETIME = 240.0  # LS access JWTs live 300 s; refresh well before.
INLINE_READ_BYTES = 256 * 1024


def is_personal_access_token(key: str) -> bool:
    """True for a JWT (a personal access token); False for a legacy token."""
    parts = key.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


class LabelStudioAuth:
    """Produces the Authorization header for Label Studio from either kind of API key."""

    def __init__(self, base_url: str, api_key: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._client = client
        self._access: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def header(self) -> dict[str, str]:
        """Authorization header, refreshing a PAT's access token when needed."""
        if not self.api_key:
            return {}
        if not is_personal_access_token(self.api_key):
            return {"Authorization": f"Token {self.api_key}"}
        async with self._lock:
            if self._access is None or self._access[1] < time.monotonic():
                response = await self._client.post(
                    f"{self.base_url}/api/token/refresh/", json={"refresh": self.api_key}
                )
                if response.status_code != 200:
                    raise DataFetchError(
                        f"Label Studio refused the personal access token ({response.status_code})"
                    )
                self._access = (response.json()["access"], time.monotonic() + _ACCESS_TOKEN_LIFETIME)
            return {"Authorization": f"Bearer {self._access[0]}"}


class TaskDataFetcher:
    """Fetches task CSVs with size and time limits."""

    def __init__(
        self,
        *,
        label_studio_url: str,
        api_key: str,
        local_files_root: Path | None,
        max_bytes: int,
        timeout: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.label_studio_url = label_studio_url.rstrip("/")
        self.local_files_root = local_files_root.resolve() if local_files_root else None
        self.max_bytes = max_bytes
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self.timeout = timeout
        self.auth = LabelStudioAuth(self.label_studio_url, api_key, self._client)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> TaskDataFetcher:
        """A fetcher with the Label Studio connection and limits of a process's settings."""
        return cls(
            label_studio_url=settings.label_studio_url,
            api_key=settings.label_studio_api_key,
            local_files_root=settings.local_files_root,
            max_bytes=settings.max_csv_bytes,
            timeout=settings.download_timeout,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def fetch(self, reference: str) -> bytes:
        """The bytes behind a task data value.

        Raises:
            InvalidInput: the reference is not a URL or path this backend may read.
            DataFetchError: the download failed, was refused, timed out or was too large.
        """
        if not isinstance(reference, str) or not reference.strip():
            raise InvalidInput("task data has no CSV reference")
        reference = reference.strip()
        if reference.startswith("/data/") or reference.startswith("data/"):
            url = f"{self.label_studio_url}/{reference.lstrip('/')}"
            return await self._download(url, await self.auth.header())
        parts = urlsplit(reference)
        if parts.scheme in ("http", "https"):
            if not parts.netloc:
                raise InvalidInput(f"task CSV URL {reference!r} has no host")
            same_host = urlsplit(self.label_studio_url).netloc == parts.netloc
            return await self._download(reference, await self.auth.header() if same_host else {})
        if parts.scheme in ("", "file"):
            path = parts.path if parts.scheme else reference
            return await self._read_local(self._local_path(path), path)
        raise InvalidInput(f"task CSV reference {reference!r} uses an unsupported scheme {parts.scheme!r}")

    async def _download(self, url: str, headers: dict[str, str]) -> bytes:
        try:
            async with self._client.stream("GET", url, headers=headers, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise DataFetchError(f"GET {url} answered {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise DataFetchError(f"{url} is larger than the {self.max_bytes}-byte limit")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise DataFetchError(f"{url} is larger than the {self.max_bytes}-byte limit")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise DataFetchError(f"GET {url} timed out after {self.timeout} s") from exc
        except httpx.HTTPError as exc:
            raise DataFetchError(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from exc

    def _local_path(self, path: str) -> Path:
        """The real path of ``path`` under the local root, symlinks resolved."""
        if self.local_files_root is None:
            raise InvalidInput(
                f"task CSV {path!r} is a local path, but no LOCAL_FILES_ROOT is configured"
            )
        candidate = (self.local_files_root / path).resolve()
        if not candidate.is_relative_to(self.local_files_root):
            raise InvalidInput(f"task CSV {path!r} is outside LOCAL_FILES_ROOT")
        return candidate

    async def _read_local(self, candidate: Path, path: str) -> bytes:
        try:
            with open(candidate, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > self.max_bytes:
                    raise DataFetchError(f"{path} is larger than the {self.max_bytes}-byte limit")
                # Small local files are read at once; a thread hop would cost more than the read.
                return handle.read() if size <= INLINE_READ_BYTES else await asyncio.to_thread(handle.read)
        except OSError as exc:
            raise DataFetchError(f"cannot read task CSV {path!r}: {exc.strerror}") from exc
