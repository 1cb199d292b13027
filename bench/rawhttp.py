"""A minimal HTTP/1.1 keep-alive client on asyncio streams, used as the load generator.

httpx's async client costs milliseconds of CPU per request once many requests are in flight
(a burst of 100 webhooks took 1.6 s through it against 0.03 s with this client), and it runs on
the same 2 cores as the servers: measuring through it would measure httpx. This client does
just what the benchmark needs: one connection per simulated client, a request with a body,
a response with ``Content-Length`` or chunked encoding.
"""

from __future__ import annotations

import asyncio
import json


class Connection:
    """One persistent HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read the whole response: ``(status, lower-cased headers, body)``."""
        if self._writer is None:
            await self.open()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        response_headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                response_headers[key.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            content = await self._reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                parts.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
            content = b"".join(parts)
        else:
            content = await self._reader.read()
            await self.close()
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, response_headers, content

    async def post_json(self, path: str, payload: dict) -> tuple[int, dict]:
        """POST a JSON body; return the status and the decoded JSON answer."""
        status, _, content = await self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        return status, json.loads(content) if content else {}

    async def get(self, path: str) -> tuple[int, bytes]:
        status, _, content = await self.request("GET", path)
        return status, content
