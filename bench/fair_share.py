#!/usr/bin/env python3
"""Fair sharing of one engine: user A opens 32 concurrent streams on a shared engine with 4
slots, user B then sends one request; B's time to first token under that load is printed
against B's alone, with the fair admission gate on and off
(``EngineSupervisor.fair_admission``, changed at run time between the phases).

    python bench/fair_share.py             # about a minute with the real demo model
    python bench/fair_share.py --fake      # the stand-in engine (seconds; a smoke run)

A real ``jupyter server`` with the extension, ``share_engines`` on, in a temp dir (removed
at the end); A and B are two users with bodhi tokens of their own (written into the
server's database, as the token API would for each of them). Results go to stdout and
bench/results/fair_share.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy_overhead import BASE, MODEL, SYSTEM, JupyterServer, content_of  # noqa: E402

ALIAS = "fair-share-demo"  # the demo model with SLOTS slots (an alias: see main)
RESULTS = Path(__file__).resolve().parent / "results" / "fair_share.json"
FAKE = Path(__file__).resolve().parent.parent / "tests" / "fake_llama_server.py"
SLOTS = 4


def body(text: str, max_tokens: int, fake: bool) -> dict:
    if fake:  # the stand-in paces its chunks: a model's ~25 tokens/s per slot
        text = f"[delay=0.04] [chunks={max_tokens}] {text}"
    return {"model": ALIAS, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "messages": [{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": text}]}


async def stream(client: httpx.AsyncClient, payload: dict) -> tuple[float, float]:
    """(seconds to the first content token, seconds to the end) of one streamed chat."""
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "v1/chat/completions", json=payload) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {(await resp.aread())[:300]!r}")
        async for line in resp.aiter_lines():
            if first is None and content_of(line.encode()) is not None:
                first = time.perf_counter() - started
    end = time.perf_counter() - started
    return (first if first is not None else end), end


async def phase(a: httpx.AsyncClient, b: httpx.AsyncClient, args) -> dict:
    """A's 32 streams, then B's one once A's first ones stream; B's TTFT under that load."""
    done = []

    async def a_stream(i):
        result = await stream(a, body(f"Count to a hundred, part {i}.", args.a_tokens,
                                      args.fake))
        done.append(result)
        return result

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(a_stream(i)) for i in range(args.streams)]
    await asyncio.sleep(args.head_start)  # every stream sent; the first ones generating
    a_done_before = len(done)
    b_ttft, b_total = await stream(b, body("What is the capital of France?", 8, args.fake))
    a_done_at_b = len(done)
    a_results = await asyncio.gather(*tasks)
    return {"b_ttft_s": b_ttft, "b_total_s": b_total,
            "a_streams_done_when_b_sent": a_done_before,
            "a_streams_done_when_b_answered": a_done_at_b,
            "a_ttft_p50_s": statistics.median(r[0] for r in a_results),
            "a_ttft_max_s": max(r[0] for r in a_results),
            "a_wall_s": time.perf_counter() - started}


async def alone(b: httpx.AsyncClient, args, n: int = 3) -> float:
    return statistics.median([(await stream(b, body("What is the capital of France?", 8,
                                                    args.fake)))[0] for _ in range(n)])


def mint(server: JupyterServer, name: str) -> str:
    """A bodhi token of user ``name``, written where the server reads tokens."""
    from bodhi_jupyter.auth.tokens import TokenStore
    from bodhi_jupyter.store.database import Database

    db = Database(url=f"sqlite:///{server.dir / 'data' / 'bodhi' / 'bodhi.sqlite'}")
    db.connect()
    try:
        token, _ = TokenStore(db).create(name, f"bench {name}", "write")
    finally:
        db.dispose()
    return token


async def run(server: JupyterServer, args) -> dict:
    base = f"http://127.0.0.1:{server.port}{BASE}bodhi/"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    owner = httpx.AsyncClient(base_url=base, timeout=300,
                              headers={"Authorization": f"token {server.token}"})
    (await owner.get("app/info")).raise_for_status()  # answers once storage is open
    a = httpx.AsyncClient(base_url=base, timeout=300, limits=limits,
                          headers={"Authorization": f"Bearer {mint(server, 'user-a')}"})
    b = httpx.AsyncClient(base_url=base, timeout=300,
                          headers={"Authorization": f"Bearer {mint(server, 'user-b')}"})
    try:
        await stream(b, body("Hello", 4, args.fake))  # load the engine
        out = {"alone_b_ttft_s": await alone(b, args)}
        for fair in ((False, True) if args.fifo_first else (True, False)):
            resp = await owner.put("app/settings/EngineSupervisor.fair_admission",
                                   json={"value": fair})
            resp.raise_for_status()
            out["fair" if fair else "fifo"] = await phase(a, b, args)
        procs = (await owner.get("app/processes")).json()["data"]
        out["engines"] = [(p["model"], p["owner"]) for p in procs]
        return out
    finally:
        for c in (owner, a, b):
            await c.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fake", action="store_true", help="the stand-in engine")
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--a-tokens", type=int, default=32, help="tokens per stream of A")
    p.add_argument("--head-start", type=float, default=1.0,
                   help="seconds between A's streams and B's request")
    p.add_argument("--fifo-first", action="store_true",
                   help="run the phase without the gate first (the order's effect on a "
                   "busy machine)")
    args = p.parse_args()
    extra = ["--EngineSupervisor.share_engines=True",
             "--EngineSupervisor.capacity_timeout=300"]
    if args.fake:
        extra.append(f"--LlamaServerLauncher.llama_server_path={FAKE}")
    with tempfile.TemporaryDirectory(prefix="bodhi-fair-") as tmp:
        if args.fake:
            wrapper = Path(tmp) / "fake-llama-server"
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
            wrapper.chmod(0o755)
            extra[-1] = f"--LlamaServerLauncher.llama_server_path={wrapper}"
        server = JupyterServer(Path(tmp), "fair", extra)
        # the bench server sets default_parallel on its command line: an alias has its own
        (server.dir / "config").mkdir(parents=True)
        (server.dir / "config" / "jupyter_server_config.json").write_text(json.dumps(
            {"ModelRegistry": {"aliases": {ALIAS: {"model": MODEL, "server": {
                "parallel": SLOTS, "ctx_size": SLOTS * 1024}}}}}))
        try:
            server.start()
            out = asyncio.run(run(server, args))
            cmd = server.find_engine().cmdline
            out["engine_parallel"] = cmd[cmd.index("--parallel") + 1]
        except BaseException:
            print(server.log_tail(400), file=sys.stderr)
            raise
        finally:
            server.stop()
    alone_s = out["alone_b_ttft_s"]
    fair, fifo = out["fair"], out["fifo"]
    out["config"] = {"engine": "fake" if args.fake else MODEL, "slots": SLOTS,
                     "a_streams": args.streams, "a_tokens_per_stream": args.a_tokens}
    out["ratio_fair_vs_alone"] = fair["b_ttft_s"] / alone_s
    out["ratio_fifo_vs_alone"] = fifo["b_ttft_s"] / alone_s
    out["ratio_fifo_vs_fair"] = fifo["b_ttft_s"] / fair["b_ttft_s"]
    print(f"engine {out['config']['engine']}, {SLOTS} slots, shared; user A: {args.streams} "
          f"streams x {args.a_tokens} tokens; user B: one stream")
    print(f"  B time to first token alone:              {alone_s * 1e3:8.1f} ms")
    for name, ph in (("fair admission", fair), ("no gate (engine FIFO)", fifo)):
        print(f"  B under A's load, {name:22s} {ph['b_ttft_s'] * 1e3:8.1f} ms "
              f"({ph['b_ttft_s'] / alone_s:5.1f}x alone; A streams finished before B's "
              f"answer: {ph['a_streams_done_when_b_answered']}/{args.streams}; A's wall "
              f"{ph['a_wall_s']:.1f} s, A TTFT p50 {ph['a_ttft_p50_s']:.2f} s)")
    print(f"  no gate / fair: {out['ratio_fifo_vs_fair']:.1f}x")
    print(f"  engines: {out['engines']}, engine --parallel {out['engine_parallel']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
