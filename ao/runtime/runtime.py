"""ProcessRuntime: one AO process in its own Lua 5.4 state (lupa), the sandbox and our
aos-compatible runtime loaded, its module on top; apply, dry run, memory.

Each message runs under the instruction budget (a count hook set by the host side, which
keeps the debug library the process does not have) and the memory limit (lupa's
`max_memory`, set to the bytes in use plus what the process may still grow by). Before
it runs, the graph reachable from the globals is checkpointed (each table's entries and
metatable, each Lua function's upvalues); when it raises or exceeds a limit, or when it
was a dry run, every table is set back in place and every upvalue restored, so the state
is what it was. A full collection before each message makes what the limit counts the
live state's size; a table that grew during a message undone keeps its larger capacity,
so two units (one of them having run a dry run) can differ by that slack near the limit.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import lupa.lua54 as lupa

from ao.runtime.values import Limits, Message, ModuleError, ProcessInfo, Result

log = logging.getLogger(__name__)

MODULES = ("json", "utils", "handlers", "ao", "stringify", "process")
ALIASES = {"handlers-utils": "handlers"}  # Handlers.utils lives in handlers.lua
UNLIMITED = 1 << 62
LINE = re.compile(r"^[^:\s]+:(\d+):")


def _source(name: str) -> str:
    return importlib.resources.files("ao.runtime").joinpath(f"{name}.lua").read_text("utf-8")


SOURCES = {name: _source(name) for name in MODULES}
HOST = _source("host")


def seed_of(text: str) -> tuple[int, int]:
    """math.randomseed's two integers for a message id: SHA-256 of the id, two signed
    64-bit big-endian words."""
    digest = hashlib.sha256(text.encode()).digest()
    return (
        int.from_bytes(digest[:8], "big", signed=True),
        int.from_bytes(digest[8:16], "big", signed=True),
    )


def _line(text: str) -> int | None:
    found = LINE.match(text)
    return int(found.group(1)) if found else None


class ProcessRuntime:
    """A process's live Lua state. Not thread-safe: one caller at a time."""

    def __init__(self, module_source: str, process: ProcessInfo, limits: Limits) -> None:
        self.process = process
        self.limits = limits
        self._lua = lupa.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            max_memory=UNLIMITED,
        )
        sources = self._lua.table_from(
            {name.encode(): text.encode() for name, text in SOURCES.items()}
        )
        handlers_utils = self._lua.eval(
            b"function(s) s['handlers-utils'] = 'return require(\".handlers\").utils' end"
        )
        handlers_utils(sources)
        self._host = self._lua.execute(HOST.encode(), sources)
        info = {
            "id": process.id,
            "owner": process.owner,
            "module": process.module_id,
            "tags": [list(pair) for pair in process.tags],
            "timestamp": process.timestamp_ms,
        }
        self._host.collate()
        self._host.install(json.dumps(info).encode())
        self._host.seed(*seed_of(process.id))
        self._host.collect()
        self._baseline: int = self._used()
        self.load_result = self._load(module_source)
        """What the module's load printed and sent (Output: its prints)."""

    # Limits

    def _used(self) -> int:
        used = self._lua.get_memory_used(total=True)
        return int(used or 0)

    def _checkpoint(self) -> Any:
        """The checkpoint of the state, and the memory limit set for what runs next: the
        process may grow to `memory_bytes` beyond the runtime's own, the checkpoint's copies
        not counted."""
        self._host.collect()
        state = self._used() - self._baseline
        checkpoint = self._host.checkpoint()
        allowance = max(self.limits.memory_bytes - state, 1)
        self._lua.set_max_memory(self._used() + allowance, total=True)
        return checkpoint

    def _unlimit(self) -> None:
        self._lua.set_max_memory(UNLIMITED, total=True)

    def _run(self, call: Any, *args: Any) -> tuple[str, Any, str]:
        """(kind, value, logs): kind "ok", "compute", "memory" or "error"."""
        try:
            outcome = call(*args, self.limits.compute_instructions)
        except lupa.LuaMemoryError:
            return "memory", None, ""
        except lupa.LuaError as exc:
            return "error", str(exc), ""
        finally:
            self._unlimit()
        kind = outcome[1].decode()
        value = outcome[2]
        logs = outcome[3].decode("utf-8", "replace") if len(outcome) > 3 else ""
        return kind, value, logs

    def _error_text(self, kind: str, value: Any) -> str:
        if kind == "compute":
            return (
                f"compute limit exceeded: the message ran more than "
                f"{self.limits.compute_instructions} instructions"
            )
        if kind == "memory":
            return (
                f"memory limit exceeded: the process needs more than "
                f"{self.limits.memory_bytes} bytes"
            )
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    # Loading

    def _load(self, source: str) -> Result:
        if not source.strip():
            return Result(output="", messages=[], spawns=[], error=None)
        checkpoint = self._checkpoint()
        kind, value, _ = self._run(self._host.load_module, source.encode())
        if kind != "ok":
            self._host.restore(checkpoint)
            text = self._error_text(kind, value)
            raise ModuleError(text, _line(text))
        self._host.collect()
        if self._used() - self._baseline > self.limits.memory_bytes:
            text = (
                f"memory limit exceeded: the module needs more than "
                f"{self.limits.memory_bytes} bytes"
            )
            raise ModuleError(text, None)
        body = json.loads(value)
        return Result(
            output=body["Output"],
            messages=list(body["Messages"]),
            spawns=list(body["Spawns"]),
            error=None,
        )

    # Messages

    @staticmethod
    def message_json(message: Message, module_id: str) -> bytes:
        """The message as the Lua side reads it (aos's fields; tags as a list)."""
        body: dict[str, Any] = {
            "Id": message.id,
            "Owner": message.owner,
            "From": message.from_,
            "Target": message.target,
            "Data": message.data,
            "Timestamp": message.timestamp_ms,
            "Block-Height": message.block_height,
            "Nonce": message.slot,
            "Module": module_id,
            "Cron": message.cron,
            "Tags": [{"name": name, "value": value} for name, value in message.tags],
        }
        if message.from_process:
            body["From-Process"] = message.from_process
        return json.dumps(body, ensure_ascii=False).encode()

    def _evaluate(self, message: Message, keep: bool) -> Result:
        collate = self._host.collate()
        if collate != b"C":
            log.warning("LC_COLLATE was %r: set to C for the Lua state", collate)
        self._host.seed(*seed_of(message.id))
        checkpoint = self._checkpoint()
        kind, value, logs = self._run(
            self._host.apply, self.message_json(message, self.process.module_id)
        )
        if kind != "ok" or not keep:
            self._host.restore(checkpoint)
        del checkpoint
        if kind != "ok":
            return Result(output=logs, messages=[], spawns=[], error=self._error_text(kind, value))
        body = json.loads(value)
        return Result(
            output=body["Output"],
            messages=list(body["Messages"]),
            spawns=list(body["Spawns"]),
            error=None,
        )

    def apply(self, message: Message) -> Result:
        """Evaluate `message` on the live state; on an error the state is as before."""
        return self._evaluate(message, keep=True)

    def dry_run(self, message: Message) -> Result:
        """Evaluate `message` on the current state and forget it: nothing changes."""
        return self._evaluate(message, keep=False)

    def read(self, path: Sequence[str]) -> Any:
        """The value at `path` of the process's globals (PROTOCOL 8.8, "Reading the state"),
        as JSON values, read with raw access under the compute budget; the state is unchanged.
        LookupError when the path names nothing, ValueError when a value on it is not a
        table or the value is not JSON (a function, a cycle, a NaN, ...)."""
        segments = list(path)
        if not segments:
            raise ValueError("a path names at least a global")
        if not all(isinstance(s, str) for s in segments):
            raise ValueError("a path is a list of texts")
        kind, value, _ = self._run(self._host.read, json.dumps(segments).encode())
        if kind == "ok":
            return json.loads(value.decode("utf-8", "replace"))
        text = self._error_text(kind, value)
        if text.startswith("missing: "):
            raise LookupError(text.removeprefix("missing: "))
        raise ValueError(text.removeprefix("value: "))

    def memory(self) -> bytes:
        """The process's state, serialized as the package's docstring says."""
        self._host.collate()
        self._host.collect()
        memory = self._host.memory()
        assert isinstance(memory, bytes)
        return memory

    def memory_used(self) -> int:
        """Bytes of the Lua state beyond the runtime's own, after a full collection."""
        self._host.collect()
        return self._used() - self._baseline
