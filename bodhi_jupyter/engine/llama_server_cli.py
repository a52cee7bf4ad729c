"""``bodhi-llama-server``: llama-server's command line on top of xllamacpp.

No portable ``llama-server`` binary exists on PyPI, but the ``xllamacpp`` wheel
embeds llama.cpp's own HTTP server.  This script accepts the subset of
llama-server flags the supervisor uses (same spellings and meanings) so the
supervisor can run either program unchanged.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

PROG = "bodhi-llama-server"
POOLING = ("none", "mean", "cls", "last", "rank")


def _gpu_layers(value: str) -> int:
    """Upstream also takes 'auto' and 'all' here."""
    if value == "auto":
        return -1
    if value == "all":
        return 999
    try:
        return int(value)
    except ValueError:
        msg = f"expected a number, 'auto' or 'all', got {value!r}"
        raise argparse.ArgumentTypeError(msg) from None


def build_parser() -> argparse.ArgumentParser:
    """Flags as spelled by upstream llama-server; unknown ones exit 2."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                allow_abbrev=False)  # upstream has no abbreviations
    a = p.add_argument
    a("-m", "--model", metavar="PATH", help="GGUF model file (required)")
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=8080)
    a("-c", "--ctx-size", type=int, metavar="N", help="0 = model's training context")
    a("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", metavar="N",
      type=_gpu_layers, help="number, 'auto' or 'all'")
    a("-np", "--parallel", type=int, metavar="N", help="number of slots")
    a("-a", "--alias", metavar="NAME", help="model name(s) for the API, comma-separated")
    a("--embedding", "--embeddings", action="store_true", help="serve /v1/embeddings")
    a("--pooling", choices=POOLING)
    a("--api-key", metavar="KEY", default=os.environ.get("LLAMA_API_KEY"),
      help="comma-separated keys (env: LLAMA_API_KEY)")
    a("-t", "--threads", type=int, metavar="N")
    a("-tb", "--threads-batch", type=int, metavar="N")
    a("-fa", "--flash-attn", choices=("on", "off", "auto"))
    a("--cont-batching", dest="cont_batching", action="store_true", default=None)
    a("--no-cont-batching", dest="cont_batching", action="store_false")
    a("--rope-freq-base", type=float, metavar="F")
    a("--rope-freq-scale", type=float, metavar="F")
    # sampling defaults: what a request gets for the fields it leaves out
    a("--temp", type=float, metavar="F")
    a("--top-k", type=int, metavar="N")
    a("--top-p", type=float, metavar="F")
    a("--min-p", type=float, metavar="F")
    a("--repeat-penalty", type=float, metavar="F")
    a("-s", "--seed", type=int, metavar="N")
    a("-n", "--n-predict", type=int, metavar="N")
    a("-b", "--batch-size", type=int, metavar="N")
    a("-ub", "--ubatch-size", type=int, metavar="N")
    a("--jinja", dest="jinja", action="store_true", default=None)
    a("--no-jinja", dest="jinja", action="store_false")
    a("--chat-template", metavar="NAME_OR_TEMPLATE")
    a("--chat-template-file", metavar="PATH")
    a("-mm", "--mmproj", metavar="PATH", help="multimodal projector (images, audio)")
    a("--metrics", action="store_true", help="serve /metrics")
    a("--slots", dest="slots", action="store_true", default=None)
    a("--no-slots", dest="slots", action="store_false")
    a("-v", "--verbose", action="store_true")
    a("--log-disable", action="store_true")
    a("--version", action="store_true")
    return p


def _is_jinja_source(template: str) -> bool:
    return "{%" in template or "{{" in template


def build_params(args: argparse.Namespace):
    """Translate parsed flags into ``xllamacpp.CommonParams``.

    Only flags given on the command line are set; the rest keep xllamacpp's
    defaults, which are llama-server's.  Sub-objects (``model``, ``cpuparams``)
    are live views, but list/set fields are copies and must be assigned whole.
    """
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.hostnames = [args.host]
    p.port = args.port
    if args.ctx_size is not None:
        p.n_ctx = args.ctx_size
    if args.n_gpu_layers is not None:
        p.n_gpu_layers = args.n_gpu_layers
    if args.parallel is not None:
        p.n_parallel = args.parallel
    if args.alias:
        p.model_alias = {s.strip() for s in args.alias.split(",") if s.strip()}
    if args.embedding:
        p.embedding = True
    if args.pooling:
        p.pooling_type = getattr(xllamacpp.llama_pooling_type,
                                 "LLAMA_POOLING_TYPE_" + args.pooling.upper())
    if args.api_key:
        p.api_keys = [k for k in args.api_key.split(",") if k]
    if args.threads is not None:
        # Upstream's batch threads default to -t when -tb is not given.
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
    if args.threads_batch is not None:
        p.cpuparams_batch.n_threads = args.threads_batch
    if args.flash_attn is not None:
        p.flash_attn_type = getattr(xllamacpp.llama_flash_attn_type, "LLAMA_FLASH_ATTN_TYPE_" + {
            "on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}[args.flash_attn])
    if args.cont_batching is not None:
        p.cont_batching = args.cont_batching
    if args.rope_freq_base is not None:
        p.rope_freq_base = args.rope_freq_base
    if args.rope_freq_scale is not None:
        p.rope_freq_scale = args.rope_freq_scale
    if args.n_predict is not None:
        p.n_predict = args.n_predict
    sampling = p.sampling  # a live view, as cpuparams
    for field, value in (("temp", args.temp), ("top_k", args.top_k), ("top_p", args.top_p),
                         ("min_p", args.min_p), ("penalty_repeat", args.repeat_penalty)):
        if value is not None:
            setattr(sampling, field, value)
    if args.seed is not None:
        sampling.seed = args.seed & 0xFFFFFFFF  # -1 (random) is LLAMA_DEFAULT_SEED
    if args.batch_size is not None:
        p.n_batch = args.batch_size
    if args.ubatch_size is not None:
        p.n_ubatch = args.ubatch_size
    if args.mmproj:
        p.mmproj.path = args.mmproj
    if args.metrics:
        p.endpoint_metrics = True
    if args.slots is not None:
        p.endpoint_slots = args.slots
    if args.verbose:
        p.verbosity = 2**31 - 1  # upstream -v: log everything

    template = args.chat_template
    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as f:
            template = f.read()
    jinja = args.jinja
    if template:
        p.chat_template = template
        # With Jinja on, a built-in name other than "chatml" is rendered as
        # literal text (the prompt becomes "llama3"); upstream's names only
        # mean something to the non-Jinja formatter, so switch to it.
        if jinja is None and not _is_jinja_source(template):
            jinja = False
    if jinja is not None:
        p.use_jinja = jinja
    return p


_err = sys.stderr  # where our own status lines go


def _silence_native_logs() -> None:
    """--log-disable: llama.cpp writes straight to fds 1/2, so point them at
    /dev/null, keeping a private copy of stderr for our own status lines."""
    global _err
    _err = os.fdopen(os.dup(2), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=_err, flush=True)


def _exit_when_orphaned(interval: float = 0.5) -> None:
    """Exit if the parent dies (backs up the supervisor's PR_SET_PDEATHSIG)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(interval)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _die_on_signals() -> None:
    """Default dispositions kill the process at once.  A Python handler could
    not: tearing down the server with a stream open blocks ~30 s holding the
    GIL, and neither handlers nor threads run meanwhile."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"{PROG} (xllamacpp {version('xllamacpp')})")
        return 0
    if not args.model:
        parser.error("the following arguments are required: -m/--model")
    if not os.path.isfile(args.model):
        _say(f"error: model file not found: {args.model}")
        return 1

    _die_on_signals()
    _exit_when_orphaned()
    try:
        params = build_params(args)
    except (OSError, ValueError) as e:
        _say(f"error: {e}")
        return 1
    if args.log_disable:
        _silence_native_logs()

    import xllamacpp

    try:
        server = xllamacpp.Server(params)  # returns once the model is loaded
    except Exception as e:  # noqa: BLE001 - any load failure is fatal
        _say(f"error: failed to load model {args.model}: {e}")
        return 1
    _die_on_signals()  # in case the native code installed its own handlers
    _say(f"listening on http://{args.host}:{args.port}")

    # Serving happens in native threads; the main thread only has to stay
    # alive (and keep `server` referenced) until a signal or the watchdog.
    while server is not None:
        signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
