"""Writing a relayed stream to the client, one piece per engine read.

After the headers, tornado's write path costs two futures, a done-callback and one more
event-loop turn for every piece (``HTTP1Connection.write`` and ``IOStream.write``), a
good share of the proxy's own CPU per streamed token (bench/proxy_overhead.py). While
tornado has nothing queued for the connection, a piece can go straight to the socket
instead, framed as tornado would frame it; whatever cannot be sent at once goes through
tornado, in order, and so does every write once tornado has a backlog, until it has
drained it.

A relay thread (``engine.relay_threads``) writes the same way, from its own thread: a
piece the socket cannot take at once waits there, in ``poll``, until the client reads.
"""

from __future__ import annotations

import asyncio
import select
import threading
from collections.abc import Callable

from tornado import web
from tornado.concurrent import Future
from tornado.iostream import IOStream

from ..engine.relay_threads import call_on_loop


class StreamWriter:
    """``start()`` sends the headers; then call it with each piece of the reply.
    ``on_gone`` runs when the client has gone. A call returns None when the piece is sent,
    else tornado's future for it (pending while the client is slow to read: reading from
    the engine should pause until it is done).

    The headers go out as soon as the engine has answered, as the engine's own go out
    before its first token: formatting them overlaps the engine's work on that token, and
    the first piece then costs no more than the rest. Direct writes are only for a plain
    TCP or Unix stream (not TLS) to an HTTP/1.1 client, to which tornado sends a reply of
    unknown length chunked; anything else always goes through tornado."""

    def __init__(self, handler: web.RequestHandler, on_gone: Callable[[], None]):
        self._handler = handler
        self._on_gone = on_gone
        self._connection = handler.request.connection
        self._stream = self._connection.stream
        self._sock = None  # once the headers are out: the socket, if it may be written
        self._queued: Future | None = None  # tornado's last write; done once it is out
        self._loop: asyncio.AbstractEventLoop | None = None  # while a relay thread writes
        self._loop_thread: int | None = None  # the event loop's thread, meanwhile
        self._unsent = b""  # of a framed piece sent from the loop: the thread sends it first
        self._gone = False

    def start(self) -> None:
        """The status and headers, now (``RequestHandler.flush`` with no body yet)."""
        self._through_tornado(self._handler.flush())
        if type(self._stream) is IOStream and self._handler.request.version == "HTTP/1.1":
            self._sock = self._stream.socket

    def for_thread(self) -> bool:
        """Whether a relay thread may write from now until ``back_to_loop()``: only
        straight to the socket, and only once tornado has sent all it was given. A call
        then blocks until the piece is out, and raises ConnectionError once the client is
        gone (``on_gone`` runs on the event loop)."""
        if self._sock is None or not (self._queued is None or self._queued.done()):
            return False
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        return True

    def back_to_loop(self) -> None:
        self._loop = None
        if self._unsent and not self._gone:  # what the thread never got to send
            unsent, self._unsent = self._unsent, b""
            self._through_tornado(self._stream.write(unsent))

    def __call__(self, piece: bytes) -> Future | None:
        if self._loop is not None:
            self._send_from_thread(b"%x\r\n%b\r\n" % (len(piece), piece))
            return None
        queued = self._queued
        if self._sock is not None and (queued is None or queued.done()):
            frame = b"%x\r\n%b\r\n" % (len(piece), piece)  # one HTTP/1.1 chunk
            try:
                sent = self._sock.send(frame)
            except OSError:  # full: tornado queues it; closed: tornado fails the future
                sent = 0
            if sent == len(frame):
                return None
            if sent:  # the rest of this chunk waits in tornado's buffer, and so does the next
                return self._through_tornado(self._stream.write(memoryview(frame)[sent:]))
        return self._through_tornado(self._connection.write(piece))

    def send_framed(self, frame: bytes) -> None:
        """After ``for_thread()``: complete HTTP/1.1 chunks, framed as the engine framed
        them, sent as they are. From a relay thread it blocks and raises like a call; on
        the event loop (a stream's first read, before its thread is woken) it sends what
        the socket takes at once and leaves the rest to go first from the thread, or
        through tornado at ``back_to_loop()``."""
        if threading.get_ident() != self._loop_thread:
            if self._unsent:
                frame, self._unsent = self._unsent + frame, b""
            self._send_from_thread(frame)
            return
        try:
            sent = self._sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:  # reset, or closed by tornado (the client went)
            if not self._gone:
                self._gone = True
                self._on_gone()
            raise ConnectionError("the client has gone") from None
        self._unsent += frame[sent:]

    def _send_from_thread(self, frame: bytes) -> None:
        view, sock = memoryview(frame), self._sock
        while not self._gone:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                sent = 0
            except OSError:  # reset, or closed by tornado (the client went)
                break
            if sent == len(view):
                return
            view = view[sent:]
            if sock.fileno() < 0:
                break
            waiting = select.poll()  # the client is slow to read: wait for room
            waiting.register(sock.fileno(), select.POLLOUT)
            if any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
                   for _, ev in waiting.poll(1000)):
                break
        if not self._gone:
            self._gone = True
            call_on_loop(self._loop, self._on_gone)
        raise ConnectionError("the client has gone")

    def _through_tornado(self, sent: Future) -> Future:
        self._queued = sent
        if sent.done() and sent.exception() is not None:
            self._on_gone()
        return sent
