"""A small keep-alive HTTP/1.1 client for talking to one llama-server.

Why not httpx or tornado's client: measured on 2 cores, a shared httpx client adds 4-6 ms
and tornado's simple client opens a connection per request; reusing raw connections and
forwarding body bytes untouched is what keeps the proxy within a couple of milliseconds.
llama-server speaks plain HTTP/1.1 on loopback, so the subset needed here is small:
Content-Length and chunked bodies, keep-alive, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator


class UpstreamError(ConnectionError):
    """The engine closed the connection or answered with something that is not HTTP."""


class UpstreamResponse:
    def __init__(self, pool: "UpstreamPool", conn: "_Conn", status: int, reason: str,
                 headers: dict[str, str]):
        self._pool, self._conn = pool, conn
        self.status, self.reason, self.headers = status, reason, headers
        self._done = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    async def read(self) -> bytes:
        return b"".join([c async for c in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body pieces as the engine sends them (one per HTTP chunk when chunked)."""
        reader = self._conn.reader
        try:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    line = await reader.readline()
                    if not line.endswith(b"\n"):
                        raise UpstreamError("engine closed the stream mid-body")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif "content-length" in self.headers:
                length = int(self.headers["content-length"])
                if length:
                    yield await reader.readexactly(length)
            else:
                self._conn.reusable = False
                while chunk := await reader.read(65536):
                    yield chunk
        except asyncio.IncompleteReadError as e:
            self.close()
            raise UpstreamError("engine closed the connection mid-body") from e
        except (ConnectionError, OSError, ValueError) as e:
            self.close()
            raise UpstreamError(f"engine connection failed: {e}") from e
        except BaseException:
            self.close()  # cancelled or abandoned: the engine must see the client leave
            raise
        self._done = True
        self._pool._release(self._conn)

    def close(self) -> None:
        """Abandon the body: closing the socket tells llama-server to stop generating."""
        if not self._done:
            self._done = True
            self._conn.close()


class _Conn:
    __slots__ = ("reader", "writer", "reusable")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.reusable = reader, writer, True

    def close(self) -> None:
        self.reusable = False
        self.writer.close()

    @property
    def alive(self) -> bool:
        return self.reusable and not self.writer.is_closing() and not self.reader.at_eof()


class UpstreamPool:
    """Keeps idle connections to one engine and hands them out one request at a time."""

    def __init__(self, host: str, port: int, api_key: str | None = None, max_idle: int = 64):
        self.host, self.port, self.api_key, self.max_idle = host, port, api_key, max_idle
        self._idle: list[_Conn] = []
        self._closed = False
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._fixed_headers = f"Host: {host}:{port}\r\n{auth}".encode()

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json",
                      timeout: float | None = None) -> UpstreamResponse:
        """Send one request and read the status line and headers.

        A pooled connection that the engine has quietly closed fails before any byte of
        the reply; such a request is retried once on a fresh connection.
        """
        head = (f"{method} {path} HTTP/1.1\r\n").encode() + self._fixed_headers
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode()
        payload = head + b"\r\n" + body
        for attempt in (0, 1):
            # the retry always dials afresh: the next pooled connection may be stale too
            conn, reused = self._take() if attempt == 0 else (None, False)
            if conn is None:
                try:
                    conn = await asyncio.wait_for(self._connect(), timeout)
                except OSError as e:  # includes TimeoutError
                    raise UpstreamError(f"cannot connect to engine on port {self.port}: "
                                        f"{e}") from e
            try:
                conn.writer.write(payload)
                raw = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), timeout)
            except asyncio.TimeoutError as e:
                # a slow engine is not a stale connection: never send the request twice
                conn.close()
                raise UpstreamError(f"engine did not answer within {timeout} s") from e
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
                conn.close()
                if reused and attempt == 0 and not getattr(e, "partial", b""):
                    continue
                raise UpstreamError(f"engine connection failed: {e!r}") from e
            except BaseException:
                conn.close()
                raise
            return self._parse_head(conn, raw)
        raise AssertionError("unreachable")

    def _parse_head(self, conn: _Conn, raw: bytes) -> UpstreamResponse:
        lines = raw.decode("latin-1").split("\r\n")
        try:
            _version, status, *reason = lines[0].split(" ", 2)
            code = int(status)
        except ValueError as e:
            conn.close()
            raise UpstreamError(f"malformed reply from engine: {lines[0]!r}") from e
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("connection", "").lower() == "close" or (
                headers.get("content-type", "").startswith("text/event-stream")):
            # llama-server closes the connection after every event stream despite its
            # Keep-Alive header; pooling it would only hand a dead socket to the next request
            conn.reusable = False
        return UpstreamResponse(self, conn, code, reason[0] if reason else "", headers)

    def _take(self) -> tuple[_Conn | None, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive:
                return conn, True
            conn.close()
        return None, False

    def _release(self, conn: _Conn) -> None:
        if self._closed or not conn.alive or len(self._idle) >= self.max_idle:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
