"""Each kernel the server starts gets its own bodhi token, through its environment.

The token (scope ``write``: inference, never admin; tokens are login-only, so it cannot
mint others) is named after the notebook, remembers the notebook for usage, and is deleted
when the kernel goes. Two points of the kernel manager are wrapped on the instance, so a
deployment's own kernel manager class or provisioner works too:

- ``start_kernel``: the token goes into the ``env`` keyword, which every jupyter_client
  provisioner takes as the kernel's environment (``KernelProvisionerBase.pre_launch``).
  Restarts reuse the launch arguments, so a restarted kernel keeps its token.
- ``remove_kernel``: every way a kernel leaves the map ends there (a DELETE, a cull, a
  kernel that died, ``shutdown_all``); kernel action events would not do: a restart emits
  ``shutdown`` too, and a custom kernel manager may emit none.

Tokens are never logged: jupyter_server logs the names of env keys only, and the command
line carries none. A server that stops revokes its kernels' tokens; one that was killed
leaves them, and the next start of the same server deletes them (``purge_stale``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from jupyter_server.utils import ensure_async

from .tokens import hash_token

if TYPE_CHECKING:
    from .tokens import TokenStore

BASE_URL_VAR = "BODHI_BASE_URL"
API_KEY_VAR = "BODHI_API_KEY"
SCOPE = "write"
NAME_PREFIX = "kernel: "


def local_api_url(serverapp) -> str | None:
    """The server's own OpenAI-compatible base as a kernel on the same machine reaches
    it (never through a JupyterHub proxy); None for a server on a Unix socket."""
    if getattr(serverapp, "sock", None):
        return None
    ip = serverapp.ip or ""
    if ip in ("", "0.0.0.0", "*", "localhost"):  # noqa: S104
        host = "127.0.0.1"
    elif ip in ("::", "::0"):
        host = "[::1]"
    else:
        host = f"[{ip}]" if ":" in ip else ip
    scheme = "https" if serverapp.certfile else "http"
    base = "/" + serverapp.base_url.strip("/") + "/" if serverapp.base_url.strip("/") else "/"
    return f"{scheme}://{host}:{serverapp.port}{base}bodhi/v1"


def server_key() -> str:
    """Which server minted a kernel token. A JupyterHub server (one per user and server
    name at a time) is its URL prefix; a plain server is host and pid."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix and os.environ.get("JUPYTERHUB_USER"):
        return f"hub:{prefix}"
    return f"local:{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KernelCredentials:
    """Mints, hands over and revokes kernel tokens for one kernel manager."""

    def __init__(self, tokens: TokenStore, *, owner: Callable[[], str],
                 ready: Callable[[], Awaitable[None]], base_url: Callable[[], str | None],
                 root_dir: str | None = None, key: str | None = None, log=None):
        self.tokens = tokens
        self._owner = owner
        self._ready = ready
        self._base_url = base_url
        self.root_dir = root_dir
        self.key = key or server_key()
        self.log = log
        self.kernel_manager = None
        self._kernels: dict[str, tuple[str, str]] = {}  # kernel id -> (token id, hash)
        self._pending: set[asyncio.Future] = set()
        self._closed = False

    # -- installing ------------------------------------------------------------------------
    def install(self, kernel_manager) -> None:
        """Wrap this kernel manager instance's start_kernel, remove_kernel and update_env."""
        self.kernel_manager = kernel_manager
        start, remove = kernel_manager.start_kernel, kernel_manager.remove_kernel
        update_env = getattr(kernel_manager, "update_env", None)

        async def start_kernel(*args, **kwargs):
            return await self.start_kernel(start, *args, **kwargs)

        def remove_kernel(kernel_id, *args, **kwargs):
            try:
                return remove(kernel_id, *args, **kwargs)
            finally:
                self.kernel_removed(kernel_id)

        kernel_manager.start_kernel = start_kernel
        kernel_manager.remove_kernel = remove_kernel
        if update_env is not None:
            def update_env_wrapped(*, kernel_id, env):
                return self.update_env(update_env, kernel_id=kernel_id, env=env)

            kernel_manager.update_env = update_env_wrapped

    # -- the wrapped methods ---------------------------------------------------------------
    async def start_kernel(self, original, *args, **kwargs) -> str:
        kernel_id = kwargs.get("kernel_id")
        if self._closed or (kernel_id is not None and self.kernel_manager is not None
                            and kernel_id in self.kernel_manager):
            return await ensure_async(original(*args, **kwargs))  # no new kernel
        given = kwargs.get("env")
        env = dict(given or os.environ)
        # the session's JPY_SESSION_NAME, not one the server itself inherited
        minted = await self._mint(self.notebook_of(given or {}, kwargs.get("path")))
        if minted is None:  # no credential, but never a kernel that fails to start for it
            return await ensure_async(original(*args, **kwargs))
        token, token_id, base_url = minted
        env[BASE_URL_VAR], env[API_KEY_VAR] = base_url, token
        kwargs["env"] = env
        try:
            kernel_id = await ensure_async(original(*args, **kwargs))
        except BaseException:
            self.tokens.refuse(hash_token(token))
            await asyncio.shield(asyncio.to_thread(self.tokens.delete, token_id))
            raise
        self._kernels[kernel_id] = (token_id, hash_token(token))
        await self._in_thread(self.tokens.update, token_id, kernel_id=kernel_id)
        return kernel_id

    def kernel_removed(self, kernel_id: str) -> None:
        entry = self._kernels.pop(kernel_id, None)
        if entry is None:
            return
        token_id, hashed = entry
        self.tokens.refuse(hashed)  # at once; the row goes in a thread
        if not self._closed:
            self._background(self.tokens.delete, token_id)

    def update_env(self, original, *, kernel_id: str, env: dict) -> Any:
        """A renamed notebook: the session sends a fresh copy of the server's environment
        for the next restart; keep the kernel's credential in it, rename the token."""
        env = {k: v for k, v in env.items() if k not in (BASE_URL_VAR, API_KEY_VAR)}
        result = original(kernel_id=kernel_id, env=env)
        entry = self._kernels.get(kernel_id)
        notebook = self.notebook_of(env, None)
        if entry is not None and notebook and not self._closed:
            self._background(self.tokens.update, entry[0], notebook=notebook,
                             name=self.token_name(notebook))
        return result

    # -- lifecycle -------------------------------------------------------------------------
    def purge_stale(self) -> int:
        """Blocking (the storage thread): delete kernel tokens an earlier run of this server
        left (it was killed, so it could not revoke them)."""
        if self.key.startswith("hub:"):
            stale = [t for t, _, _ in self.tokens.kernel_tokens(self.key)]
        else:
            host_part = self.key.rsplit(":", 1)[0]
            stale = []
            for token_id, key, _kernel in self.tokens.kernel_tokens(host_part + ":%"):
                pid = key.rsplit(":", 1)[-1]
                if key == self.key or not pid.isdigit() or not _pid_alive(int(pid)):
                    stale.append(token_id)
        for token_id in stale:
            self.tokens.delete(token_id)
        if stale and self.log:
            self.log.info("bodhi: revoked %d kernel token(s) left by an earlier run",
                          len(stale))
        return len(stale)

    async def stop(self, revoke: bool = True) -> None:
        """The server stops: revoke every kernel token it handed out (before its kernels are
        shut down; their removal then only refuses what is already gone)."""
        self._closed = True
        for _token_id, hashed in self._kernels.values():
            self.tokens.refuse(hashed)
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=10)
        if not revoke:
            return
        try:
            await asyncio.to_thread(self._delete_mine)
        except Exception as e:  # the database may never have opened
            if self.log:
                self.log.warning("bodhi: could not revoke kernel tokens: %s", e)

    def _delete_mine(self) -> None:
        for token_id, _key, _kernel in self.tokens.kernel_tokens(self.key):
            self.tokens.delete(token_id)

    # -- helpers ---------------------------------------------------------------------------
    def notebook_of(self, env: dict, path: str | None) -> str | None:
        """The notebook's API path: the session's JPY_SESSION_NAME (an OS path when the
        session named a file), else the kernel's directory."""
        name = env.get("JPY_SESSION_NAME") or path or None
        if name and self.root_dir and os.path.isabs(name):
            rel = os.path.relpath(name, self.root_dir)
            if not rel.startswith(".."):
                name = rel.replace(os.sep, "/")
        return name

    @staticmethod
    def token_name(notebook: str | None) -> str:
        return (NAME_PREFIX + (notebook or "(no notebook)"))[:255]

    async def _mint(self, notebook: str | None) -> tuple[str, str, str] | None:
        try:
            base_url = self._base_url()
            if base_url is None:
                return None
            await self._ready()  # storage opens in the background after start-up
            token, info = await asyncio.to_thread(
                self.tokens.create, self._owner(), self.token_name(notebook), SCOPE,
                kernel_server=self.key, notebook=notebook)
        except Exception as e:
            if self.log:
                self.log.error("bodhi: starting a kernel without its bodhi credential: %s", e)
            return None
        return token, info.id, base_url

    async def _in_thread(self, fn, *args, **kwargs) -> None:
        try:
            await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as e:  # bookkeeping; the kernel runs either way
            if self.log:
                self.log.error("bodhi: kernel token bookkeeping failed: %s", e)

    def _background(self, fn, *args, **kwargs) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop
            try:
                fn(*args, **kwargs)
            except Exception as e:
                if self.log:
                    self.log.error("bodhi: kernel token bookkeeping failed: %s", e)
            return
        task = loop.create_task(self._in_thread(fn, *args, **kwargs))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
