"""The proxy's upstream client against the alternatives, in one process, against one engine.

For each client: a non-streaming 1-token chat request (p50 latency and this process's CPU
per request) and a long streamed reply paced like a model (CPU per chunk). The clients:

  bodhi      bodhi_jupyter.engine.upstream.UpstreamPool (what the proxy uses)
  httpx      one shared httpx.AsyncClient
  curl       tornado's CurlAsyncHTTPClient (pycurl), keep-alive connections
  tornado    tornado's SimpleAsyncHTTPClient

The CPU figures are what the client itself spends (``time.process_time`` of this process,
which does nothing else meanwhile), so they hold on a busy machine; latencies do not.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time


def _pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class _Bodhi:
    name = "bodhi"

    def __init__(self, port, key):
        from bodhi_jupyter.engine.upstream import UpstreamPool
        self.pool = UpstreamPool("127.0.0.1", port, key)

    async def post(self, body):
        r = await self.pool.request("POST", "/v1/chat/completions", body)
        await r.read()

    async def stream(self, body, on_piece):
        r = await self.pool.request("POST", "/v1/chat/completions", body)
        await r.relay(on_piece)

    async def close(self):
        self.pool.close()


class _Httpx:
    name = "httpx"

    def __init__(self, port, key):
        import httpx
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                        headers={"Authorization": f"Bearer {key}",
                                                 "Content-Type": "application/json"},
                                        timeout=60)

    async def post(self, body):
        r = await self.client.post("/v1/chat/completions", content=body)
        r.read()

    async def stream(self, body, on_piece):
        async with self.client.stream("POST", "/v1/chat/completions", content=body) as r:
            async for piece in r.aiter_raw():
                on_piece(piece)

    async def close(self):
        await self.client.aclose()


class _Tornado:
    name = "tornado"
    impl = None

    def __init__(self, port, key):
        from tornado.httpclient import AsyncHTTPClient
        if self.impl:
            AsyncHTTPClient.configure(self.impl)
        else:
            AsyncHTTPClient.configure(None)
        self.client = AsyncHTTPClient(force_instance=True)
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def post(self, body):
        await self.client.fetch(self.url, method="POST", body=body, headers=self.headers)

    async def stream(self, body, on_piece):
        await self.client.fetch(self.url, method="POST", body=body, headers=self.headers,
                                streaming_callback=on_piece, request_timeout=120)

    async def close(self):
        self.client.close()
        from tornado.httpclient import AsyncHTTPClient
        AsyncHTTPClient.configure(None)


class _Curl(_Tornado):
    name = "curl"
    impl = "tornado.curl_httpclient.CurlAsyncHTTPClient"


def available() -> tuple[list, dict[str, str]]:
    clients, missing = [_Bodhi, _Httpx], {}
    try:
        import pycurl  # noqa: F401
        clients.append(_Curl)
    except ImportError as e:
        missing["curl"] = f"pycurl not installed ({e})"
    clients.append(_Tornado)
    return clients, missing


async def _measure(cls, port, key, model, requests, chunks, pacing) -> dict:
    client = cls(port, key)
    try:
        one = json.dumps({"model": model, "max_tokens": 1, "messages": [
            {"role": "user", "content": "hi"}]}).encode()
        long = json.dumps({"model": model, "stream": True, "max_tokens": chunks, "messages": [
            {"role": "user", "content": f"go [delay={pacing}]"}]}).encode()
        for _ in range(20):
            await client.post(one)
        lat = []
        cpu0 = time.process_time()
        for _ in range(requests):
            t0 = time.perf_counter()
            await client.post(one)
            lat.append((time.perf_counter() - t0) * 1e3)
        cpu_req = (time.process_time() - cpu0) * 1e3 / requests
        got = [0]

        def on_piece(piece):
            got[0] += piece.count(b"data: ")

        cpu0 = time.process_time()
        await client.stream(long, on_piece)
        cpu_chunk = (time.process_time() - cpu0) * 1e3 / max(got[0], 1)
        return {"p50_ms": _pct(lat, 50), "mean_ms": statistics.fmean(lat),
                "cpu_ms_per_request": cpu_req, "cpu_ms_per_chunk": cpu_chunk,
                "events": got[0]}
    finally:
        await client.close()


def compare(port: int, key: str, model: str, requests: int = 300, chunks: int = 400,
            pacing: float = 0.005) -> dict:
    clients, missing = available()
    out = {"missing": missing, "requests": requests, "chunks": chunks, "pacing_s": pacing,
           "clients": {}}
    for cls in clients:
        out["clients"][cls.name] = asyncio.run(_measure(cls, port, key, model, requests,
                                                        chunks, pacing))
    return out


def report(res: dict) -> list[str]:
    lines = [f"[5] upstream clients straight to the stand-in engine, in this process: "
             f"{res['requests']} 1-token requests, one stream of {res['chunks']} chunks "
             f"{res['pacing_s'] * 1e3:g} ms apart",
             f"    {'client':<10}{'p50 ms':>10}{'CPU ms/request':>16}{'CPU ms/chunk':>14}"]
    for name, r in res["clients"].items():
        lines.append(f"    {name:<10}{r['p50_ms']:>10.2f}{r['cpu_ms_per_request']:>16.3f}"
                     f"{r['cpu_ms_per_chunk']:>14.3f}")
    for name, why in res["missing"].items():
        lines.append(f"    {name:<10}not measured: {why}")
    return lines
