#!/usr/bin/env python3
"""The simplest Python relay in front of a real llama-server: the floor for what any Python
proxy adds to its time to first token and costs per streamed token on this machine.

    python bench/bare_relay.py LISTEN_PORT ENGINE_PORT

For each client connection it reads one request (head and Content-Length body), sends it
to the engine on a fresh connection, then copies the engine's reply to the client with
blocking ``recv`` and ``send`` until the engine closes (llama-server closes the connection
after every event stream), and closes the client's. No parsing of the reply, no auth, no
event loop: nothing but the two hops a proxy cannot avoid. The threads are kept for the
next connection, so ``/proc/PID/task/*/schedstat`` (``thread_cpu_s`` in
``proxy_overhead.py``) counts all of their CPU time. Prints "ready" once it listens.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading

WORKERS = 8  # more than the streams the benchmark runs through it at once


def _read_request(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = client.recv(65536)
        if not more:
            return b""
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        more = client.recv(65536)
        if not more:
            return b""
        body += more
    return head + b"\r\n\r\n" + body


def _serve(client: socket.socket, engine_port: int) -> None:
    with client, socket.create_connection(("127.0.0.1", engine_port)) as engine:
        for s in (client, engine):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = _read_request(client)
        if not request:
            return
        engine.sendall(request)
        while data := engine.recv(65536):
            client.sendall(data)


def _worker(connections: queue.SimpleQueue, engine_port: int) -> None:
    while True:
        client = connections.get()
        try:
            _serve(client, engine_port)
        except OSError:
            pass


def main() -> int:
    listen_port, engine_port = int(sys.argv[1]), int(sys.argv[2])
    connections: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(WORKERS):
        threading.Thread(target=_worker, args=(connections, engine_port), daemon=True).start()
    server = socket.create_server(("127.0.0.1", listen_port))
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        connections.put(client)


if __name__ == "__main__":
    sys.exit(main())
