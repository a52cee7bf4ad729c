"""Which llama-server binary to run, and with which command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from traitlets import Int, List, Unicode
from traitlets.config import LoggingConfigurable

from ..models.registry import ResolvedModel


def server_flags(model: ResolvedModel,
                 launcher_args: Iterable[str] = ()) -> tuple[int, int, bool] | None:
    """(ctx_size, parallel, kv_unified) of the engine started for ``model``, with flags in
    extra arguments applied the way the engine reads them (the last one wins); None when a
    value does not parse."""
    ctx, parallel, unified = model.server.ctx_size, model.server.parallel, False
    args = [*launcher_args, *model.server.extra_args]  # the order of the command line
    try:
        for i, arg in enumerate(args):
            name, eq, value = arg.partition("=")
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
            if name in ("-c", "--ctx-size"):
                ctx = int(value)
            elif name in ("-np", "--parallel"):
                parallel = int(value)
            elif name in ("-kvu", "--kv-unified"):
                unified = True
            elif name in ("-no-kvu", "--no-kv-unified"):
                unified = False
    except ValueError:
        return None
    return ctx, parallel, unified


class LlamaServerLauncher(LoggingConfigurable):
    """Builds llama-server command lines. Every engine gets an explicit context size, a
    loopback address, and an API key passed through the environment (LLAMA_API_KEY), so it
    shows in no process listing."""

    llama_server_path = Unicode(
        "",
        help="Path of the llama-server binary. Empty: `llama-server` on PATH, else the "
        "bundled `bodhi-llama-server` (llama.cpp's server code from the xllamacpp wheel).",
    ).tag(config=True)

    threads = Int(
        0, help="CPU threads per engine (-t); 0 leaves llama-server's default."
    ).tag(config=True)

    extra_args = List(
        Unicode(), help="Extra command-line flags added to every llama-server."
    ).tag(config=True)

    host = Unicode(
        "127.0.0.1", help="Address engines listen on; loopback keeps them off the network."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._versions: dict[tuple[str, ...], str] = {}

    def binary(self) -> list[str]:
        """The command prefix: configured path, then PATH, then the bundled engine."""
        if self.llama_server_path:
            path = Path(self.llama_server_path).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise FileNotFoundError(f"llama_server_path {path} is not an executable file")
            return [str(path)]
        found = shutil.which("llama-server")
        if found:
            return [found]
        bundled = Path(sys.executable).with_name("bodhi-llama-server")
        if bundled.exists():
            return [str(bundled)]
        found = shutil.which("bodhi-llama-server")
        if found:
            return [found]
        return [sys.executable, "-m", "bodhi_jupyter.engine.llama_server_cli"]

    def command(self, model: ResolvedModel, port: int, embedding: bool) -> list[str]:
        if not model.path or model.remote is not None or model.targets is not None:
            from .process import EngineStartError  # process imports this module

            # the last guard: a remote model or a router never becomes a local process
            raise EngineStartError(f"'{model.id}' is not a local model file: no engine is "
                                   "started for it")
        opts = model.server
        cmd = [*self.binary(), "--model", model.path, "--host", self.host, "--port", str(port),
               "--ctx-size", str(opts.ctx_size), "--parallel", str(opts.parallel),
               "--alias", model.id]
        if opts.gpu_layers is not None:
            cmd += ["--n-gpu-layers", str(opts.gpu_layers)]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if embedding:
            cmd += ["--embedding", "--pooling", opts.pooling]
        if opts.chat_template_file:
            cmd += ["--chat-template-file", opts.chat_template_file]
        elif opts.chat_template:
            cmd += ["--chat-template", opts.chat_template]
        if opts.mmproj:
            cmd += ["--mmproj", opts.mmproj]
        cmd += [*self.extra_args, *opts.extra_args]
        return cmd

    def describe(self) -> tuple[tuple[str, ...], str]:
        """(engine command, its version line). Asking takes a process start and the answer
        does not change for a command, so it is asked once per command."""
        try:
            command = tuple(self.binary())
        except OSError as e:  # a configured path that is not there: say so, do not fail
            return (self.llama_server_path,), f"unavailable: {e}"
        if command not in self._versions:
            self._versions[command] = self.version()
        return command, self._versions[command]

    def version(self) -> str:
        """The engine's own version line, for diagnostics."""
        try:
            out = subprocess.run([*self.binary(), "--version"], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown ({e})"
        text = (out.stdout + out.stderr).strip().splitlines()
        return next((line for line in text if "version" in line.lower()),
                    text[0] if text else "unknown")
