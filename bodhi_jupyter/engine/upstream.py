"""A small keep-alive HTTP/1.1 client for talking to one llama-server.

Each connection is an ``asyncio.Protocol`` that parses the reply as bytes arrive, in the
event loop's own read callback: a streamed chunk is handed to its consumer (the client's
socket) in that callback, with no task wake-up, no future and no ``StreamReader`` per chunk.
``bench/proxy_overhead.py`` measures this against httpx and tornado's curl client in the
same run; per streamed chunk it costs a fraction of either. llama-server speaks plain HTTP/1.1
on loopback, so the subset needed is small: Content-Length and chunked bodies, keep-alive,
``Connection: close``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from .relay_threads import call_on_loop, relay_threads

#: a body consumer: takes the payload bytes that arrived; may return a future that is not
#: done yet (the consumer's own buffer is full), and reading pauses until it is
Sink = Callable[[bytes], "asyncio.Future | None"]


class UpstreamError(ConnectionError):
    """The engine closed the connection or answered with something that is not HTTP."""


_HEAD, _PENDING, _BODY, _IDLE = 0, 1, 2, 3  # what the connection is reading
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2  # how the body ends
_SIZE, _DATA, _TRAILER = 0, 1, 2  # where a chunked body's parser is


class ChunkedParser:
    """Takes a chunked body as it arrives, in pieces split anywhere."""

    def __init__(self):
        self._state = _SIZE
        self._remaining = 0  # of the current chunk's payload
        self._rest = b""  # an incomplete line or chunk, until more comes

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The payloads of every chunk that is complete now, joined, and whether the body
        has ended. Raises ValueError for a malformed body."""
        if self._rest:
            data, self._rest = self._rest + data, b""
        pos, end, pieces = 0, len(data), []
        while True:
            if self._state == _DATA:
                if end - pos < self._remaining + 2:
                    break
                pieces.append(data[pos:pos + self._remaining])
                pos += self._remaining + 2
                self._state = _SIZE
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            line = data[pos:eol]
            pos = eol + 2
            if self._state == _TRAILER:
                if not line:
                    return b"".join(pieces), True
                continue
            self._remaining = size = int(line.partition(b";")[0], 16)
            self._state = _DATA if size else _TRAILER
        if pos < end:
            self._rest = data[pos:]
        return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), False

    def feed_framed(self, data: bytes) -> tuple[bytes, bool]:
        """Like ``feed``, but the complete chunks as they came, framing and all (without the
        last, empty chunk and any trailer): for a client that is sent the same HTTP/1.1
        framing, which then costs no parsing out and framing again. A chunk still incomplete
        is kept until the rest of it comes. Raises ValueError for a malformed body."""
        if self._rest:
            data, self._rest = self._rest + data, b""
        pos, end = 0, len(data)
        out = 0  # where the complete chunks end
        while pos < end:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            if self._state == _TRAILER:
                if eol == pos:
                    return (data if out == end else data[:out]), True
                pos = eol + 2
                continue
            size = int(data[pos:eol].partition(b";")[0], 16)
            if size < 0:
                raise ValueError("negative chunk size")
            if size == 0:
                self._state, pos = _TRAILER, eol + 2
                continue
            stop = eol + 2 + size
            if stop + 2 > end:
                break
            if data[stop:stop + 2] != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            pos = out = stop + 2
        if pos < end:
            self._rest = data[pos:]
        return (data if out == end else data[:out]), False

    @staticmethod
    def payloads(framed: bytes) -> bytes:
        """The payloads of complete chunks (what ``feed_framed`` gave), joined."""
        return ChunkedParser().feed(framed)[0]


class _Conn(asyncio.BufferedProtocol):
    """One connection to the engine; reads one reply at a time.

    A buffered protocol: the event loop reads into one buffer kept per connection
    (``recv_into``), where a plain protocol would allocate 256 KiB for every read."""

    def __init__(self):
        self._read_buffer = memoryview(bytearray(65536))
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self.lost = False
        self.received = False  # any byte of the current reply
        self._buf = bytearray()
        self._state = _IDLE
        self._waiter: asyncio.Future | None = None
        self._sink: Sink | None = None
        self._parts: list[bytes] = []
        self._framing = _LENGTH
        self._remaining = 0  # Content-Length left
        self._chunks = ChunkedParser()
        self._relay_sock: socket.socket | None = None  # the engine's, while a thread relays
        #: (sink, framed) of a thread's relay that has a place held but no thread yet
        self._thread_sink: tuple[Callable[[bytes], object], bool] | None = None
        #: called once, after the reply's first body piece went to its consumer
        self.after_first_piece: Callable[[], None] | None = None

    # -- asyncio.BufferedProtocol ------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._thread_sink is not None:  # a framed relay's first read
            self._first_framed(data)
            return
        if self._state == _BODY and self._framing == _CHUNKED:
            self._consume_chunked(data)  # the common case: parse what came, copy nothing
            return
        self._buf += data
        if self._state == _BODY:
            self._consume()
        elif self._state == _HEAD:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buf[:end + 4])
                del self._buf[:end + 4]
                self._state = _PENDING  # buffer until the response asks for its body
                self._resolve(head)
        elif self._state == _IDLE:
            self.reusable = False  # bytes nobody asked for: never reuse this connection

    def connection_lost(self, exc) -> None:
        self.lost, self.reusable = True, False
        self._drop_thread_place()
        if self._state == _BODY and self._framing == _UNTIL_CLOSE:
            self._finish()
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            what = "mid-body" if self._state == _BODY else "before answering"
            waiter.set_exception(UpstreamError(f"engine closed the connection {what}"
                                               + (f": {exc}" if exc else "")))
            waiter.exception()  # read by whoever awaits it; keep asyncio quiet otherwise

    # -- driven by the pool and the response -----------------------------------------------
    def send(self, payload: bytes) -> asyncio.Future:
        """Write a request; the future resolves with the raw head of the reply."""
        self.received = False
        self._state = _HEAD
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return waiter

    def read_body(self, framing: int, length: int, sink: Sink | None) -> asyncio.Future:
        """Start consuming the body; the future resolves with it (b"" when a sink took it)."""
        self._framing, self._remaining, self._chunks = framing, length, ChunkedParser()
        self._sink, self._parts = sink, []
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._state = _BODY
        if framing == _LENGTH and length == 0:
            self._finish()
        elif self._buf:
            self._consume()
        if self.lost and self._state == _BODY:
            self.connection_lost(None)  # it ended before we asked: what was buffered is all
        return waiter

    def relay_in_thread(self, sink: Callable[[bytes], object],
                        framed: bool = False) -> asyncio.Future:
        """Like ``read_body`` for a chunked body with a sink, but the body is read by a
        relay thread with blocking ``recv`` calls and ``sink`` runs on that thread (it
        blocks while its client is slow to read, and raises ConnectionError once its
        client is gone). For a connection that is not reused: the socket is made blocking.
        The future resolves with b"" when the body has ended.

        ``framed``: the sink is given the complete chunks as the engine framed them
        (``ChunkedParser.feed_framed``), not their payloads, and the first of them is
        read and handed to it here, on the event loop, before the thread is woken: the
        loop sits idle while the engine works on the prompt, and a thread woken then
        would take a core from that work (the sink must not block on the loop)."""
        loop = asyncio.get_running_loop()
        self._state, self._framing = _BODY, _CHUNKED
        self.reusable = False
        self._chunks = ChunkedParser()
        waiter = self._waiter = loop.create_future()
        relay_threads.reserve()
        self._thread_sink = (sink, framed)
        if not framed:
            self._start_relay_thread()
        elif self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._first_framed(data)
        elif self.lost:
            self.connection_lost(None)
        return waiter

    def _first_framed(self, data: bytes) -> None:
        """A framed relay's first read, on the loop; the thread takes the rest."""
        sink, _ = self._thread_sink
        try:
            piece, done = self._chunks.feed_framed(data)
        except ValueError:
            self._fail(UpstreamError("malformed chunked body from engine"))
            return
        if piece:
            try:
                sink(piece)
            except ConnectionError as e:  # the client left: the engine must see it
                self._fail(UpstreamError(f"closed by its consumer: {e}"))
                return
        if done:
            self._finish()
        elif piece:
            self._first_piece_done()
            self._start_relay_thread()

    def _start_relay_thread(self) -> None:
        loop = asyncio.get_running_loop()
        (sink, framed), self._thread_sink = self._thread_sink, None
        self.transport.pause_reading()  # from now on only the thread reads the socket
        fd = self.transport.get_extra_info("socket").fileno()
        sock = self._relay_sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(True)
        first, lost, chunks = bytes(self._buf), self.lost, self._chunks
        self._buf.clear()
        first_piece = None if self.after_first_piece is None else self._first_piece_done

        def settle(outcome: Exception | None) -> None:  # on the event loop
            self._relay_sock = None
            sock.close()
            if outcome is None:
                self._finish()
            else:
                self._fail(outcome)

        def job() -> None:  # on the relay thread
            try:
                outcome = _relay_blocking(sock, first, lost, chunks, sink, loop, first_piece,
                                          framed)
            except BaseException as e:  # noqa: BLE001 - whatever it was, the loop hears it
                outcome = e
            call_on_loop(loop, settle, outcome)

        relay_threads.run(job, reserved=True)

    def close(self) -> None:
        self.reusable = False
        if self._relay_sock is not None:  # the thread's recv returns, and it settles
            _hang_up(self._relay_sock)
        if self.transport is not None:
            self.transport.close()

    @property
    def alive(self) -> bool:
        return self.reusable and not self.lost and not self.transport.is_closing()

    # -- parsing ---------------------------------------------------------------------------
    def _consume(self) -> None:
        buf = self._buf
        if self._framing == _CHUNKED:
            data = bytes(buf)
            buf.clear()
            self._consume_chunked(data)
        elif self._framing == _LENGTH:
            take = min(len(buf), self._remaining)
            piece = bytes(buf[:take])
            del buf[:take]
            self._remaining -= take
            self._deliver(piece)
            if self._remaining == 0:
                self._finish()
        else:
            piece = bytes(buf)
            buf.clear()
            self._deliver(piece)

    def _consume_chunked(self, data: bytes) -> None:
        try:
            piece, done = self._chunks.feed(data)
        except ValueError:
            self._fail(UpstreamError("malformed chunked body from engine"))
            return
        self._deliver(piece)
        if done:
            self._finish()

    def _deliver(self, piece: bytes) -> None:
        if not piece:
            return
        if self._sink is None:
            self._parts.append(piece)
        else:
            pending = self._sink(piece)
            if pending is not None and not pending.done() and not self.lost:
                # the consumer cannot take more yet: let the engine's socket fill up instead
                self.transport.pause_reading()
                pending.add_done_callback(self._resume)
        self._first_piece_done()

    def _first_piece_done(self) -> None:
        if self.after_first_piece is not None:
            then, self.after_first_piece = self.after_first_piece, None
            then()

    def _resume(self, _future) -> None:
        if not self.lost and not self.transport.is_closing():
            self.transport.resume_reading()

    def _drop_thread_place(self) -> None:
        """A framed relay that ended before its thread started gives its place back."""
        if self._thread_sink is not None:
            self._thread_sink = None
            relay_threads.release()

    def _finish(self) -> None:
        self._drop_thread_place()
        self._first_piece_done()  # for a reply without a body
        self._state, self._sink = _IDLE, None
        body, self._parts = b"".join(self._parts), []
        self._resolve(body)

    def _fail(self, error: Exception) -> None:
        self._drop_thread_place()
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            waiter.exception()

    def _resolve(self, value) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(value)


def _hang_up(sock: socket.socket) -> None:
    """End both directions now (a relay thread blocked in ``recv`` returns at once)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already shut, or the engine had gone
        pass


def _relay_blocking(sock: socket.socket, first: bytes, lost: bool, chunks: ChunkedParser,
                    sink: Callable[[bytes], object], loop: asyncio.AbstractEventLoop,
                    first_piece: Callable[[], None] | None,
                    framed: bool = False) -> Exception | None:
    """The relay thread's loop: each read's complete chunks go to ``sink`` (as framed,
    or their payloads) until the body ends (None), or what went wrong. ``first_piece`` is
    called on the loop once the first piece is out."""
    feed = chunks.feed_framed if framed else chunks.feed
    data = first
    while True:
        if data:
            try:
                piece, done = feed(data)
            except ValueError:
                return UpstreamError("malformed chunked body from engine")
            if piece:
                try:
                    sink(piece)
                except ConnectionError as e:  # the client left: the engine must see it
                    _hang_up(sock)
                    return UpstreamError(f"closed by its consumer: {e}")
                if first_piece is not None:
                    call_on_loop(loop, first_piece)
                    first_piece = None
            if done:
                return None
        if lost:
            data = b""
        else:
            try:
                data = sock.recv(65536)
            except OSError as e:
                return UpstreamError(f"engine closed the connection mid-body: {e}")
        if not data:
            return UpstreamError("engine closed the connection mid-body")


class UpstreamResponse:
    def __init__(self, pool: "UpstreamPool", conn: _Conn, status: int, reason: str,
                 headers: dict[str, str],
                 on_failure: Callable[[Exception], Awaitable[Exception]] | None = None):
        self._pool, self._conn = pool, conn
        self.status, self.reason, self.headers = status, reason, headers
        self._on_failure = on_failure
        self._done = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    async def read(self) -> bytes:
        """The whole body."""
        return await self._body(None)

    @property
    def relays_in_thread(self) -> bool:
        """Whether ``relay(..., in_thread=True)`` may be asked for: an event stream
        (chunked, and llama-server closes the connection after it) on a plain socket,
        while the relay threads have room for one more."""
        return (relay_threads.has_room
                and self.headers.get("transfer-encoding", "").lower() == "chunked"
                and not self._conn.reusable and not self._done
                and self._conn.transport.get_extra_info("socket") is not None
                and self._conn.transport.get_extra_info("sslcontext") is None)

    async def relay(self, sink: Sink, in_thread: bool = False, framed: bool = False) -> None:
        """Hand the body to ``sink`` as it arrives (for chunked bodies: the payloads of the
        chunks that came in one read, joined), straight from the event loop's read
        callback; or, ``in_thread``, from a relay thread (see ``_Conn.relay_in_thread``),
        there with their framing if ``framed``."""
        if framed and not in_thread:
            raise ValueError("framed pieces are relayed by a thread only")
        await self._body(sink, in_thread, framed)

    async def _body(self, sink: Sink | None, in_thread: bool = False,
                    framed: bool = False) -> bytes:
        if self._done:
            raise UpstreamError("the body was already read or abandoned")
        h = self.headers
        if h.get("transfer-encoding", "").lower() == "chunked":
            framing, length = _CHUNKED, 0
        elif "content-length" in h:
            framing, length = _LENGTH, int(h["content-length"])
        else:
            framing, length = _UNTIL_CLOSE, 0
            self._conn.reusable = False
        try:
            if in_thread:
                body = await self._conn.relay_in_thread(sink, framed)
            else:
                body = await self._conn.read_body(framing, length, sink)
        except UpstreamError as e:
            abandoned = self._done  # closed by its own consumer (whose client left)
            self.close()
            if self._on_failure is not None and not abandoned:
                raise await self._on_failure(e) from None
            raise
        except BaseException:
            self.close()  # cancelled or abandoned: the engine must see the client leave
            raise
        self._done = True
        self._pool._release(self._conn)
        return body

    def close(self) -> None:
        """Abandon the body: closing the socket tells llama-server to stop generating."""
        if not self._done:
            self._done = True
            self._conn.close()


class UpstreamPool:
    """Keeps idle connections to one engine and hands them out one request at a time."""

    def __init__(self, host: str, port: int, api_key: str | None = None, max_idle: int = 64,
                 keep_spare: bool = True):
        self.host, self.port, self.api_key, self.max_idle = host, port, api_key, max_idle
        self._idle: list[_Conn] = []
        self._closed = False
        # llama-server closes the connection after every event stream, so each stream would
        # dial the engine on its critical path: a spare, dialled while a stream is relayed,
        # takes that off the next request's path
        self.keep_spare = keep_spare
        self._dialling: asyncio.Task | None = None
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._fixed_headers = f"Host: {host}:{port}\r\n{auth}".encode()

    async def _connect(self) -> _Conn:
        _, conn = await asyncio.get_running_loop().create_connection(_Conn, self.host,
                                                                      self.port)
        return conn

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json",
                      timeout: float | None = None,
                      on_failure: Callable[[Exception], Awaitable[Exception]] | None = None,
                      connect_timeout: float | None = None) -> UpstreamResponse:
        """Send one request and read the status line and headers.

        A pooled connection that the engine has quietly closed fails before any byte of
        the reply; such a request is retried once on a fresh connection. ``on_failure``
        turns a failure while reading the body into the exception to raise instead.
        ``connect_timeout`` (default ``timeout``) bounds dialling alone.
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
                    conn = await asyncio.wait_for(
                        self._connect(), timeout if connect_timeout is None else connect_timeout)
                except OSError as e:  # includes TimeoutError
                    raise UpstreamError(f"cannot connect to engine on port {self.port}: "
                                        f"{e}") from e
            try:
                raw = await asyncio.wait_for(conn.send(payload), timeout)
            except asyncio.TimeoutError as e:
                # a slow engine is not a stale connection: never send the request twice
                conn.close()
                raise UpstreamError(f"engine did not answer within {timeout} s") from e
            except UpstreamError:
                conn.close()
                if reused and attempt == 0 and not conn.received:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return self._parse_head(conn, raw, on_failure)
        raise AssertionError("unreachable")

    def _parse_head(self, conn: _Conn, raw: bytes, on_failure) -> UpstreamResponse:
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
            if self.keep_spare and not self._idle:
                # after the first piece, not now: the dial costs this event loop a connect
                # and the engine an accept, and neither belongs on the first token's path
                conn.after_first_piece = self._dial_spare
        return UpstreamResponse(self, conn, code, reason[0] if reason else "", headers,
                                on_failure)

    def _dial_spare(self) -> None:
        if self._dialling is None and not self._closed:
            self._dialling = asyncio.get_running_loop().create_task(self._spare())

    async def _spare(self) -> None:
        try:
            conn = await self._connect()
        except OSError:
            return  # the engine is gone or busy: the next request dials and reports it
        finally:
            self._dialling = None
        self._release(conn)

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
        if self._dialling is not None:
            self._dialling.cancel()
        for conn in self._idle:
            conn.close()
        self._idle.clear()
