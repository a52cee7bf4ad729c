"""Relayed stream pieces to the client: straight to the socket while tornado has nothing
queued, through tornado otherwise, in order, framed as HTTP/1.1 chunks either way."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from tornado.iostream import IOStream, StreamClosedError

from bodhi_jupyter.handlers.stream_writer import StreamWriter

from ..conftest import until
from .test_tokens_api import fake_aliases


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


class Connection:
    """What StreamWriter needs of tornado's HTTP1Connection: the stream, and ``write``,
    which frames a chunk and queues it on the stream (counted, to see which path ran)."""

    def __init__(self, stream: IOStream):
        self.stream = stream
        self.writes = 0

    def write(self, piece: bytes):
        self.writes += 1
        return self.stream.write(chunk(piece))


class Request:
    def __init__(self, connection: Connection, version: str):
        self.connection = connection
        self.version = version


HEAD = b"HTTP/1.1 200 OK\r\n\r\n"


class Handler:
    """RequestHandler.flush before anything was written: the headers alone."""

    def __init__(self, connection: Connection, version: str = "HTTP/1.1"):
        self.request = Request(connection, version)

    def flush(self):
        return self.request.connection.stream.write(HEAD)


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stream = IOStream(ours)
    yield stream, theirs
    stream.close()
    theirs.close()


def read_available(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not data:
            return out
        out += data


async def test_the_headers_go_first_then_each_piece_straight_to_the_socket(pair):
    stream, theirs = pair
    conn = Connection(stream)
    gone = []
    write = StreamWriter(Handler(conn), lambda: gone.append(True))
    write.start()
    assert read_available(theirs) == HEAD  # before the engine's first piece
    assert [write(b"first"), write(b"second"), write(b"third")] == [None, None, None]
    assert conn.writes == 0  # not one piece went through tornado's write path
    assert read_available(theirs) == chunk(b"first") + chunk(b"second") + chunk(b"third")
    assert not gone


async def test_a_client_slow_to_read_gets_every_byte_in_order(pair):
    stream, theirs = pair
    conn = Connection(stream)
    write = StreamWriter(Handler(conn), lambda: None)
    write.start()
    pieces = [json.dumps({"n": i, "pad": "x" * 3000}).encode() for i in range(2000)]
    results = [write(p) for p in pieces]  # nobody reads: the socket buffer fills up
    pending = [r for r in results if r is not None and not r.done()]
    assert pending, "the socket never filled: the test sent too little"
    first_queued = results.index(pending[0])
    assert None not in results[first_queued:]  # once there is a backlog, through tornado
    assert conn.writes >= len(pieces) - first_queued - 1
    received = b""

    def drain() -> bool:
        nonlocal received
        received += read_available(theirs)
        return all(r is None or r.done() for r in results)

    await until(drain, timeout=10)
    received += read_available(theirs)
    assert received == HEAD + b"".join(chunk(p) for p in pieces)
    writes = conn.writes
    assert write(b"after") is None  # the backlog is gone: straight to the socket again
    assert conn.writes == writes
    assert read_available(theirs) == chunk(b"after")


async def test_a_client_that_hung_up_is_reported_gone(pair):
    stream, theirs = pair
    gone = []
    write = StreamWriter(Handler(Connection(stream)), lambda: gone.append(True))
    write.start()
    write(b"first")
    theirs.close()
    for _ in range(3):  # the first send after a close may still succeed
        sent = write(b"next")
        if sent is not None:
            break
    assert gone == [True]
    assert sent.done() and isinstance(sent.exception(), StreamClosedError)
    assert stream.closed()


async def test_an_http_1_0_client_is_written_only_through_tornado(pair):
    stream, theirs = pair
    conn = Connection(stream)
    write = StreamWriter(Handler(conn, version="HTTP/1.0"), lambda: None)
    write.start()
    write(b"first")
    write(b"second")
    assert conn.writes == 2  # tornado frames HTTP/1.0 replies (not chunked) its own way


async def read_while(sock: socket.socket, pending) -> bytes:
    """Everything ``sock`` receives until ``pending(received so far)`` is false, and what
    is left then."""
    received = b""

    def drained() -> bool:
        nonlocal received
        received += read_available(sock)
        return not pending(received)
    await until(drained, timeout=20)
    return received + read_available(sock)


async def from_thread(fn, *args):
    """Run ``fn`` on a thread of its own, as a relay thread would, and wait for it."""
    result = []

    def run():
        try:
            result.append(fn(*args))
        except Exception as e:  # noqa: BLE001 - handed back to the test
            result.append(e)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    await until(lambda: not thread.is_alive(), timeout=20)
    return result[0]


async def test_a_relay_thread_writes_each_piece_straight_to_the_socket(pair):
    stream, theirs = pair
    conn = Connection(stream)
    write = StreamWriter(Handler(conn), lambda: None)
    write.start()
    assert write.for_thread()
    assert await from_thread(lambda: [write(b"first"), write(b"second")]) == [None, None]
    assert conn.writes == 0
    assert read_available(theirs) == HEAD + chunk(b"first") + chunk(b"second")
    write.back_to_loop()
    assert write(b"third") is None  # on the loop again, as before
    assert read_available(theirs) == chunk(b"third")


async def test_a_relay_thread_sends_framed_chunks_as_they_are(pair):
    stream, theirs = pair
    conn = Connection(stream)
    write = StreamWriter(Handler(conn), lambda: None)
    write.start()
    assert write.for_thread()
    framed = chunk(b"one") + chunk(b"two;x")
    assert await from_thread(write.send_framed, framed) is None
    assert conn.writes == 0
    assert read_available(theirs) == HEAD + framed


async def test_a_framed_piece_sent_from_the_loop_never_blocks_it_and_loses_nothing(pair):
    stream, theirs = pair
    conn = Connection(stream)
    write = StreamWriter(Handler(conn), lambda: None)
    write.start()
    assert write.for_thread()
    big = chunk(b"x" * (8 << 20))  # more than the socket takes at once
    write.send_framed(big)  # on the loop: returns at once, the rest kept
    after = chunk(b"after")
    sending = asyncio.ensure_future(from_thread(write.send_framed, after))
    received = await read_while(theirs, lambda _: not sending.done())
    assert sending.result() is None
    assert received == HEAD + big + after  # the rest went first, from the thread


async def test_what_the_loop_could_not_send_goes_through_tornado_if_no_thread_came(pair):
    stream, theirs = pair
    write = StreamWriter(Handler(Connection(stream)), lambda: None)
    write.start()
    assert write.for_thread()
    big = chunk(b"y" * (8 << 20))
    write.send_framed(big)
    write.back_to_loop()  # the stream ended in its first read
    expected = HEAD + big
    assert await read_while(theirs, lambda got: len(got) < len(expected)) == expected


async def test_a_relay_thread_waits_for_a_slow_client_and_loses_nothing(pair):
    stream, theirs = pair
    write = StreamWriter(Handler(Connection(stream)), lambda: None)
    write.start()
    assert write.for_thread()
    pieces = [json.dumps({"n": i, "pad": "x" * 3000}).encode() for i in range(2000)]
    writing = asyncio.ensure_future(from_thread(lambda: [write(p) for p in pieces]))
    received = await read_while(theirs, lambda _: not writing.done())
    assert writing.result() == [None] * len(pieces)
    assert received == HEAD + b"".join(chunk(p) for p in pieces)


async def test_a_relay_thread_whose_client_hung_up_is_told_and_so_is_the_loop(pair):
    stream, theirs = pair
    loop_threads = []
    write = StreamWriter(Handler(Connection(stream)),
                         lambda: loop_threads.append(threading.current_thread()))
    write.start()
    assert write.for_thread()
    theirs.close()

    def write_until_refused():
        for _ in range(100):  # the first send after a close may still succeed
            write(b"next")
    assert isinstance(await from_thread(write_until_refused), ConnectionError)
    await until(lambda: loop_threads)
    assert loop_threads == [threading.main_thread()]  # on_gone ran on the event loop


async def test_a_relay_thread_may_not_write_past_tornado_or_to_http_1_0(pair):
    stream, theirs = pair
    write = StreamWriter(Handler(Connection(stream), version="HTTP/1.0"), lambda: None)
    write.start()
    assert not write.for_thread()
    write = StreamWriter(Handler(Connection(stream)), lambda: None)
    write.start()
    while write(b"x" * 65536) is None:  # nobody reads: tornado ends up holding a backlog
        pass
    assert not write.for_thread()


class Relays(list):
    def __init__(self):
        super().__init__()
        self.framed: list[bool] = []


class TestThroughTheServer:
    """A raw client sees what the writer puts on the wire: the headers before the engine's
    first token, then chunks an HTTP/1.1 client can parse and reuse the connection after;
    an HTTP/1.0 client gets the events unframed, then the close."""

    @pytest.fixture
    def bodhi_config(self, fake_engine, smollm2_path):
        return fake_aliases(fake_engine, smollm2_path)

    @pytest.fixture
    def relayed_on(self, monkeypatch):
        """The threads that relayed an engine's stream with blocking reads (and in
        ``.framed``, whether each passed the engine's own chunks on)."""
        from bodhi_jupyter.engine import upstream
        threads, relay_blocking = Relays(), upstream._relay_blocking

        def recorded(*args):
            threads.append(threading.current_thread())
            threads.framed.append(args[-1])
            return relay_blocking(*args)
        monkeypatch.setattr(upstream, "_relay_blocking", recorded)
        return threads

    @staticmethod
    def request(path: str, token: str, version: str, text: str, n: int) -> bytes:
        body = json.dumps({"model": "fake-a", "stream": True, "max_tokens": n,
                           "messages": [{"role": "user", "content": text}]}).encode()
        return (f"POST {path}/chat/completions {version}\r\nHost: 127.0.0.1\r\n"
                f"Authorization: token {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    @staticmethod
    async def chunked_body(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            assert data.endswith(b"\r\n")
            if not size:
                return body
            body += data[:-2]

    async def test_http_1_1_headers_before_the_first_token_then_chunks(self, api_url,
                                                                        jupyter_token,
                                                                        relayed_on):
        url = urlsplit(api_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            writer.write(self.request(url.path, jupyter_token, "HTTP/1.1",
                                      "[delay=0.2] [stamp=1]", 3))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            head_at = time.time() * 1000
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"transfer-encoding: chunked" in head.lower()
            events = sse_data(await asyncio.wait_for(self.chunked_body(reader), 30))
            assert events[-1] == "[DONE]"
            stamps = [float(e["choices"][0]["delta"]["content"].strip(" @"))
                      for e in map(json.loads, events[:-1])
                      if e["choices"][0]["delta"].get("content")]
            assert len(stamps) == 3
            assert head_at < stamps[0]  # the engine sent its first token after the headers
            # the connection is still good for the next request
            writer.write(self.request(url.path, jupyter_token, "HTTP/1.1", "again [delay=0.02]",
                                      2))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200 ")
            events = sse_data(await asyncio.wait_for(self.chunked_body(reader), 30))
            assert events[-1] == "[DONE]" and len(events) >= 3
        finally:
            writer.close()
        assert len(relayed_on) == 2 and threading.main_thread() not in relayed_on
        assert relayed_on.framed == [True, True]  # the engine's chunks, passed on as they came

    async def test_streams_past_the_relay_threads_cap_go_through_the_event_loop(
            self, api_url, jupyter_token, relayed_on, monkeypatch):
        from bodhi_jupyter.engine.relay_threads import relay_threads
        monkeypatch.setattr(relay_threads, "max_active", 1)
        await until(lambda: relay_threads.has_room)  # an earlier test's relay has ended
        url = urlsplit(api_url)

        async def stream() -> list[str]:
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            try:  # each stream's chunks come 0.3 s apart: the two overlap (2 slots)
                writer.write(self.request(url.path, jupyter_token, "HTTP/1.1",
                                          "[delay=0.3]", 3))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert head.startswith(b"HTTP/1.1 200 ")
                return sse_data(await asyncio.wait_for(self.chunked_body(reader), 30))
            finally:
                writer.close()

        for events in await asyncio.gather(stream(), stream()):
            assert events[-1] == "[DONE]"
            assert sum(bool(json.loads(e)["choices"][0]["delta"].get("content"))
                       for e in events[:-1]) == 3
        assert len(relayed_on) == 1  # the other was relayed by the event loop
        await until(lambda: relay_threads.has_room)  # the thread gave its place back

    async def test_http_1_0_gets_the_events_unframed_then_the_close(self, api_url,
                                                                     jupyter_token,
                                                                     relayed_on):
        url = urlsplit(api_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            writer.write(self.request(url.path, jupyter_token, "HTTP/1.0", "hi", 4))
            reply = await asyncio.wait_for(reader.read(), 30)  # until the server closes
        finally:
            writer.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding" not in head.lower()
        events = sse_data(body)
        assert events[-1] == "[DONE]"
        assert sum(bool(json.loads(e)["choices"][0]["delta"].get("content"))
                   for e in events[:-1]) == 4
        assert relayed_on == []  # tornado frames HTTP/1.0: the event loop relayed it


def sse_data(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
