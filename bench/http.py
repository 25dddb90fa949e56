"""A minimal HTTP/1.1 keep-alive client for the measured loops.

The bench client shares the machine's two cores with the system under test,
so its own cost per request shows up in the product's figures. httpx spends
a few milliseconds of CPU per request; this client, about a tenth of that. It
speaks just enough HTTP for the product's API: one request at a time per
connection, bodies framed by Content-Length or chunked. Setup calls still use
httpx.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# uvicorn closes a keep-alive connection after 5 idle seconds; reuse only younger ones.
MAX_IDLE = 3.0


class HttpError(RuntimeError):
    pass


class RawHttp:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError("RawHttp speaks plain http:// only")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {parts.netloc}\r\n{extra}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        status, raw = await self.request("POST", path, json.dumps(body).encode())
        return status, json.loads(raw) if raw else None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        async with asyncio.timeout(self.timeout):
            reused = self._reusable()
            if reused is not None:
                try:
                    return await self._on(reused, method, path, body)
                except (HttpError, ConnectionError):
                    pass  # the server closed it meanwhile, before reading the request: once more
            conn = await asyncio.open_connection(self.host, self.port)
            return await self._on(conn, method, path, body)

    def _reusable(self) -> Connection | None:
        """The most recently used idle connection, unless the server may have closed it."""
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < MAX_IDLE and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _on(
        self, conn: Connection, method: str, path: str, body: bytes | None
    ) -> tuple[int, bytes]:
        reader, writer = conn
        try:
            status, payload, keep = await self._exchange(reader, writer, method, path, body)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()
        return status, payload

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        body: bytes | None,
    ) -> tuple[int, bytes, bool]:
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode("latin-1") + b"\r\n" + (body or b""))
        status_line = await reader.readline()
        if not status_line:
            raise HttpError("connection closed before a response")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, keep = None, False, True
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                keep = False
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            return status, b"".join(parts), keep
        if length is None:
            return status, await reader.read(), False
        return status, await reader.readexactly(length), keep

    async def aclose(self) -> None:
        while self._idle:
            _, writer, _ = self._idle.pop()
            writer.close()
