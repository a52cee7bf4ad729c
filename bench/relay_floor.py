#!/usr/bin/env python3
"""What relaying one paced chunk costs the simplest possible Python relays on this machine:
an asyncio protocol that sends each piece it reads straight on, nothing else, and a thread
that does the same with blocking ``recv`` and ``send`` (how the proxy relays an engine's
event stream, ``bodhi_jupyter/engine/relay_threads.py``). They are the floors for the
proxy's own CPU per streamed chunk, measured at the gaps the proxy sees.

    python bench/relay_floor.py

A sender process writes HTTP-chunk-sized pieces with a fixed gap, the relay (this process)
forwards them, a receiver process reads them; the relay's CPU time is its own thread's
(``time.thread_time``). On a virtual machine a process woken after a longer sleep runs its
first instructions slower, so the cost per chunk grows with the gap whatever the relay does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import threading
import time

PIECE = b"f8\r\n" + b"d" * 248 + b"\r\n"  # about one streamed token's chunk


def _sender(port: int, chunks: int, gap: float) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(chunks):
            time.sleep(gap)
            s.sendall(PIECE)


def _receiver(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        while conn.recv(65536):
            pass


class _Relay(asyncio.BufferedProtocol):
    def __init__(self, out: socket.socket, done: asyncio.Future):
        self.out, self.done = out, done
        self.buffer = memoryview(bytearray(65536))
        self.cpu_start: float | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.cpu_start is None:  # from the first piece: not the set-up
            self.cpu_start = time.thread_time()
        self.out.send(bytes(self.buffer[:nbytes]))

    def connection_lost(self, exc) -> None:
        self.done.set_result(time.thread_time() - self.cpu_start)


def _receiving_end():
    """A receiver process, and the relay's connection to it."""
    ctx = multiprocessing.get_context("fork")
    listener = socket.create_server(("127.0.0.1", 0))
    receiver = ctx.Process(target=_receiver, args=(listener,), daemon=True)
    receiver.start()
    out = socket.create_connection(listener.getsockname())
    listener.close()
    out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx, receiver, out


async def _relay(chunks: int, gap: float) -> float:
    """CPU microseconds per chunk of the relay's thread."""
    ctx, receiver, out = _receiving_end()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    server = await loop.create_server(lambda: _Relay(out, done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = ctx.Process(target=_sender, args=(port, chunks, gap), daemon=True)
    sender.start()
    try:
        cpu = await asyncio.wait_for(done, chunks * gap * 3 + 30)
    finally:
        server.close()
        out.close()
        sender.join(10)
        receiver.join(10)
    return cpu * 1e6 / (chunks - 1)  # the first piece started the clock


def _thread_relay(chunks: int, gap: float) -> float:
    """CPU microseconds per chunk of a relay thread parked in a blocking ``recv``."""
    ctx, receiver, out = _receiving_end()
    server = socket.create_server(("127.0.0.1", 0))
    sender = ctx.Process(target=_sender, args=(server.getsockname()[1], chunks, gap),
                         daemon=True)
    sender.start()
    conn, _ = server.accept()
    server.close()
    cpu = []

    def relay() -> None:
        out.send(conn.recv(65536))
        start = time.thread_time()  # from the first piece: not the set-up
        while piece := conn.recv(65536):
            out.send(piece)
        cpu.append(time.thread_time() - start)

    try:
        thread = threading.Thread(target=relay, daemon=True)
        thread.start()
        thread.join(chunks * gap * 3 + 30)
    finally:
        conn.close()
        out.close()
        sender.join(10)
        receiver.join(10)
    return cpu[0] * 1e6 / (chunks - 1)


def measure(gaps_s: tuple[float, ...], seconds: float = 5.0) -> dict[str, dict[str, float]]:
    """CPU µs per chunk of each relay ("asyncio", "thread") at each gap (in ms, as keys),
    ``seconds`` of stream each."""
    runs = {f"{gap * 1e3:g}": max(int(seconds / gap), 50) for gap in gaps_s}
    return {"asyncio": {g: asyncio.run(_relay(n, float(g) / 1e3)) for g, n in runs.items()},
            "thread": {g: _thread_relay(n, float(g) / 1e3) for g, n in runs.items()}}


def main() -> int:
    for relay, floors in measure((0.005, 0.025)).items():
        for gap, us in floors.items():
            print(f"bare {relay} relay, chunks {gap} ms apart: {us:.1f} us CPU per chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
