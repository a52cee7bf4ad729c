"""The llama-server flags an alias may add (``server.extra_args``): an allow list.

Aliases can be made over the API, so their flags must not expose or take over an engine
(host, port, API key, SSL, web UI), write or read arbitrary files (logs, slot saves, static
paths) or fetch models from the network. Only flags that ``bodhi-llama-server``
(engine/llama_server_cli.py) understands are listed; file-valued ones must resolve inside
the model directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class FlagRefused(ValueError):
    """A refused or malformed flag; ``flag`` names it for the error's ``param``."""

    def __init__(self, message: str, flag: str):
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # long form first
    value: str | None  # "int", "float", "str", "path" or None (a switch)
    help: str
    minimum: float | None = 1  # numbers only
    choices: tuple[str, ...] = ()  # "str" only: the values it takes


ALLOWED = (
    Flag(("--threads", "-t"), "int", "CPU threads for generation"),
    Flag(("--threads-batch", "-tb"), "int", "CPU threads for prompt processing"),
    Flag(("--batch-size", "-b"), "int", "logical batch size for prompt processing"),
    Flag(("--ubatch-size", "-ub"), "int", "physical batch size"),
    Flag(("--flash-attn", "-fa"), "str", "flash attention", choices=("on", "off", "auto")),
    Flag(("--cont-batching",), None, "batch requests together as they arrive (default)"),
    Flag(("--no-cont-batching",), None, "do not batch requests together"),
    Flag(("--rope-freq-base",), "float", "RoPE base frequency (context extension)", 0),
    Flag(("--rope-freq-scale",), "float", "RoPE frequency scale (context extension)", 0),
    Flag(("--temp",), "float", "default sampling temperature", 0),
    Flag(("--top-k",), "int", "default top-k sampling (0 = off)", 0),
    Flag(("--top-p",), "float", "default top-p sampling", 0),
    Flag(("--min-p",), "float", "default min-p sampling", 0),
    Flag(("--repeat-penalty",), "float", "default repetition penalty", 0),
    Flag(("--seed", "-s"), "int", "default sampling seed (-1 = random)", -1),
    Flag(("--n-predict", "-n"), "int", "default most tokens to generate (-1 = no limit)", -1),
    Flag(("--jinja",), None, "use the model's Jinja chat template"),
    Flag(("--no-jinja",), None, "do not use the Jinja chat template"),
    Flag(("--chat-template",), "str", "a built-in chat template by name"),
    Flag(("--chat-template-file",), "path", "a Jinja template file inside a model directory"),
    Flag(("--mmproj", "-mm"), "path", "a multimodal projector GGUF inside a model directory"),
)
_BY_NAME = {n: f for f in ALLOWED for n in f.names}

#: refused with a reason (prefix match for the families)
DANGEROUS = {
    "--host": "would expose the engine beyond this server",
    "--port": "the port is chosen by bodhi",
    "--api-key": "the engine's key is managed by bodhi",
    "--api-key-file": "the engine's key is managed by bodhi",
    "--log-file": "writes a file",
    "--slot-save-path": "writes files",
    "--path": "serves files",
    "--model-url": "downloads a model", "-mu": "downloads a model",
    "-hf": "downloads a model", "-hfr": "downloads a model", "-hff": "downloads a model",
    "-hft": "downloads a model",
    "--hf-repo": "downloads a model", "--hf-file": "downloads a model",
    "--hf-token": "a secret on the command line",
    "-m": "the model is the alias's 'model'", "--model": "the model is the alias's 'model'",
    "-a": "the name is the alias's", "--alias": "the name is the alias's",
    "--webui": "serves a web UI", "--no-webui": "the web UI is managed by bodhi",
    "--ssl-key-file": "reads a key file", "--ssl-cert-file": "reads a file",
}
_DANGEROUS_PREFIXES = ("--api-key", "--ssl-", "--hf-", "-hf", "--model-url", "--log-")


def flag_options() -> list[dict]:
    """For the panel's form."""
    return [{"flag": f.names[0], "aliases": list(f.names[1:]),
             "value": "str" if f.value == "path" else f.value, "help": f.help,
             **({"choices": list(f.choices)} if f.choices else {})}
            for f in ALLOWED]


def _refusal(name: str) -> str | None:
    if name in DANGEROUS:
        return DANGEROUS[name]
    for p in _DANGEROUS_PREFIXES:
        if name.startswith(p):
            return DANGEROUS.get(p, "not allowed for aliases")
    return None


def inside(path: str, roots: list[str]) -> bool:
    """True when ``path`` (symlinks followed) lies inside one of ``roots``."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def check_path(value: str, where: str, roots: list[str]) -> None:
    if not isinstance(value, str) or not value or not Path(value).is_absolute():
        raise FlagRefused(f"{where} must be an absolute path inside a model directory", where)
    if not inside(value, roots) or not os.path.isfile(value):
        raise FlagRefused(f"{where}: {value!r} is not a file inside the model directories",
                          where)


def check_extra_args(args: list, roots: list[str]) -> list[str]:
    """Validate flags (``--flag value`` or ``--flag=value``); return them normalised to
    ``[flag, value, ...]``. Raise FlagRefused naming the first bad flag."""
    out: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        raw = items[i]
        if not isinstance(raw, str) or not raw.startswith("-"):
            raise FlagRefused(f"extra_args: expected a flag, got {raw!r}", str(raw)[:64])
        name, eq, inline = raw.partition("=")
        why = _refusal(name)
        if why is not None:
            raise FlagRefused(f"llama-server flag {name} is not allowed: {why}", name)
        flag = _BY_NAME.get(name)
        if flag is None:
            raise FlagRefused(f"llama-server flag {name} is not on the allow list "
                              "(see bodhi/app/aliases/options)", name)
        i += 1
        if flag.value is None:
            if eq:
                raise FlagRefused(f"{name} takes no value", name)
            out.append(flag.names[0])
            continue
        if eq:
            value = inline
        elif i < len(items) and isinstance(items[i], str):
            value = items[i]
            i += 1
        else:
            raise FlagRefused(f"{name} needs a {flag.value} value", name)
        if flag.value in ("int", "float"):
            try:
                number = int(value) if flag.value == "int" else float(value)
            except ValueError:
                raise FlagRefused(f"{name} needs a {flag.value} value, got {value!r}",
                                  name) from None
            if flag.minimum is not None and number < flag.minimum:
                raise FlagRefused(f"{name} must be at least {flag.minimum:g}", name)
        elif flag.value == "path":
            check_path(value, name, roots)
        elif not value or len(value) > 256 or "\n" in value or value.startswith("-"):
            # a value that looks like a flag is a flag smuggled past the list
            raise FlagRefused(f"{name} needs a short one-line value, not {value[:32]!r}",
                              name)
        elif flag.choices and value not in flag.choices:
            raise FlagRefused(f"{name} takes one of {', '.join(flag.choices)}", name)
        out += [flag.names[0], value]
    return out
