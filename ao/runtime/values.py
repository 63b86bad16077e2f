"""The values the compute unit hands the runtime and gets back: a message, the process, the
limits of one evaluation, and AO's result `{Output, Messages, Spawns, Error}`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chain.protocol.ao import (
    MAX_COMPUTE_LIMIT,
    MAX_MEMORY_LIMIT,
    MIN_COMPUTE_LIMIT,
    MIN_MEMORY_LIMIT,
)

# The defaults of a spawn (the client library's, rpc.client.AO_DEFAULT_*_LIMIT).
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
DEFAULT_COMPUTE_INSTRUCTIONS = 9_000_000_000

Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Message:
    """One scheduled message as the process sees it (`msg.Id`, `msg.From`, ...)."""

    id: str
    slot: int
    owner: str
    from_: str
    target: str
    tags: Tags
    data: str
    timestamp_ms: int
    block_height: int
    from_process: str | None = None
    cron: bool = False


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The process: `ao.id`, `ao.env.Process` ({Id, Owner, Tags}), its module's id. Its
    timestamp (ms) is what `os.time()` gives while the module loads."""

    id: str
    owner: str
    module_id: str
    tags: Tags = ()
    timestamp_ms: int = 0
    block_height: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may use: the bytes of the process's Lua state beyond the runtime's
    own (live and garbage), and Lua VM instructions. Bounds as the chain's (PROTOCOL 8)."""

    memory_bytes: int = DEFAULT_MEMORY_BYTES
    compute_instructions: int = DEFAULT_COMPUTE_INSTRUCTIONS

    def __post_init__(self) -> None:
        bounds = {
            "memory_bytes": (self.memory_bytes, MIN_MEMORY_LIMIT, MAX_MEMORY_LIMIT),
            "compute_instructions": (
                self.compute_instructions,
                MIN_COMPUTE_LIMIT,
                MAX_COMPUTE_LIMIT,
            ),
        }
        for name, (value, low, high) in bounds.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}: an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Result:
    """AO's CU result. `output` is aos's `{data, prompt[, print]}` (or a text); a message is
    `{Target, Data, Anchor, Tags: [{name, value}]}`, a spawn `{Data, Anchor, Tags}`."""

    output: str | dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    spawns: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Output": self.output,
            "Messages": self.messages,
            "Spawns": self.spawns,
            "Error": self.error,
        }


class ModuleError(Exception):
    """The module does not compile, or raises (or exceeds a limit) while it loads. The text
    is Lua's (`module:<line>: ...`); `line` is that line when Lua names one."""

    def __init__(self, text: str, line: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.line = line
