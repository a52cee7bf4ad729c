#!/usr/bin/env python3
"""What the bodhi_jupyter proxy costs: the same requests sent straight to the engine and
through a real Jupyter server, in one run.

    python bench/proxy_overhead.py            # full run (a few minutes)
    python bench/proxy_overhead.py --quick    # smoke run (about a minute)

Phases:
  0. start-up: the same `jupyter server` with the extension on and off (bench/startup.py)
  A. real engine (bodhi-llama-server with the packaged smollm2-135m-instruct)
     1. added latency of a non-streaming 1-token chat request (alternating pairs), and
        the same request beside an empty Jupyter request (bench/jupyter_floor.py)
     2. time to first content token of a streaming chat request (alternating pairs)
     3. aggregate streamed tokens/s with 1, 8 and 32 concurrent streaming clients
  B. stand-in engine (tests/fake_llama_server.py): the proxy's own cost
     4. the same latency pairs; time to first chunk with chunks at once and paced 5 ms
        apart (as a model sends them); Jupyter CPU per chunk over a long paced stream, at
        5 and 25 ms gaps, beside bare asyncio and thread relays' at the same gaps
        (bench/relay_floor.py); the same 1-token request beside an empty Jupyter request
        (bench/jupyter_floor.py), back to back and after idle: what any request to this
        Jupyter server costs; streamed chunks/s with 8 and 32 clients
     5. the upstream client against httpx and tornado's clients (bench/upstream_clients.py)

Direct requests go to http://127.0.0.1:ENGINE_PORT/v1/... with the engine's API key (read
from the engine process's environment); proxied ones to http://127.0.0.1:P/bench/bodhi/v1/...
with the Jupyter token. Every HTTP client is created once and kept alive. Results are printed
and written to bench/results/latest.json.

Nothing here touches the user's Jupyter files: data, runtime and config dirs live in a temp
dir that is removed at the end. Every server started is stopped, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "fake_llama_server.py"
RESULTS = ROOT / "bench" / "results" / "latest.json"
MODEL = "smollm2-135m-instruct"
# An explicit system message: otherwise the extension adds the model's default system prompt
# to proxied chat requests only, and direct and proxied requests would differ in prompt length.
SYSTEM = "You are a helpful assistant."
BASE = "/bench/"

TARGET_ADDED_P50_MS = 1.5
TARGET_TTFT_DIFF_MS = 1.5
TARGET_TPUT_RATIO = 0.97
TARGET_CPU_PER_CHUNK_MS = 0.1
TARGET_START_MS = 150
TARGET_START_MIB = 20
PACING_S = 0.005  # the stand-in's gap between streamed chunks, like a model's
SLOW_PACING_S = 0.025  # ... and a slower model's (40 tokens/s)


# -- small helpers -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values_ms: list[float]) -> dict:
    return {"n": len(values_ms), "p50_ms": pct(values_ms, 50), "p90_ms": pct(values_ms, 90),
            "p99_ms": pct(values_ms, 99), "mean_ms": statistics.fmean(values_ms),
            "min_ms": min(values_ms), "max_ms": max(values_ms)}


def chat_body(user: str, max_tokens: int, stream: bool, ignore_eos: bool = False) -> bytes:
    body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user}]}
    if stream:
        body["stream"] = True
    if ignore_eos:
        body["ignore_eos"] = True
    return json.dumps(body).encode()


def content_of(line: bytes) -> str | None:
    """The text a ``data: {...}`` SSE line carries, or None (role-only / final / [DONE])."""
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return None
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    choices = obj.get("choices") or []
    if not choices:
        return None
    c = choices[0]
    text = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
    return text if isinstance(text, str) and text else None


def prompt_ms_of(line: bytes) -> float | None:
    """The engine's own time on the prompt, from the ``timings`` llama-server puts in a
    stream's last event; None for any other line."""
    if not line.startswith(b"data:") or b'"timings"' not in line:
        return None
    try:
        value = json.loads(line[5:])["timings"]["prompt_ms"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


def _task_cpu_ns(pid: int, tid: int | str) -> int:
    """One thread's CPU nanoseconds, from /proc schedstat (raises OSError when gone)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (ValueError, IndexError):
        return 0


def thread_cpu_s(pid: int) -> float:
    """CPU seconds of a process's live threads, to the nanosecond (schedstat), where
    psutil's figure moves in 10 ms ticks: for windows of a few seconds. A thread that
    ends inside the window is not counted."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                total += _task_cpu_ns(pid, tid)
            except OSError:
                pass
    except OSError:
        return cpu_s(pid)
    return total / 1e9 if total else cpu_s(pid)


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of a process's main thread (for a Jupyter server: its event loop)."""
    try:
        return _task_cpu_ns(pid, pid) / 1e9
    except OSError:
        return 0.0


class BenchError(RuntimeError):
    pass


# -- processes -------------------------------------------------------------------------------
@dataclass
class Engine:
    pid: int
    port: int
    api_key: str
    cmdline: list[str]


class JupyterServer:
    """A real ``jupyter server`` subprocess with the extension, isolated in a temp dir."""

    def __init__(self, tmp: Path, name: str, extra_args: list[str] = (),
                 extra_env: dict[str, str] | None = None):
        self.name = name
        self.extra_env = extra_env or {}
        self.dir = tmp / name
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "jupyter.log"
        self.known_engine_pids: set[int] = set()

    def start(self, timeout: float = 120) -> None:
        for sub in ("data", "runtime", "config", "root"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        env = {**os.environ,
               "JUPYTER_DATA_DIR": str(self.dir / "data"),
               "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
               "JUPYTER_CONFIG_DIR": str(self.dir / "config"), **self.extra_env}
        cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
               "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.base_url={BASE}",
               f"--ServerApp.root_dir={self.dir / 'root'}",
               "--EngineSupervisor.keep_alive=-1",
               "--ModelRegistry.default_parallel=32", "--ModelRegistry.default_ctx_size=16384",
               *self.extra_args]
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        finally:
            log.close()
        url = f"http://127.0.0.1:{self.port}{BASE}api/status"
        req = urllib.request.Request(url, headers={"Authorization": f"token {self.token}"})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"jupyter server ({self.name}) exited with code "
                                 f"{self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"jupyter server ({self.name}) not up within {timeout:g} s:"
                                 f"\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def find_engine(self) -> Engine:
        """The llama-server child: its port is on its command line, its key in its env."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
                if "--port" not in cmd or "--alias" not in cmd:
                    continue
                port = int(cmd[cmd.index("--port") + 1])
                key = child.environ().get("LLAMA_API_KEY", "")
            except (psutil.Error, ValueError, IndexError):
                continue
            self.known_engine_pids.add(child.pid)
            return Engine(child.pid, port, key, cmd)
        raise BenchError(f"no llama-server child of jupyter server ({self.name}) found:\n"
                         f"{self.log_tail()}")

    def stop(self, grace: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"  ! jupyter server ({self.name}) ignored SIGTERM for {grace:g} s; "
                      "killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        # engines die with their parent (PR_SET_PDEATHSIG); make sure anyway
        for pid in self.known_engine_pids:
            try:
                p = psutil.Process(pid)
                p.terminate()
                p.wait(5)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                p.kill()


# -- synchronous keep-alive client (latency, TTFT) ------------------------------------------------
class Client:
    def __init__(self, name: str, port: int, prefix: str, auth: str):
        self.name, self.port, self.prefix = name, port, prefix
        self.headers = {"Authorization": auth, "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.conn.connect()
        self.connects = 1
        self.stream_keepalive = True
        self.prompt_ms: float | None = None  # the engine's, from the last stream ttft read

    def _send(self, path: str, body: bytes) -> http.client.HTTPResponse:
        # A server may close a kept-alive connection it found idle too long (llama-server
        # after 5 s, which a loaded machine can reach mid-phase). Then the request is sent
        # once more on a fresh connection; it is counted in "reconnects", never hidden.
        for attempt in (0, 1):
            try:
                self.conn.request("POST", self.prefix + path, body, self.headers)
                return self.conn.getresponse()
            except (BrokenPipeError, ConnectionResetError,
                    http.client.RemoteDisconnected) as e:
                self.conn.close()
                if attempt:
                    raise BenchError(f"{self.name}: connection failed twice: {e!r}") from e
                self.conn.connect()
                self.connects += 1
            except (ConnectionError, http.client.HTTPException) as e:
                self.conn.close()
                raise BenchError(f"{self.name}: kept-alive connection failed: {e!r}") from e
        raise AssertionError("unreachable")

    def post(self, path: str, body: bytes) -> tuple[float, bytes]:
        """Seconds from send to the whole body read, and the body."""
        t0 = time.perf_counter()
        r = self._send(path, body)
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise BenchError(f"{self.name}: HTTP {r.status}: {data[:300]!r}")
        if r.will_close:  # e.g. llama-server's keep-alive max of 100 requests
            self.reconnect()
        return dt, data

    def reconnect(self) -> None:
        """A fresh connection, made outside any timed region."""
        self.conn.close()
        self.conn.connect()
        self.connects += 1

    def ttft(self, path: str, body: bytes) -> tuple[float, int]:
        """Seconds to the first SSE event with content, and the content events seen.

        With ``stream_keepalive`` False (llama-server closes the connection after every
        streamed reply although it announces keep-alive) a fresh connection is opened
        after the stream, outside the timed region."""
        t0 = time.perf_counter()
        r = self._send(path, body)
        if r.status != 200:
            raise BenchError(f"{self.name}: HTTP {r.status}: {r.read()[:300]!r}")
        first, n = None, 0
        self.prompt_ms = None
        while line := r.readline():
            if content_of(line) is not None:
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
            elif (ms := prompt_ms_of(line)) is not None:
                self.prompt_ms = ms
        if not self.stream_keepalive or r.will_close:
            self.reconnect()
        if first is None:
            raise BenchError(f"{self.name}: stream carried no content")
        return first, n

    def close(self) -> None:
        self.conn.close()


def probe_stream_keepalive(client: Client) -> bool:
    """Does the server keep the connection open after a streamed reply?"""
    client.stream_keepalive = True
    client.ttft("chat/completions", chat_body("Say yes.", max_tokens=2, stream=True))
    time.sleep(0.2)  # give a closing server time to send its FIN
    connects = client.connects
    try:
        client.post("chat/completions", chat_body("hi", max_tokens=1, stream=False))
        kept = client.connects == connects  # a resend on a fresh connection means closed
    except BenchError:
        kept = False
        client.reconnect()
    client.stream_keepalive = kept
    client.connects = 1
    return kept


def fresh_connections(*clients: Client) -> None:
    """Before a timed phase: an engine may have closed a connection left idle meanwhile
    (llama-server's keep-alive timeout), and a retry must not happen inside the timing."""
    for c in clients:
        c.reconnect()
        c.connects -= 1  # planned, not a reconnect the server forced


def latency_pairs(direct: Client, proxied: Client, pairs: int, warmup: int,
                  jupyter_pid: int, engine_pid: int) -> dict:
    path = "chat/completions"
    body = chat_body("Say hi.", max_tokens=1, stream=False)
    fresh_connections(direct, proxied)
    for _ in range(warmup):
        direct.post(path, body)
        proxied.post(path, body)
    d, p = [], []
    j_cpu0, e_cpu0 = cpu_s(jupyter_pid), cpu_s(engine_pid)
    for i in range(pairs):
        first, second = (direct, proxied) if i % 2 == 0 else (proxied, direct)
        t1, b1 = first.post(path, body)
        t2, b2 = second.post(path, body)
        td, tp = (t1, t2) if first is direct else (t2, t1)
        d.append(td * 1e3)
        p.append(tp * 1e3)
    j_cpu, e_cpu = cpu_s(jupyter_pid) - j_cpu0, cpu_s(engine_pid) - e_cpu0
    for raw in (b1, b2):
        if not json.loads(raw).get("choices"):
            raise BenchError(f"unexpected reply: {raw[:300]!r}")
    diff = [b - a for a, b in zip(d, p)]
    return {"direct": summary(d), "proxied": summary(p), "diff": summary(diff),
            "jupyter_cpu_ms_per_request": j_cpu * 1e3 / pairs,
            "engine_cpu_ms_per_request": e_cpu * 1e3 / (2 * pairs),
            "reconnects": {"direct": direct.connects - 1, "proxied": proxied.connects - 1}}


def ttft_pairs(direct: Client, proxied: Client, pairs: int, warmup: int,
               max_tokens: int, text: str = "Tell me about the sea.") -> dict:
    path = "chat/completions"
    body = chat_body(text, max_tokens=max_tokens, stream=True)
    fresh_connections(direct, proxied)
    for _ in range(warmup):
        direct.ttft(path, body)
        proxied.ttft(path, body)
    d, p = [], []
    engine_ms: dict[str, list[float]] = {"direct": [], "proxied": []}

    def one(client: Client, into: list[float], name: str) -> None:
        into.append(client.ttft(path, body)[0] * 1e3)
        if client.prompt_ms is not None:
            engine_ms[name].append(client.prompt_ms)

    for i in range(pairs):
        order = ((direct, d, "direct"), (proxied, p, "proxied"))
        for client, into, name in (order if i % 2 == 0 else order[::-1]):
            one(client, into, name)
    diff = [b - a for a, b in zip(d, p)]
    out = {"direct": summary(d), "proxied": summary(p), "diff": summary(diff),
           "max_tokens": max_tokens}
    if engine_ms["direct"] and engine_ms["proxied"]:  # the real engine reports its timings
        out["engine_prompt_ms"] = {"direct": summary(engine_ms["direct"]),
                                   "proxied": summary(engine_ms["proxied"])}
    return out


FLOOR_IDLE_S = 0.015  # idle before each request in the floor's second run, as between tokens
#: the benchmark's servers also load bench/jupyter_floor.py (one handler of its own)
FLOOR_ARGS = ("--ServerApp.jpserver_extensions=jupyter_floor=True",)


def floor_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"),
                                                         os.environ.get("PYTHONPATH")]))}


def floor_compare(direct: Client, proxied: Client, floor: Client, rounds: int, warmup: int,
                  gap_s: float) -> dict:
    """A 1-token request to the engine, the same through bodhi, and the same body POSTed
    to an empty Jupyter handler (bench/jupyter_floor.py), in rotating order; ``gap_s`` of
    idle before each request (0: back to back)."""
    import jupyter_floor
    path, body = "chat/completions", chat_body("Say hi.", max_tokens=1, stream=False)
    sends = {"direct": lambda: direct.post(path, body),
             "proxied": lambda: proxied.post(path, body),
             "jupyter_floor": lambda: floor.post(jupyter_floor.PATH, body)}
    fresh_connections(direct, proxied, floor)
    for _ in range(warmup):
        for send in sends.values():
            send()
    names, times = list(sends), {k: [] for k in sends}
    for i in range(rounds):
        for name in names[i % 3:] + names[:i % 3]:
            if gap_s:
                time.sleep(gap_s)
            times[name].append(sends[name]()[0] * 1e3)
    return {"gap_ms": gap_s * 1e3, **{k: summary(v) for k, v in times.items()}}


def jupyter_floor_runs(server: JupyterServer, direct: Client, proxied: Client, rounds: int,
                       warmup: int, gaps: tuple[float, ...]) -> list[dict]:
    floor = Client("jupyter floor", server.port, BASE, f"token {server.token}")
    try:
        return [floor_compare(direct, proxied, floor, rounds, warmup, gap) for gap in gaps]
    finally:
        floor.close()


# -- asynchronous streaming clients (throughput) -----------------------------------------------------
async def _read_body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise BenchError("connection closed mid-body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if n:
            yield await reader.readexactly(n)
    else:
        while chunk := await reader.read(65536):
            yield chunk


ERRORS: list[str] = []  # failed streaming requests of the current throughput run


async def _open(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def stream_client(port: int, path: str, auth: str, body: bytes, rounds: int,
                        keep_alive: bool) -> list[int]:
    """One client on a raw HTTP/1.1 connection: ``rounds`` streaming requests one after the
    other; returns the content events of each. Without ``keep_alive`` (llama-server closes
    the connection after each stream) every request after the first opens a new one."""
    reader, writer = await _open(port)
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\n"
           f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    counts = []
    try:
        for i in range(rounds):
            if i and not keep_alive:
                writer.close()
                reader, writer = await _open(port)
            writer.write(req)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            headers = {}
            for line in head[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            buf, n = b"", 0
            async for chunk in _read_body_chunks(reader, headers):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if content_of(line) is not None:
                        n += 1
            if status != 200:
                # counted, not fatal: a failed stream is a result (see "errors")
                ERRORS.append(f"port {port}: HTTP {status} {buf[:200]!r}")
                continue
            if content_of(buf) is not None:
                n += 1
            counts.append(n)
            if headers.get("connection", "").lower() == "close":
                keep_alive = False
    finally:
        writer.close()
    return counts


async def _throughput(port: int, path: str, auth: str, body: bytes, clients: int,
                      rounds: int, keep_alive: bool) -> dict:
    ERRORS.clear()
    t0 = time.perf_counter()
    per_client = await asyncio.gather(*(stream_client(port, path, auth, body, rounds,
                                                      keep_alive)
                                        for _ in range(clients)))
    wall = time.perf_counter() - t0
    counts = [c for cl in per_client for c in cl] or [0]
    return {"tokens": sum(counts), "wall_s": wall, "min_stream": min(counts),
            "max_stream": max(counts), "errors": list(ERRORS)}


@dataclass
class Target:
    port: int
    path: str  # full path of chat/completions
    auth: str
    keep_alive: bool = True  # after a streamed reply


def throughput(t: Target, body: bytes, clients: int, rounds: int) -> dict:
    return asyncio.run(_throughput(t.port, t.path, t.auth, body, clients, rounds,
                                   t.keep_alive))


def throughput_compare(direct: Target, proxied: Target, clients: int, rounds: int,
                       body: bytes, repeats: int, pids: dict[str, int]) -> dict:
    """Alternate D P P D ...; aggregate tokens over the summed wall time of each side.

    Many short runs, not a few long ones: the engine's own speed drifts by several percent
    over a minute on a shared machine, and alternating often puts both sides through the
    same drift."""
    runs = {"direct": [], "proxied": []}
    order = []
    for r in range(repeats):
        order += ["direct", "proxied"] if r % 2 == 0 else ["proxied", "direct"]
    cpu = {"direct": {k: 0.0 for k in pids}, "proxied": {k: 0.0 for k in pids}}
    jupyter = pids.get("jupyter")
    split = {"loop": 0.0, "threads": 0.0}  # the Jupyter server's, over the proxied runs
    for side in order:
        t = direct if side == "direct" else proxied
        before = {k: cpu_s(pid) for k, pid in pids.items()}
        if jupyter is not None:
            loop0, all0 = main_thread_cpu_s(jupyter), thread_cpu_s(jupyter)
        runs[side].append(throughput(t, body, clients, rounds))
        for k, pid in pids.items():
            cpu[side][k] += cpu_s(pid) - before[k]
        if jupyter is not None and side == "proxied":
            loop = main_thread_cpu_s(jupyter) - loop0
            split["loop"] += loop
            split["threads"] += thread_cpu_s(jupyter) - all0 - loop
    out = {}
    for side, rs in runs.items():
        tokens = sum(r["tokens"] for r in rs)
        wall = sum(r["wall_s"] for r in rs)
        rates = [r["tokens"] / r["wall_s"] for r in rs]
        out[side] = {"tok_per_s": tokens / wall, "runs_tok_per_s": rates, "tokens": tokens,
                     "wall_s": wall, "min_stream": min(r["min_stream"] for r in rs),
                     "max_stream": max(r["max_stream"] for r in rs),
                     "failed_streams": sum(len(r["errors"]) for r in rs),
                     "first_error": next((r["errors"][0] for r in rs if r["errors"]), None),
                     "cpu_s": cpu[side]}
    out["ratio"] = out["proxied"]["tok_per_s"] / out["direct"]["tok_per_s"]
    if jupyter is not None:
        out["proxied"]["jupyter_cpu_split_s"] = split
    # each repeat ran one run of each side back to back: their ratios show the noise
    d_rates, p_rates = out["direct"]["runs_tok_per_s"], out["proxied"]["runs_tok_per_s"]
    out["pair_ratios"] = [b / a for a, b in zip(d_rates, p_rates)]
    out["clients"], out["rounds"] = clients, rounds
    return out


# -- phases ------------------------------------------------------------------------------------
def start_engine(server: JupyterServer, timeout: float = 300) -> Engine:
    """The first request through the extension starts the engine."""
    c = Client("proxied", server.port, f"{BASE}bodhi/v1/", f"token {server.token}")
    c.conn.timeout = timeout
    c.conn.sock.settimeout(timeout)
    try:
        c.post("chat/completions", chat_body("hi", max_tokens=1, stream=False))
    finally:
        c.close()
    return server.find_engine()


def clients_for(server: JupyterServer, engine: Engine,
                section: dict) -> tuple[Client, Client, Target, Target]:
    """Keep-alive clients for both sides, and whether each keeps a connection after a
    stream (recorded in ``section``)."""
    direct = Client("direct", engine.port, "/v1/", f"Bearer {engine.api_key}")
    proxied = Client("proxied", server.port, f"{BASE}bodhi/v1/", f"token {server.token}")
    kd, kp = probe_stream_keepalive(direct), probe_stream_keepalive(proxied)
    section["keeps_connection_after_stream"] = {"direct": kd, "proxied": kp}
    print(f"  connection kept after a streamed reply: direct {kd}, proxied {kp}", flush=True)
    return (direct, proxied,
            Target(engine.port, "/v1/chat/completions", f"Bearer {engine.api_key}", kd),
            Target(server.port, f"{BASE}bodhi/v1/chat/completions", f"token {server.token}",
                   kp))


def bare_relay_runs(engine: Engine, direct: Client, cfg: dict, stream_body: bytes) -> dict:
    """The same engine through ``bench/bare_relay.py`` (the two hops, nothing else): time
    to first token added in alternating pairs, and its CPU per streamed token over
    1-client streams, the floors for any Python proxy on this machine."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_relay.py"), str(port),
                             str(engine.port)], stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise BenchError("bench/bare_relay.py did not start")
        bare = Client("bare relay", port, "/v1/", f"Bearer {engine.api_key}")
        bare.stream_keepalive = False  # it closes when the engine does
        try:
            ttft = ttft_pairs(direct, bare, cfg["ttft_pairs"], cfg["warmup"] // 4,
                              cfg["ttft_tokens"])
        finally:
            bare.close()
        target = Target(port, "/v1/chat/completions", f"Bearer {engine.api_key}", False)
        throughput(target, stream_body, 1, 1)  # warm-up
        runs, tokens = max(cfg["repeats"][1] // 2, 1), 0
        cpu0 = thread_cpu_s(proc.pid)
        for _ in range(runs):
            tokens += throughput(target, stream_body, 1, cfg["rounds"][1])["tokens"]
        cpu = thread_cpu_s(proc.pid) - cpu0
    finally:
        proc.kill()
        proc.wait()
    return {"ttft": ttft, "cpu_ms_per_token": cpu * 1e3 / max(tokens, 1), "tokens": tokens}


def check_ignore_eos(direct: Client, n: int) -> bool:
    _, got = direct.ttft("chat/completions",
                         chat_body("Say yes.", max_tokens=n, stream=True, ignore_eos=True))
    return got == n


def phase_real(tmp: Path, cfg: dict, res: dict, servers: list) -> None:
    server = JupyterServer(tmp, "real", [*cfg["jupyter_args"], *FLOOR_ARGS],
                           extra_env=floor_env())
    servers.append(server)
    t0 = time.perf_counter()
    server.start()
    print(f"  jupyter server up in {time.perf_counter() - t0:.1f} s (port {server.port})",
          flush=True)
    t0 = time.perf_counter()
    engine = start_engine(server)
    print(f"  engine ready after first proxied request: {time.perf_counter() - t0:.1f} s "
          f"(pid {engine.pid}, port {engine.port})", flush=True)
    res["machine"]["engine_command"] = engine.cmdline
    print(f"  engine command: {' '.join(engine.cmdline)}", flush=True)
    direct, proxied, d, p = clients_for(server, engine, res["real"])
    body = chat_body("Write a long story about a lighthouse keeper.",
                     max_tokens=cfg["stream_tokens"], stream=True, ignore_eos=True)
    try:
        print(f"  [1] latency, {cfg['pairs']} pairs of 1-token requests ...", flush=True)
        res["real"]["latency"] = latency_pairs(direct, proxied, cfg["pairs"], cfg["warmup"],
                                               server.proc.pid, engine.pid)
        print(f"  [1] Jupyter's floor: an empty Jupyter request beside the 1-token request, "
              f"{cfg['floor_rounds_real']} rounds ...", flush=True)
        res["real"]["jupyter_floor"] = jupyter_floor_runs(
            server, direct, proxied, cfg["floor_rounds_real"], cfg["warmup"] // 4, (0,))
        print(f"  [2] time to first token, {cfg['ttft_pairs']} pairs ...", flush=True)
        res["real"]["ttft"] = ttft_pairs(direct, proxied, cfg["ttft_pairs"], cfg["warmup"] // 4,
                                         cfg["ttft_tokens"])
        # the same with max_tokens=1: the engine is idle while the proxy relays the first
        # token, which separates the proxy's own cost from CPU contention with generation
        res["real"]["ttft_1tok"] = ttft_pairs(direct, proxied, cfg["ttft_pairs"],
                                              cfg["warmup"] // 4, 1)
        ignore_eos = check_ignore_eos(direct, cfg["stream_tokens"])
        res["real"]["ignore_eos_works"] = ignore_eos
        print(f"  [2c] a bare Python relay in front of the engine (bench/bare_relay.py): "
              f"{cfg['ttft_pairs']} time-to-first-token pairs, then 1-client streams ...",
              flush=True)
        res["real"]["bare_relay"] = bare_relay_runs(engine, direct, cfg, body)
    finally:
        direct.close()
        proxied.close()
    res["real"]["throughput"] = {}
    pids = {"jupyter": server.proc.pid, "engine": engine.pid}
    for clients in (1, 8, 32):
        rounds = cfg["rounds"].get(clients, 1)
        repeats = cfg["repeats"][clients]
        print(f"  [3] streaming throughput, {clients} client(s) x {rounds} request(s) x "
              f"{cfg['stream_tokens']} tokens, {repeats} run(s) each side, alternating ...",
              flush=True)
        # warm-up: fill the slots once
        throughput(d, body, clients, 1)
        res["real"]["throughput"][str(clients)] = throughput_compare(
            d, p, clients, rounds, body, repeats, pids)
    one = res["real"]["throughput"]["1"]["proxied"]
    res["real"]["cpu_ms_per_chunk"] = one["cpu_s"]["jupyter"] * 1e3 / max(one["tokens"], 1)
    res["real"]["cpu_ms_per_chunk_split"] = {
        k: v * 1e3 / max(one["tokens"], 1) for k, v in one["jupyter_cpu_split_s"].items()}
    server.stop()


def phase_startup(tmp: Path, cfg: dict, res: dict) -> None:
    import startup
    print(f"  {cfg['startup_rounds']} alternating starts each on an existing data dir, "
          f"{cfg['fresh_rounds']} on a fresh one ...", flush=True)
    res["startup"] = startup.measure(tmp / "startup", cfg["startup_rounds"],
                                     cfg["fresh_rounds"])


def phase_fake(tmp: Path, cfg: dict, res: dict, servers: list) -> None:
    wrapper = tmp / "fake-llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE.resolve()}" "$@"\n')
    wrapper.chmod(0o755)
    server = JupyterServer(tmp, "fake", [*cfg["jupyter_args"], *FLOOR_ARGS,
                                         f"--LlamaServerLauncher.llama_server_path={wrapper}"],
                           extra_env=floor_env())
    servers.append(server)
    server.start()
    engine = start_engine(server, timeout=60)
    print(f"  stand-in engine: {' '.join(engine.cmdline[:2])} ... (port {engine.port})",
          flush=True)
    direct, proxied, d, p = clients_for(server, engine, res["fake"])
    try:
        print(f"  [4] latency, {cfg['fake_pairs']} pairs of 1-token requests ...", flush=True)
        res["fake"]["latency"] = latency_pairs(direct, proxied, cfg["fake_pairs"],
                                               cfg["warmup"], server.proc.pid, engine.pid)
        print(f"  [4] time to first chunk, {cfg['fake_pairs'] // 2} pairs ...", flush=True)
        res["fake"]["ttft"] = ttft_pairs(direct, proxied, cfg["fake_pairs"] // 2,
                                         cfg["warmup"], cfg["stream_tokens"])
        print(f"  [4] time to first chunk, chunks {PACING_S * 1e3:g} ms apart, "
              f"{cfg['paced_pairs']} pairs ...", flush=True)
        res["fake"]["ttft_paced"] = ttft_pairs(direct, proxied, cfg["paced_pairs"],
                                               cfg["warmup"], 5,
                                               text=f"Tell me. [delay={PACING_S}]")
        print(f"  [4] Jupyter's floor: an empty Jupyter request beside the 1-token request, "
              f"{cfg['floor_rounds']} rounds back to back and {cfg['floor_rounds']} with "
              f"{FLOOR_IDLE_S * 1e3:g} ms idle before each request ...", flush=True)
        res["fake"]["jupyter_floor"] = jupyter_floor_runs(
            server, direct, proxied, cfg["floor_rounds"], cfg["warmup"], (0, FLOOR_IDLE_S))
    finally:
        direct.close()
        proxied.close()
    for key, gap, chunks in (("long_stream", PACING_S, cfg["long_chunks"]),
                             ("long_stream_slow", SLOW_PACING_S, cfg["slow_chunks"])):
        print(f"  [4] Jupyter CPU per chunk: one stream of {chunks} chunks "
              f"{gap * 1e3:g} ms apart ...", flush=True)
        long = chat_body(f"Write. [delay={gap}]", max_tokens=chunks, stream=True)
        cpu0 = thread_cpu_s(server.proc.pid)
        run = throughput(p, long, 1, 1)
        res["fake"][key] = {
            "chunks": run["tokens"], "wall_s": run["wall_s"], "gap_ms": gap * 1e3,
            "cpu_ms_per_chunk": ((thread_cpu_s(server.proc.pid) - cpu0) * 1e3
                                 / max(run["tokens"], 1))}
    print("  [4] bare asyncio and thread relays at the same gaps (bench/relay_floor.py) ...",
          flush=True)
    import relay_floor
    res["fake"]["relay_floor_us"] = relay_floor.measure((PACING_S, SLOW_PACING_S),
                                                        cfg["floor_s"])
    print("  [5] upstream clients against the stand-in ...", flush=True)
    import upstream_clients
    res["fake"]["upstream_clients"] = upstream_clients.compare(
        engine.port, engine.api_key, MODEL, cfg["client_requests"], cfg["client_chunks"],
        PACING_S)
    body = chat_body("Write a long story.", max_tokens=cfg["fake_stream_tokens"], stream=True)
    res["fake"]["throughput"] = {}
    pids = {"jupyter": server.proc.pid, "engine": engine.pid}
    for clients in (8, 32):
        print(f"  [4] streaming throughput, {clients} clients ...", flush=True)
        throughput(d, body, clients, 1)
        res["fake"]["throughput"][str(clients)] = throughput_compare(
            d, p, clients, cfg["fake_rounds"], body, cfg["fake_repeats"], pids)
    server.stop()


# -- report ------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def fmt_latency(title: str, lat: dict, target: float | None) -> list[str]:
    d, p, x = lat["direct"], lat["proxied"], lat["diff"]
    lines = [title,
             f"    {'':<22}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}   (ms)",
             f"    {'direct':<22}{d['p50_ms']:>10.2f}{d['p90_ms']:>10.2f}{d['p99_ms']:>10.2f}"
             f"{d['mean_ms']:>10.2f}",
             f"    {'proxied':<22}{p['p50_ms']:>10.2f}{p['p90_ms']:>10.2f}{p['p99_ms']:>10.2f}"
             f"{p['mean_ms']:>10.2f}",
             f"    {'per-pair difference':<22}{x['p50_ms']:>10.2f}{x['p90_ms']:>10.2f}"
             f"{x['p99_ms']:>10.2f}{x['mean_ms']:>10.2f}",
             f"    ratio proxied/direct p50: {p['p50_ms'] / d['p50_ms']:.2f}x;  "
             f"difference of p50s: {p['p50_ms'] - d['p50_ms']:.2f} ms"]
    if "jupyter_cpu_ms_per_request" in lat:
        lines.append(f"    Jupyter CPU per proxied request: "
                     f"{lat['jupyter_cpu_ms_per_request']:.2f} ms; engine CPU per request: "
                     f"{lat['engine_cpu_ms_per_request']:.2f} ms; reconnects "
                     f"{lat['reconnects']}")
    if target is not None:
        lines.append(f"    target: added p50 <= {target:g} ms -> {x['p50_ms']:.2f} ms  "
                     f"{verdict(x['p50_ms'] <= target)}")
    return lines


def fmt_floor(title: str, runs: list[dict]) -> list[str]:
    lines = [f"{title}: Jupyter's own floor: the same body POSTed to an empty authenticated "
             "APIHandler (bench/jupyter_floor.py; no bodhi code), p50 round trip, rotating "
             f"order, {runs[0]['jupyter_floor']['n']} rounds"]
    for run in runs:
        when = f"{run['gap_ms']:g} ms idle before each" if run["gap_ms"] else "back to back"
        d, p, f = (run[k]["p50_ms"] for k in ("direct", "proxied", "jupyter_floor"))
        lines.append(f"    {when:<24} empty Jupyter request {f:.2f} ms; engine direct "
                     f"{d:.2f} ms; through bodhi {p:.2f} ms (adds {p - d:.2f} ms)")
    return lines + [""]


def spread(rates: list[float]) -> str:
    """Each run's rate, or their range when there are many."""
    if len(rates) <= 4:
        return " ".join(f"{r:.0f}" for r in rates)
    return f"{len(rates)} runs {min(rates):.0f}-{max(rates):.0f}"


def fmt_throughput(title: str, tp: dict, unit: str, target: float | None) -> list[str]:
    lines = [title,
             f"    {'clients':>7}{'direct ' + unit:>18}{'proxied ' + unit:>18}{'ratio':>8}"
             f"{'chunks/stream':>15}{'Jupyter CPU s':>15}   runs (direct | proxied)"]
    for clients, t in tp.items():
        d, p = t["direct"], t["proxied"]
        same = f"{min(d['min_stream'], p['min_stream'])}-{max(d['max_stream'], p['max_stream'])}"
        runs = f"{spread(d['runs_tok_per_s'])} | {spread(p['runs_tok_per_s'])}"
        mark = f"  {verdict(t['ratio'] >= target)}" if target is not None else ""
        failed = d["failed_streams"] + p["failed_streams"]
        if failed:
            mark += (f"  FAILED STREAMS direct {d['failed_streams']}, proxied "
                     f"{p['failed_streams']}: {d['first_error'] or p['first_error']}")
        lines.append(f"    {clients:>7}{d['tok_per_s']:>18.1f}{p['tok_per_s']:>18.1f}"
                     f"{t['ratio']:>8.3f}{same:>15}{p['cpu_s'].get('jupyter', 0):>15.2f}   "
                     f"{runs}{mark}")
    pairs = [f"{clients}: {min(t['pair_ratios']):.2f}-{max(t['pair_ratios']):.2f} (median "
             f"{statistics.median(t['pair_ratios']):.3f})"
             for clients, t in tp.items() if t.get("pair_ratios")]
    if pairs:
        lines.append("    ratio within each back-to-back pair of runs, by clients (the noise "
                     "of one run): " + "; ".join(pairs))
    if target is not None:
        lines.append(f"    target: ratio proxied/direct >= {target:g} at every concurrency")
    return lines


def report(res: dict) -> str:
    m = res["machine"]
    out = ["", "=" * 100,
           "bodhi_jupyter proxy overhead" + ("  (--quick)" if res["config"]["quick"] else ""),
           "=" * 100,
           f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), load avg before "
           f"{m['loadavg_before']}, after {m.get('loadavg_after')} (other processes on the "
           "machine skew the engine figures)",
           f"extra Jupyter options: {' '.join(res['config']['jupyter_args']) or '-'}",
           f"python {m['python']} ({m['platform']}); jupyter_server {m['jupyter_server']}, "
           f"tornado {m['tornado']}; git {m['git']}",
           f"engine: {' '.join(m.get('engine_command', ['?']))}",
           f"engine version: {m.get('engine_version', '?')}", ""]
    real, fake = res.get("real", {}), res.get("fake", {})
    if "startup" in res:
        import startup
        out += startup.report(res["startup"], TARGET_START_MS, TARGET_START_MIB) + [""]
    if "latency" in real:
        out += fmt_latency("[1] real engine: non-streaming chat, max_tokens=1 "
                           f"({real['latency']['diff']['n']} alternating pairs)",
                           real["latency"], TARGET_ADDED_P50_MS) + [""]
    if "jupyter_floor" in real:
        out += fmt_floor("[1] real engine", real["jupyter_floor"])
    if "ttft" in real:
        t = real["ttft"]
        diff = t["diff"]["p50_ms"]
        out += [f"[2] real engine: time to first content token, streaming chat, max_tokens="
                f"{t['max_tokens']} ({t['diff']['n']} alternating pairs)",
                f"    direct p50 {t['direct']['p50_ms']:.2f} ms (p99 "
                f"{t['direct']['p99_ms']:.2f}); proxied p50 {t['proxied']['p50_ms']:.2f} ms "
                f"(p99 {t['proxied']['p99_ms']:.2f}); ratio "
                f"{t['proxied']['p50_ms'] / t['direct']['p50_ms']:.2f}x",
                f"    per-pair difference p50 {diff:.2f} ms, p90 {t['diff']['p90_ms']:.2f} ms, "
                f"p99 {t['diff']['p99_ms']:.2f} ms",
                f"    target: TTFT proxied - direct <= {TARGET_TTFT_DIFF_MS:g} ms -> "
                f"{diff:.2f} ms  {verdict(diff <= TARGET_TTFT_DIFF_MS)}"]
        if "engine_prompt_ms" in t:
            e = t["engine_prompt_ms"]
            out.append(f"    the engine's own prompt_ms (its timings), p50: direct "
                       f"{e['direct']['p50_ms']:.2f} ms, proxied {e['proxied']['p50_ms']:.2f} "
                       f"ms: the proxy's work slows the engine by "
                       f"{e['proxied']['p50_ms'] - e['direct']['p50_ms']:+.2f} ms")
        out.append("")
    if "ttft_1tok" in real:
        t = real["ttft_1tok"]
        out += [f"[2b] the same with max_tokens=1 (engine idle while the first token is "
                f"relayed): direct p50 {t['direct']['p50_ms']:.2f} ms, proxied p50 "
                f"{t['proxied']['p50_ms']:.2f} ms, per-pair difference p50 "
                f"{t['diff']['p50_ms']:.2f} ms, p99 {t['diff']['p99_ms']:.2f} ms", ""]
    if "bare_relay" in real:
        b = real["bare_relay"]
        out += [f"[2c] a bare Python relay in front of the same engine (bench/bare_relay.py: "
                f"one recv and one send per read, nothing else): time to first token added "
                f"p50 {b['ttft']['diff']['p50_ms']:.2f} ms ({b['ttft']['diff']['n']} pairs); "
                f"CPU per streamed token {b['cpu_ms_per_token']:.3f} ms (1 client, "
                f"{b['tokens']} tokens) - the floors of any Python proxy here", ""]
    if "throughput" in real:
        out += fmt_throughput(
            f"[3] real engine: aggregate streamed tokens/s ({res['config']['stream_tokens']} "
            f"tokens per request, ignore_eos works: {real.get('ignore_eos_works')})",
            real["throughput"], "tok/s", TARGET_TPUT_RATIO)
        v = real["cpu_ms_per_chunk"]
        out += [f"    Jupyter CPU per streamed token (1 client, proxied runs): {v:.3f} ms  "
                f"target <= {TARGET_CPU_PER_CHUNK_MS:g} ms {verdict(v <= TARGET_CPU_PER_CHUNK_MS)}"]
        if "cpu_ms_per_chunk_split" in real:
            sp = real["cpu_ms_per_chunk_split"]
            out.append(f"    of which (schedstat, per token): the event loop thread {sp['loop']:.3f} "
                       f"ms (each request's own work, spread over its tokens), the other "
                       f"threads {sp['threads']:.3f} ms (the relay thread; the usage writer)")
            if "bare_relay" in real:
                out.append(f"    the bare Python relay [2c]: "
                           f"{real['bare_relay']['cpu_ms_per_token']:.3f} ms per token")
        out.append("")
    if "latency" in fake:
        out += fmt_latency("[4] stand-in engine (fake_llama_server.py): non-streaming, "
                           f"max_tokens=1 ({fake['latency']['diff']['n']} pairs) - the proxy's "
                           "own cost", fake["latency"], TARGET_ADDED_P50_MS) + [""]
    if "ttft" in fake:
        t = fake["ttft"]
        out += [f"[4] stand-in engine: time to first chunk ({t['diff']['n']} pairs): direct "
                f"p50 {t['direct']['p50_ms']:.2f} ms, proxied p50 {t['proxied']['p50_ms']:.2f}"
                f" ms, per-pair difference p50 {t['diff']['p50_ms']:.2f} ms, p99 "
                f"{t['diff']['p99_ms']:.2f} ms", ""]
    if "ttft_paced" in fake:
        t = fake["ttft_paced"]
        diff = t["diff"]["p50_ms"]
        out += [f"[4] stand-in engine, chunks {PACING_S * 1e3:g} ms apart: time to first chunk "
                f"({t['diff']['n']} pairs): direct p50 {t['direct']['p50_ms']:.2f} ms, proxied "
                f"p50 {t['proxied']['p50_ms']:.2f} ms, per-pair difference p50 {diff:.2f} ms, "
                f"p99 {t['diff']['p99_ms']:.2f} ms",
                f"    target: added time to first chunk <= {TARGET_TTFT_DIFF_MS:g} ms -> "
                f"{diff:.2f} ms  {verdict(diff <= TARGET_TTFT_DIFF_MS)}", ""]
    if "jupyter_floor" in fake:
        out += fmt_floor("[4] stand-in engine", fake["jupyter_floor"])
    if "long_stream" in fake:
        ls = fake["long_stream"]
        v = ls["cpu_ms_per_chunk"]
        out += [f"[4] stand-in engine: Jupyter CPU per chunk over one stream of {ls['chunks']} "
                f"chunks {PACING_S * 1e3:g} ms apart: {v:.3f} ms  target <= "
                f"{TARGET_CPU_PER_CHUNK_MS:g} ms {verdict(v <= TARGET_CPU_PER_CHUNK_MS)}"]
        slow, floor = fake.get("long_stream_slow"), fake.get("relay_floor_us", {})
        if slow:
            out.append(f"    the same, {slow['chunks']} chunks {slow['gap_ms']:g} ms apart: "
                       f"{slow['cpu_ms_per_chunk']:.3f} ms")
        for relay, floors in floor.items():
            gaps = sorted(floors, key=float)
            out.append(f"    a bare {relay} relay, same gaps (bench/relay_floor.py): "
                       + ", ".join(f"{floors[g] / 1e3:.3f} ms at {g} ms" for g in gaps))
        if floor:
            out.append("    (the floors on this machine: waking after a longer sleep costs "
                       "more; the proxy relays event streams on threads)")
        out.append("")
    if "throughput" in fake:
        out += fmt_throughput("[4] stand-in engine: aggregate streamed chunks/s (the proxy's "
                              "ceiling; no target - the stand-in is far faster than any model)",
                              fake["throughput"], "chunk/s", None) + [""]
    if "upstream_clients" in fake:
        import upstream_clients
        out += upstream_clients.report(fake["upstream_clients"]) + [""]
    s = res.get("summary", {})
    if s:
        out += ["summary:"] + [f"    {k:<46} {v}" for k, v in s.items()]
    out.append(f"results written to {RESULTS.relative_to(ROOT)}; total {res['elapsed_s']:.0f} s")
    return "\n".join(out)


def make_summary(res: dict) -> dict:
    s = {}
    real, fake = res.get("real", {}), res.get("fake", {})
    if "startup" in res:
        on, off = res["startup"]["on/existing"], res["startup"]["off/existing"]
        d_ms = on["start_ms"] - off["start_ms"]
        d_cpu = on["start_cpu_ms"] - off["start_cpu_ms"]
        d_up = on["rss_up_mib"] - off["rss_up_mib"]
        d_mib = on["rss_settled_mib"] - off["rss_settled_mib"]
        s["start-up added, existing data dir"] = (
            f"{d_ms:+.0f} ms ({d_cpu:+.0f} ms CPU)  {verdict(d_ms <= TARGET_START_MS)}")
        s["memory added (when up / settled)"] = (
            f"{d_up:+.1f} / {d_mib:+.1f} MiB  {verdict(d_mib <= TARGET_START_MIB)}")
    if "latency" in real:
        v = real["latency"]["diff"]["p50_ms"]
        s["added latency p50 (real, 1 token)"] = (f"{v:.2f} ms  "
                                                  f"{verdict(v <= TARGET_ADDED_P50_MS)}")
    if "latency" in fake:
        v = fake["latency"]["diff"]["p50_ms"]
        s["added latency p50 (stand-in, 1 token)"] = (f"{v:.2f} ms  "
                                                      f"{verdict(v <= TARGET_ADDED_P50_MS)}")
    if "ttft" in real:
        v = real["ttft"]["diff"]["p50_ms"]
        s["TTFT proxied - direct p50 (real)"] = f"{v:.2f} ms  {verdict(v <= TARGET_TTFT_DIFF_MS)}"
    if "ttft_paced" in fake:
        v = fake["ttft_paced"]["diff"]["p50_ms"]
        s["first chunk added p50 (stand-in, paced)"] = (
            f"{v:.2f} ms  {verdict(v <= TARGET_TTFT_DIFF_MS)}")
    if "jupyter_floor" in real:
        s["empty Jupyter request p50 (real phase)"] = (
            f"{real['jupyter_floor'][0]['jupyter_floor']['p50_ms']:.2f} ms")
    if "jupyter_floor" in fake:
        s["empty Jupyter request p50, back to back | idle"] = " | ".join(
            f"{run['jupyter_floor']['p50_ms']:.2f} ms" for run in fake["jupyter_floor"])
    if "long_stream" in fake:
        v = fake["long_stream"]["cpu_ms_per_chunk"]
        s["Jupyter CPU per chunk (stand-in, paced)"] = (
            f"{v:.3f} ms  {verdict(v <= TARGET_CPU_PER_CHUNK_MS)}")
    if "long_stream_slow" in fake and "relay_floor_us" in fake:
        slow, floor = fake["long_stream_slow"], fake["relay_floor_us"]["thread"]
        ours, bare = fake["long_stream"]["cpu_ms_per_chunk"], floor[f"{PACING_S * 1e3:g}"] / 1e3
        s["CPU per chunk / bare thread relay's, 5 | 25 ms"] = (
            f"{ours / bare:.1f}x | "
            f"{slow['cpu_ms_per_chunk'] / (floor[f'{SLOW_PACING_S * 1e3:g}'] / 1e3):.1f}x")
    if "cpu_ms_per_chunk" in real:
        v = real["cpu_ms_per_chunk"]
        s["Jupyter CPU per token (real, 1 client)"] = (
            f"{v:.3f} ms  {verdict(v <= TARGET_CPU_PER_CHUNK_MS)}")
    if "cpu_ms_per_chunk_split" in real:
        sp = real["cpu_ms_per_chunk_split"]
        s["  of which event loop | other threads"] = (f"{sp['loop']:.3f} ms | "
                                                       f"{sp['threads']:.3f} ms")
    if "bare_relay" in real:
        b = real["bare_relay"]
        s["bare Python relay (real): TTFT added | CPU per token"] = (
            f"{b['ttft']['diff']['p50_ms']:.2f} ms | {b['cpu_ms_per_token']:.3f} ms")
        if "cpu_ms_per_chunk" in real:
            s["CPU per token / bare Python relay's (real)"] = (
                f"{real['cpu_ms_per_chunk'] / b['cpu_ms_per_token']:.2f}x")
    if "engine_prompt_ms" in real.get("ttft", {}):
        e = real["ttft"]["engine_prompt_ms"]
        s["engine's own prompt_ms, proxied - direct p50"] = (
            f"{e['proxied']['p50_ms'] - e['direct']['p50_ms']:+.2f} ms")
    for clients, t in real.get("throughput", {}).items():
        s[f"throughput ratio, {clients} client(s)"] = (f"{t['ratio']:.3f}  "
                                                      f"{verdict(t['ratio'] >= TARGET_TPUT_RATIO)}")
    return s


def machine_facts() -> dict:
    import jupyter_server
    import tornado
    cpu_model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        git = "?"
    engine_version = "?"
    bundled = Path(sys.executable).with_name("bodhi-llama-server")
    exe = shutil.which("llama-server") or (str(bundled) if bundled.exists() else None)
    if exe:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
            lines = (out.stdout + out.stderr).strip().splitlines()
            engine_version = next((ln for ln in lines if "version" in ln.lower()),
                                  lines[0] if lines else "?")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "cpu_model": cpu_model, "python": platform.python_version(),
            "platform": platform.platform(), "jupyter_server": jupyter_server.__version__,
            "tornado": tornado.version, "git": git, "engine_version": engine_version,
            "loadavg_before": tuple(round(x, 2) for x in os.getloadavg())}


def config(quick: bool) -> dict:
    if quick:
        return {"quick": True, "pairs": 40, "warmup": 8, "ttft_pairs": 10, "ttft_tokens": 4,
                "stream_tokens": 32, "rounds": {1: 1, 8: 1, 32: 1},
                "repeats": {1: 1, 8: 1, 32: 1}, "fake_repeats": 1,
                "fake_pairs": 150, "fake_rounds": 2, "fake_stream_tokens": 64,
                "paced_pairs": 40, "floor_rounds": 60, "floor_rounds_real": 20,
                "long_chunks": 300, "slow_chunks": 60, "floor_s": 1.5,
                "client_requests": 100,
                "client_chunks": 150, "startup_rounds": 2, "fresh_rounds": 1}
    return {"quick": False, "pairs": 300, "warmup": 30, "ttft_pairs": 60, "ttft_tokens": 4,
            "stream_tokens": 96, "rounds": {1: 1, 8: 1, 32: 1},
            "repeats": {1: 18, 8: 6, 32: 3}, "fake_repeats": 3,
            "fake_pairs": 1000, "fake_rounds": 4, "fake_stream_tokens": 256,
            "paced_pairs": 200, "floor_rounds": 300, "floor_rounds_real": 100,
            "long_chunks": 1000, "slow_chunks": 240, "floor_s": 5.0,
            "client_requests": 300,
            "client_chunks": 400, "startup_rounds": 6, "fresh_rounds": 3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts: a ~1 minute smoke run")
    ap.add_argument("--skip-real", action="store_true", help="only the stand-in phase")
    ap.add_argument("--skip-fake", action="store_true", help="no stand-in phase")
    ap.add_argument("--skip-startup", action="store_true", help="no start-up phase")
    ap.add_argument("--jupyter-arg", action="append", default=[], metavar="ARG",
                    help="extra option for both Jupyter servers, e.g. "
                    "--jupyter-arg=--LlamaServerLauncher.threads=1 (repeatable)")
    args = ap.parse_args()
    cfg = config(args.quick)
    cfg["jupyter_args"] = args.jupyter_arg
    res = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg, "machine": {},
           "real": {}, "fake": {}}
    print("machine facts ...", flush=True)
    res["machine"] = machine_facts()
    m = res["machine"]
    print(f"  {m['cpu_count']} CPUs ({m['cpu_model']}), python {m['python']}, "
          f"engine {m['engine_version']}", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    servers: list[JupyterServer] = []
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bodhi-bench-"))
    ok = False
    try:
        if not args.skip_startup:
            print("phase 0: start-up", flush=True)
            phase_startup(tmp, cfg, res)
        if not args.skip_real:
            print("phase A: real engine", flush=True)
            phase_real(tmp, cfg, res, servers)
        if not args.skip_fake:
            print("phase B: stand-in engine", flush=True)
            phase_fake(tmp, cfg, res, servers)
        ok = True
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                print(f"  ! stopping {s.name}: {e!r}", file=sys.stderr)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  (logs kept in {tmp})", file=sys.stderr)
    res["elapsed_s"] = time.perf_counter() - t_start
    res["machine"]["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
    res["summary"] = make_summary(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(report(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
