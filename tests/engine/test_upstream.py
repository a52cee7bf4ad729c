"""The keep-alive client the proxy uses to talk to an engine, against the fake
llama-server."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bodhi_jupyter.engine.upstream import ChunkedParser, UpstreamError, UpstreamPool

from ..conftest import FAKE_SERVER, until

KEY = "k"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServer:
    """tests/fake_llama_server.py in a subprocess, restartable on the same port."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE_SERVER), "--port", str(self.port), "--api-key", KEY,
                 "-a", "fake"], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"fake server exited:\n{self.log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert time.monotonic() < deadline, "fake server did not become healthy"
            time.sleep(0.01)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """Poll the server's stderr; yields to the event loop, which closes sockets."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log.read_text()}"
            await asyncio.sleep(0.01)


@pytest.fixture
def fake_server(tmp_path):
    server = FakeServer(tmp_path / "fake-server.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def pool(fake_server):
    p = UpstreamPool("127.0.0.1", fake_server.port, KEY, keep_spare=False)
    yield p
    p.close()


def chat(max_tokens: int = 3, stream: bool = False, text: str = "hi") -> bytes:
    return json.dumps({"model": "fake", "max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


def local_port(conn) -> int:
    return conn.transport.get_extra_info("sockname")[1]


@pytest.fixture(params=["loop", "thread"])
def relay(request):
    """``relay(response, sink)``: the body through the event loop's read callback, or
    through a relay thread (which only an event stream may ask for)."""
    in_thread = request.param == "thread"

    async def run(r, sink):
        if in_thread:
            assert r.relays_in_thread
        await r.relay(sink, in_thread=in_thread)
    return run


def first_piece_sink():
    """A future for the first piece, and a sink that sets it from any thread."""
    loop = asyncio.get_running_loop()
    first = loop.create_future()

    def sink(piece):
        loop.call_soon_threadsafe(lambda: first.done() or first.set_result(piece))
    return first, sink


async def test_sequential_requests_share_one_connection(pool):
    r = await pool.request("GET", "/v1/models")
    assert r.status == 200
    assert json.loads(await r.read())["data"][0]["id"] == "fake"
    assert len(pool._idle) == 1
    conn = pool._idle[0]
    sock, port = conn.transport.get_extra_info("socket"), local_port(conn)

    for i in range(5):
        r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=i + 1))
        body = json.loads(await r.read())
        assert r.status == 200
        assert body["usage"]["completion_tokens"] == i + 1
        assert len(pool._idle) == 1
        assert pool._idle[0] is conn
        assert conn.transport.get_extra_info("socket") is sock
        assert local_port(conn) == port


async def test_streaming_yields_sse_events_in_order(pool, relay):
    r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=4, stream=True))
    assert r.status == 200
    assert r.content_type == "text/event-stream"
    assert r.headers["transfer-encoding"] == "chunked"
    assert pool._idle == []  # busy while the body is read

    pieces = []
    await relay(r, pieces.append)

    chunks = [c + b"\n\n" for c in b"".join(pieces).split(b"\n\n") if c]
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert all(c.startswith(b"data: ") for c in chunks)
    events = [json.loads(c[6:]) for c in chunks[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == \
        "fake reply 1 2"
    assert [e["choices"][0]["finish_reason"] for e in events] == [None] * 4 + ["stop"]
    # llama-server closes the connection after every event stream, so it is not pooled
    assert pool._idle == [] and r._conn.transport.is_closing()


async def test_closing_mid_stream_drops_the_connection(pool, fake_server, relay):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=200, stream=True, text="go [delay=0.02]"))
    first, sink = first_piece_sink()
    relaying = asyncio.ensure_future(relay(r, sink))
    assert b'"role":"assistant"' in await first
    conn = r._conn
    port = local_port(conn)

    r.close()
    with pytest.raises(UpstreamError):
        await relaying

    assert pool._idle == []
    assert not conn.alive and conn.transport.is_closing()
    await fake_server.wait_for_log("client disconnected")  # the engine stopped generating
    r = await pool.request("GET", "/v1/models")
    await r.read()
    assert r.status == 200
    assert local_port(pool._idle[0]) != port


async def test_abandoned_iteration_closes_the_connection(pool, fake_server, relay):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=200, stream=True, text="go [delay=0.02]"))
    first, sink = first_piece_sink()
    relaying = asyncio.ensure_future(relay(r, sink))
    await first
    relaying.cancel()  # e.g. the proxy's request was abandoned: its task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await relaying

    assert pool._idle == []
    assert r._conn.transport.is_closing()
    await fake_server.wait_for_log("client disconnected")


async def test_stale_pooled_connection_is_retried_after_a_restart(pool, fake_server):
    r = await pool.request("GET", "/v1/models")
    await r.read()
    (stale,) = pool._idle
    stale_port = local_port(stale)
    opened = count_connects(pool)

    # Restart without yielding to the event loop: the pool has not yet seen the old
    # connection close, so it will try it first, as after a real engine restart.
    fake_server.kill()
    fake_server.start()
    assert stale.alive

    r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=2))
    body = json.loads(await r.read())

    assert r.status == 200 and body["choices"][0]["message"]["content"] == "fake reply"
    assert opened[0] == 1
    assert not stale.alive
    (fresh,) = pool._idle
    assert fresh is not stale and local_port(fresh) != stale_port


async def test_engine_crash_mid_stream_is_an_upstream_error(pool, relay):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=10, stream=True, text="[crash-after=2]"))
    got = []
    with pytest.raises(UpstreamError):
        await relay(r, got.append)
    assert b"".join(got).count(b"data: ") == 2
    assert pool._idle == []


async def test_dead_port_raises_upstream_error():
    port = free_port()  # nothing listens there
    p = UpstreamPool("127.0.0.1", port, KEY)
    try:
        with pytest.raises(UpstreamError, match=str(port)):
            await p.request("GET", "/health", timeout=5)
    finally:
        p.close()


async def test_wrong_key_is_401(fake_server):
    for key in ("wrong", None):
        p = UpstreamPool("127.0.0.1", fake_server.port, key)
        try:
            r = await p.request("GET", "/v1/models")
            body = json.loads(await r.read())
            assert r.status == 401
            assert body["error"]["type"] == "authentication_error"
            health = await p.request("GET", "/health")  # same connection, no key needed
            await health.read()
            assert health.status == 200
        finally:
            p.close()


def count_connects(pool: UpstreamPool) -> list[int]:
    """Counts new connections the pool opens from now on."""
    opened = [0]
    connect = pool._connect

    async def counting_connect():
        opened[0] += 1
        return await connect()

    pool._connect = counting_connect
    return opened


async def test_request_timeout(pool):
    with pytest.raises((UpstreamError, asyncio.TimeoutError)):
        await pool.request("POST", "/v1/chat/completions", chat(text="[delay=5]"), timeout=0.2)
    assert pool._idle == []


async def test_timeout_on_a_pooled_connection_is_not_retried(pool):
    r = await pool.request("GET", "/health")
    await r.read()
    assert len(pool._idle) == 1
    opened = count_connects(pool)

    with pytest.raises((UpstreamError, asyncio.TimeoutError)):
        await pool.request("POST", "/v1/chat/completions", chat(text="[delay=5]"), timeout=0.2)

    assert opened[0] == 0



class _Transport(asyncio.Transport):
    """Records what the protocol asks of its socket."""

    def __init__(self):
        super().__init__()
        self.written, self.paused, self.closed = [], False, False

    def write(self, data):
        self.written.append(data)

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


def protocol_with_head(head: bytes):
    from bodhi_jupyter.engine.upstream import _Conn
    conn = _Conn()
    conn.connection_made(_Transport())
    waiter = conn.send(b"GET / HTTP/1.1\r\n\r\n")
    conn.data_received(head)
    return conn, waiter


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
BODY = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS) + b"0\r\n\r\n"


async def test_chunked_body_split_anywhere_is_reassembled():
    for step in (1, 3, 7, len(BODY)):
        conn, head = protocol_with_head(CHUNKED_HEAD)
        assert (await head).startswith(b"HTTP/1.1 200")
        pieces = []
        done = conn.read_body(1, 0, pieces.append)
        for i in range(0, len(BODY), step):
            conn.data_received(BODY[i:i + step])
        assert await done == b""
        assert b"".join(pieces) == b"".join(EVENTS)
        if step == len(BODY):  # chunks that arrive together are handed on in one piece
            assert pieces == [b"".join(EVENTS)]


def test_framed_chunks_split_anywhere_come_out_whole_and_as_they_came():
    framed_body = BODY[:-5]  # the engine's chunks, without the last, empty one
    for step in (1, 3, 7, 40, len(BODY)):
        parser, out, done = ChunkedParser(), [], []
        for i in range(0, len(BODY), step):
            framed, ended = parser.feed_framed(BODY[i:i + step])
            out.append(framed)
            done.append(ended)
        assert b"".join(out) == framed_body
        assert done[-1] and not any(done[:-1])
        for framed in out:  # only ever whole chunks
            assert ChunkedParser().feed(framed + b"0\r\n\r\n") == (
                ChunkedParser.payloads(framed), True)
    assert ChunkedParser.payloads(framed_body) == b"".join(EVENTS)
    # one read that is one chunk (how an engine sends a token) is handed on untouched
    one = b"%x\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0])
    assert ChunkedParser().feed_framed(one) == (one, False)
    # ... read by read
    parser = ChunkedParser()
    chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS]
    assert [parser.feed_framed(c) for c in chunks] == [(c, False) for c in chunks]
    assert parser.feed_framed(b"0\r\n\r\n") == (b"", True)
    # a chunk extension and a trailer are no trouble
    assert ChunkedParser().feed_framed(b"3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n") == (
        b"3;x=1\r\nabc\r\n", True)


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n", b"3\r\nabcd\r\n", b"-1\r\nx\r\n"])
def test_a_malformed_framed_body_is_refused(body):
    with pytest.raises(ValueError):
        ChunkedParser().feed_framed(body)


async def test_a_framed_relay_hands_the_thread_the_engines_own_chunks(pool):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=5, stream=True, text="go [delay=0.01]"))
    frames = []
    await r.relay(frames.append, in_thread=True, framed=True)
    payloads = b"".join(ChunkedParser.payloads(f) for f in frames)
    assert payloads.rstrip().endswith(b"data: [DONE]")
    assert all(f.endswith(b"\r\n") and int(f.split(b"\r\n", 1)[0], 16) for f in frames)
    with pytest.raises(ValueError):  # framing belongs to the thread's relay only
        await r.relay(frames.append, framed=True)


async def test_a_framed_relay_sends_its_first_piece_from_the_loop_then_wakes_a_thread(pool):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=4, stream=True, text="go [delay=0.05]"))
    ran_on = []
    await r.relay(lambda frame: ran_on.append(threading.current_thread()), in_thread=True,
                  framed=True)
    assert ran_on[0] is threading.main_thread()
    assert len(ran_on) > 1 and threading.main_thread() not in ran_on[1:]


async def test_a_framed_stream_that_ends_in_its_first_read_wakes_no_thread():
    from bodhi_jupyter.engine.relay_threads import relay_threads
    await until(lambda: relay_threads.has_room)
    conn, head = protocol_with_head(CHUNKED_HEAD + BODY)  # the whole body came at once
    await head
    active, frames = relay_threads._active, []
    assert await conn.relay_in_thread(frames.append, framed=True) == b""
    assert frames == [BODY[:-5]]
    assert relay_threads._active == active  # its place was given back


@pytest.mark.parametrize("arrival", ["malformed", "closed"])
async def test_a_framed_relay_that_fails_before_its_thread_gives_its_place_back(arrival):
    from bodhi_jupyter.engine.relay_threads import relay_threads
    conn, head = protocol_with_head(CHUNKED_HEAD)
    await head
    active = relay_threads._active
    done = conn.relay_in_thread(lambda frame: None, framed=True)
    assert relay_threads._active == active + 1  # held while the first piece is awaited
    if arrival == "malformed":
        conn.data_received(b"zz\r\n")
    else:
        conn.connection_lost(None)
    with pytest.raises(UpstreamError):
        await done
    assert relay_threads._active == active


async def test_body_bytes_that_came_with_the_head_are_not_lost():
    conn, head = protocol_with_head(CHUNKED_HEAD + BODY[:10])
    await head
    conn.data_received(BODY[10:])  # before the body is asked for
    assert await conn.read_body(1, 0, None) == b"".join(EVENTS)
    assert conn.alive


async def test_a_full_consumer_pauses_reading_until_it_drains():
    conn, head = protocol_with_head(CHUNKED_HEAD)
    await head
    drained = asyncio.get_running_loop().create_future()
    done = conn.read_body(1, 0, lambda piece: drained)
    conn.data_received(BODY[:30])  # one whole chunk and a bit
    assert conn.transport.paused
    drained.set_result(None)
    await asyncio.sleep(0)  # the done-callback runs on the next loop pass
    assert not conn.transport.paused
    conn.data_received(BODY[30:])
    await done


async def test_body_failure_is_turned_into_the_callers_error_unless_abandoned(pool, relay):
    class EngineDied(Exception):
        pass

    async def on_failure(e):
        return EngineDied(str(e))

    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=200, stream=True, text="go [delay=0.02]"),
                           on_failure=on_failure)
    r.close()  # we hung up ourselves: that is no engine failure
    with pytest.raises(UpstreamError):
        await r.read()

    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=10, stream=True, text="[crash-after=2]"),
                           on_failure=on_failure)
    with pytest.raises(EngineDied):
        await relay(r, lambda piece: None)


async def test_the_spare_is_dialled_after_the_first_piece_not_on_its_path(fake_server, relay):
    """The headers come first and the first chunk 100 ms later: a spare dialled at the
    headers would be connected long before that chunk; it must wait until it is relayed."""
    pool = UpstreamPool("127.0.0.1", fake_server.port, KEY)
    try:
        opened = count_connects(pool)
        r = await pool.request("POST", "/v1/chat/completions",
                               chat(max_tokens=2, stream=True, text="go [delay=0.1]"))
        seen = []
        await relay(r, lambda piece: seen.append(opened[0]))
        assert seen[0] == 1  # only the stream's own connection when the first piece came
        await until(lambda: len(pool._idle) == 1)
        assert opened[0] == 2
    finally:
        pool.close()


async def test_a_spare_connection_is_dialled_while_a_stream_is_relayed(fake_server):
    pool = UpstreamPool("127.0.0.1", fake_server.port, KEY)
    try:
        opened = count_connects(pool)
        r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=3, stream=True))
        await r.relay(lambda piece: None)
        await until(lambda: len(pool._idle) == 1)
        assert opened[0] == 2  # the stream's own, and the spare
        (spare,) = pool._idle
        assert spare is not r._conn and spare.alive

        r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=3, stream=True))
        assert r._conn is spare  # the next stream dials nothing on its way
        await r.relay(lambda piece: None)
        await until(lambda: len(pool._idle) == 1)
        assert opened[0] == 3
    finally:
        pool.close()


async def test_only_an_event_stream_on_a_plain_socket_may_be_relayed_by_a_thread(pool):
    r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=2))
    assert not r.relays_in_thread  # a whole answer on a connection kept for the next one
    await r.read()
    r = await pool.request("POST", "/v1/chat/completions", chat(max_tokens=2, stream=True))
    assert r.relays_in_thread
    r.close()
    assert not r.relays_in_thread  # abandoned


async def test_the_relay_thread_runs_the_sink_and_leaves_the_loop_alone(pool):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=5, stream=True, text="go [delay=0.01]"))
    ran_on = set()
    await r.relay(lambda piece: ran_on.add(threading.current_thread()), in_thread=True)
    assert ran_on and threading.main_thread() not in ran_on
    assert pool._idle == [] and r._conn.transport.is_closing()


async def test_a_sink_whose_client_left_makes_the_thread_hang_up_on_the_engine(pool,
                                                                               fake_server):
    r = await pool.request("POST", "/v1/chat/completions",
                           chat(max_tokens=200, stream=True, text="go [delay=0.02]"))
    pieces = []

    def sink(piece):
        pieces.append(piece)
        raise ConnectionError("the client has gone")

    with pytest.raises(UpstreamError, match="consumer"):
        await r.relay(sink, in_thread=True)
    assert len(pieces) == 1  # nothing more was read
    await fake_server.wait_for_log("client disconnected")  # the engine stopped generating
