"""Which llama-server binary the launcher picks, and the command lines it builds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bodhi_jupyter.engine.launcher import LlamaServerLauncher
from bodhi_jupyter.models.registry import ResolvedModel, ServerOptions


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'version: 1 (fake)'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def path_dir(tmp_path, monkeypatch) -> Path:
    """An otherwise empty PATH, so the developer's own llama-server cannot interfere."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


# -- binary resolution ---------------------------------------------------------------------

def test_configured_path_wins(tmp_path, path_dir):
    executable(path_dir / "llama-server")
    configured = executable(tmp_path / "opt" / "my-llama-server")

    assert LlamaServerLauncher(llama_server_path=str(configured)).binary() == [str(configured)]


def test_configured_path_expands_the_home_dir(tmp_path, monkeypatch, path_dir):
    monkeypatch.setenv("HOME", str(tmp_path))
    configured = executable(tmp_path / "llama" / "llama-server")

    assert LlamaServerLauncher(llama_server_path="~/llama/llama-server").binary() == [
        str(configured)]


@pytest.mark.parametrize("kind", ["not-executable", "missing", "directory"])
def test_configured_path_must_be_executable(tmp_path, path_dir, kind):
    executable(path_dir / "llama-server")  # no silent fallback to PATH
    bad = tmp_path / "llama-server"
    if kind == "not-executable":
        bad.write_text("#!/bin/sh\n")
        bad.chmod(0o644)
    elif kind == "directory":
        bad.mkdir()

    with pytest.raises(FileNotFoundError, match=str(bad)):
        LlamaServerLauncher(llama_server_path=str(bad)).binary()


def test_llama_server_on_path(path_dir):
    on_path = executable(path_dir / "llama-server")

    assert LlamaServerLauncher().binary() == [str(on_path)]


def test_non_executable_llama_server_on_path_is_ignored(path_dir):
    (path_dir / "llama-server").write_text("#!/bin/sh\n")  # mode 644

    assert LlamaServerLauncher().binary() == [
        str(Path(sys.executable).with_name("bodhi-llama-server"))]


def test_bundled_engine_is_the_fallback(path_dir):
    bundled = Path(sys.executable).with_name("bodhi-llama-server")
    assert bundled.exists(), "the project's console script is not installed in this venv"

    assert LlamaServerLauncher().binary() == [str(bundled)]


def test_version_line(tmp_path, path_dir):
    configured = executable(tmp_path / "llama-server")
    assert LlamaServerLauncher(llama_server_path=str(configured)).version() == \
        "version: 1 (fake)"


def test_describe_asks_the_binary_once_and_survives_a_missing_one(tmp_path, path_dir):
    calls = tmp_path / "calls"
    binary = tmp_path / "llama-server"
    binary.write_text(f"#!/bin/sh\necho x >> '{calls}'\necho 'version: 2 (counted)'\n")
    binary.chmod(0o755)
    launcher = LlamaServerLauncher(llama_server_path=str(binary))
    assert launcher.describe() == ((str(binary),), "version: 2 (counted)")
    assert launcher.describe() == ((str(binary),), "version: 2 (counted)")
    assert calls.read_text().count("x") == 1
    missing = LlamaServerLauncher(llama_server_path=str(tmp_path / "nope"))
    command, version = missing.describe()
    assert command == (str(tmp_path / "nope"),) and version.startswith("unavailable:")


# -- command line --------------------------------------------------------------------------

def model(**server) -> ResolvedModel:
    opts = {"ctx_size": 2048, "parallel": 2, **server}
    return ResolvedModel("owner/repo:Q4_K_M", "/models/m.gguf", "hf-cache",
                         ServerOptions(**opts), {"system_prompt": "hi"})


def flag(cmd: list[str], name: str) -> str:
    assert cmd.count(name) == 1, cmd
    return cmd[cmd.index(name) + 1]


@pytest.fixture
def launcher(tmp_path, path_dir) -> LlamaServerLauncher:
    engine = executable(tmp_path / "engine" / "llama-server")
    return LlamaServerLauncher(llama_server_path=str(engine))


def test_command_basics(launcher):
    cmd = launcher.command(model(), 41234, embedding=False)

    assert cmd[0] == launcher.llama_server_path
    assert flag(cmd, "--model") == "/models/m.gguf"
    assert flag(cmd, "--host") == "127.0.0.1"
    assert flag(cmd, "--port") == "41234"
    assert flag(cmd, "--ctx-size") == "2048"
    assert flag(cmd, "--parallel") == "2"
    assert flag(cmd, "--alias") == "owner/repo:Q4_K_M"
    for absent in ("--embedding", "--pooling", "--threads", "--n-gpu-layers",
                   "--chat-template", "--chat-template-file"):
        assert absent not in cmd


def test_embedding_engines_get_pooling(launcher):
    cmd = launcher.command(model(), 1, embedding=True)
    i = cmd.index("--embedding")
    assert cmd[i + 1:i + 3] == ["--pooling", "mean"]

    cls = launcher.command(model(pooling="cls"), 1, embedding=True)
    assert flag(cls, "--pooling") == "cls"
    assert "--pooling" not in launcher.command(model(pooling="cls"), 1, embedding=False)


def test_chat_template_file_wins_over_a_template(launcher):
    both = launcher.command(model(chat_template="chatml", chat_template_file="/t/x.jinja"),
                            1, embedding=False)
    assert flag(both, "--chat-template-file") == "/t/x.jinja"
    assert "--chat-template" not in both

    name_only = launcher.command(model(chat_template="chatml"), 1, embedding=False)
    assert flag(name_only, "--chat-template") == "chatml"


def test_extra_args_come_last(launcher):
    launcher.extra_args = ["--metrics", "--no-slots"]
    cmd = launcher.command(model(extra_args=("--flash-attn", "on"), gpu_layers=99,
                                 chat_template="chatml"), 1, embedding=True)
    assert cmd[-4:] == ["--metrics", "--no-slots", "--flash-attn", "on"]
    assert flag(cmd, "--n-gpu-layers") == "99"


def test_threads_only_when_set(launcher):
    assert "--threads" not in launcher.command(model(), 1, embedding=False)
    launcher.threads = 3
    assert flag(launcher.command(model(), 1, embedding=False), "--threads") == "3"


def test_host_is_configurable(launcher):
    launcher.host = "::1"
    assert flag(launcher.command(model(), 1, embedding=False), "--host") == "::1"


def test_command_never_carries_an_api_key(launcher, monkeypatch):
    monkeypatch.setenv("LLAMA_API_KEY", "s3cret-key")
    launcher.threads = 2
    launcher.extra_args = ["--metrics"]
    for embedding in (False, True):
        cmd = launcher.command(model(chat_template_file="/t.jinja"), 1, embedding=embedding)
        assert "--api-key" not in cmd and "--api-key-file" not in cmd
        assert not any("s3cret-key" in part for part in cmd)
