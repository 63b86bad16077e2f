"""The compute unit (PROTOCOL 8.5): a process evaluated by applying its scheduled messages in
slot order to its module, off the consensus path.

The CU reads the ordered log through the client library (`aoSchedule`, committed slots only)
and keeps, for every process it evaluated, the live Lua state (`ao.runtime.ProcessRuntime`)
and in its store each slot's result and the SHA-256 of the memory after it. After a restart
it evaluates each process again from slot 0 when first asked (functions cannot be written to
disk, a Lua state can be rebuilt), and checks each slot's memory against the hash it kept:
two CUs, or one before and after a restart, reach the same memory byte for byte, and a CU
that does not says so in its log. Listeners (the MU) are told of each slot kept, and the slot
marked told after: one kept but not told when the unit stopped is told on its replay.
A process named by another id the chain resolves to it (a dev chain's `Dev-Process-Id`) is
evaluated under its own id.

Results are AO's `{Output, Messages, Spawns, Error}`. `memory(pid, to)` is the memory after
the last slot at or before the timestamp `to`: the live state's when that is the last slot
evaluated, else a fresh state replayed up to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ao.runtime import Limits, Message, ModuleError, ProcessInfo, ProcessRuntime, Result
from ao.store import JsonStore
from rpc.client import InferchainClient, RpcError
from rpc.errors import INVALID_PARAMS

log = logging.getLogger(__name__)

RESULT_PREFIX = b"cu/result/"  # <pid>/<slot:8> -> {id, result, memory}
RESULT_ID_PREFIX = b"cu/id/"  # <message id> -> {process, slot}
PAGE = 100


class UnknownProcess(LookupError):
    """No process with this id on the chain."""


class UnknownMessage(LookupError):
    """No scheduled message with this id (for this process)."""


def memory_hash(memory: bytes) -> str:
    return hashlib.sha256(memory).hexdigest()


def result_key(pid: str, slot: int) -> bytes:
    return RESULT_PREFIX + pid.encode() + b"/" + slot.to_bytes(8, "big")


def to_message(entry: dict[str, Any]) -> Message:
    """A scheduled message (`aoSchedule`'s) as the runtime takes it."""
    return Message(
        id=entry["id"],
        slot=entry["slot"],
        owner=entry["owner"],
        from_=entry["from"],
        target=entry["process"],
        tags=tuple((str(k), str(v)) for k, v in entry["tags"]),
        data=entry["data"],
        timestamp_ms=entry["timestamp"],
        block_height=entry["height"],
        from_process=entry["fromProcess"],
        cron=entry["cron"],
    )


@dataclass
class Evaluated:
    """One process's live state: its runtime and the next slot to apply."""

    process: dict[str, Any]
    module: str
    runtime: ProcessRuntime | None  # None: the module does not load (every message errors)
    load_error: str | None
    next_slot: int = 0
    # slots kept whose listeners failed (the chain unreachable): told again before the next
    untold: list[tuple[dict[str, Any], Result]] = field(default_factory=list)


Listener = Callable[[str, dict[str, Any], Result], Awaitable[None]]


class ComputeUnit:
    """Evaluates processes on demand and keeps their results."""

    def __init__(self, client: InferchainClient, store: JsonStore) -> None:
        self.client = client
        self.store = store
        self._live: dict[str, Evaluated] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.listeners: list[Listener] = []  # told of each slot evaluated (the MU)
        self.mismatches = 0
        self._ids: dict[str, str] = {}  # an id a caller gave -> the process's own id

    # Reading the chain

    async def process(self, pid: str) -> dict[str, Any]:
        try:
            process: dict[str, Any] = await self.client.ao_process(pid)
        except RpcError as exc:
            if exc.code == INVALID_PARAMS:
                raise UnknownProcess(pid) from exc
            raise
        if process.get("type") == "Module":
            raise UnknownProcess(pid)
        return process

    async def canonical(self, pid: str) -> str:
        """The process's own id for `pid`, which may be another id the chain resolves to it
        (a dev chain's `Dev-Process-Id`, 8.2); UnknownProcess when there is no process."""
        known = self._ids.get(pid)
        if known is None:
            known = str((await self.process(pid))["id"])
            self._ids[pid] = known
        return known

    async def module_source(self, process: dict[str, Any]) -> str:
        if process.get("moduleId"):
            module: dict[str, Any] = await self.client.ao_process(process["moduleId"])
            return str(module["module"])
        return str(process["module"])

    async def slots(self, pid: str, start: int) -> list[dict[str, Any]]:
        """The committed messages of `pid` from slot `start` on."""
        out: list[dict[str, Any]] = []
        cursor: int | None = start
        while cursor is not None:
            page = await self.client.ao_schedule(pid, cursor, PAGE)
            out.extend(page["messages"])
            cursor = page["next"]
        return out

    # Evaluating

    def _lock(self, pid: str) -> asyncio.Lock:
        return self._locks.setdefault(pid, asyncio.Lock())

    async def _fresh(self, pid: str) -> Evaluated:
        process = await self.process(pid)
        module = await self.module_source(process)
        return Evaluated(process, module, *self._runtime(process, module))

    @staticmethod
    def _runtime(process: dict[str, Any], module: str) -> tuple[ProcessRuntime | None, str | None]:
        info = ProcessInfo(
            id=process["id"],
            owner=process["owner"],
            module_id=process.get("moduleId") or process["id"],
            tags=tuple((str(k), str(v)) for k, v in process["tags"]),
            timestamp_ms=process["timestamp"],
            block_height=process["height"],
        )
        limits = Limits(
            memory_bytes=process["memoryLimit"], compute_instructions=process["computeLimit"]
        )
        try:
            return ProcessRuntime(module, info, limits), None
        except ModuleError as exc:
            return None, str(exc)

    async def catch_up(self, pid: str) -> Evaluated:
        """Evaluate every committed slot of `pid` not evaluated yet."""
        pid = await self.canonical(pid)
        async with self._lock(pid):
            live = self._live.get(pid)
            if live is None:
                live = await self._fresh(pid)
                self._live[pid] = live
            while live.untold:
                entry, result = live.untold[0]
                await self._tell(pid, entry, result)
                live.untold.pop(0)
            for entry in await self.slots(pid, live.next_slot):
                result = self._apply(live, entry)
                await self._keep(pid, entry, live, result)
            return live

    @staticmethod
    def _not_loaded(live: Evaluated) -> Result:
        return Result(output="", error=f"the module does not load: {live.load_error}")

    def _apply(self, live: Evaluated, entry: dict[str, Any]) -> Result:
        if live.runtime is None:
            return self._not_loaded(live)
        if entry["slot"] == 0:  # the spawn: what the module did as the runtime loaded it
            return live.runtime.load_result
        return live.runtime.apply(to_message(entry))

    async def _keep(self, pid: str, entry: dict[str, Any], live: Evaluated, result: Result) -> None:
        """Keep the slot's result and memory hash, then tell the listeners, and mark them
        told: a slot kept but not told (the unit stopped between the two) is told when it
        is evaluated again after the restart."""
        slot = int(entry["slot"])
        memory = memory_hash(live.runtime.memory()) if live.runtime is not None else ""
        key = result_key(pid, slot)
        kept = self.store.get(key)
        if kept is None:
            kept = {"id": entry["id"], "result": result.to_json(), "memory": memory, "told": False}
            self.store.write(
                {key: kept, RESULT_ID_PREFIX + entry["id"].encode(): {"process": pid, "slot": slot}}
            )
        elif kept["memory"] != memory:
            self.mismatches += 1
            log.error(
                "process %s slot %d: the memory evaluated now differs from the one kept (%s, "
                "was %s): the evaluation is not deterministic",
                pid,
                slot,
                memory[:16],
                kept["memory"][:16],
            )
        live.next_slot = slot + 1
        if not kept.get("told", True):
            try:
                await self._tell(pid, entry, result)
            except Exception:
                live.untold.append((entry, result))
                raise

    async def _tell(self, pid: str, entry: dict[str, Any], result: Result) -> None:
        for listener in self.listeners:
            await listener(pid, entry, result)
        key = result_key(pid, int(entry["slot"]))
        kept = self.store.get(key)
        assert kept is not None
        self.store.write({key: {**kept, "told": True}})

    # Reads

    async def result(self, pid: str, message_id: str) -> dict[str, Any]:
        """The result of message `message_id` of `pid`, once the chain scheduled it; it is
        evaluated first when it was not yet. UnknownMessage if it is not `pid`'s."""
        pid = await self.canonical(pid)
        place = self.store.get(RESULT_ID_PREFIX + message_id.encode())
        if place is None:
            await self.catch_up(pid)
            place = self.store.get(RESULT_ID_PREFIX + message_id.encode())
        if place is None or place["process"] != pid:
            raise UnknownMessage(message_id)
        kept = self.store.get(result_key(pid, place["slot"]))
        assert kept is not None
        return dict(kept["result"])

    def kept_result(self, message_id: str) -> tuple[str, dict[str, Any]] | None:
        """(process, result) of a message already evaluated, without reading the chain."""
        place = self.store.get(RESULT_ID_PREFIX + message_id.encode())
        if place is None:
            return None
        kept = self.store.get(result_key(place["process"], place["slot"]))
        return None if kept is None else (str(place["process"]), dict(kept["result"]))

    async def dry_run(
        self,
        pid: str,
        *,
        message_id: str,
        owner: str,
        sender: str,
        tags: Iterable[tuple[str, str]],
        data: str,
        from_process: str | None = None,
    ) -> Result:
        """A message that is not scheduled, evaluated on the current memory and forgotten:
        nothing changes (PROTOCOL 8.5). It stands at the process's next slot, at the unit's
        time (ms) and block height 0."""
        pid = await self.canonical(pid)
        live = await self.catch_up(pid)
        if live.runtime is None:
            return self._not_loaded(live)
        message = Message(
            id=message_id,
            slot=live.next_slot,
            owner=owner,
            from_=sender,
            target=live.process["id"],
            tags=tuple(tags),
            data=data,
            timestamp_ms=int(time.time() * 1000),
            block_height=0,
            from_process=from_process,
            cron=False,
        )
        async with self._lock(pid):
            return live.runtime.dry_run(message)

    async def memory(self, pid: str, to: int | None = None) -> bytes:
        """The memory after the last slot at or before timestamp `to` (ms; None: now)."""
        pid = await self.canonical(pid)
        live = await self.catch_up(pid)
        if to is None:
            return live.runtime.memory() if live.runtime is not None else b""
        entries = [e for e in await self.slots(pid, 0) if e["timestamp"] <= to]
        if len(entries) == live.next_slot and live.runtime is not None:
            return live.runtime.memory()
        replay = Evaluated(live.process, live.module, *self._runtime(live.process, live.module))
        for entry in entries:
            self._apply(replay, entry)
        return replay.runtime.memory() if replay.runtime is not None else b""

    async def read(self, pid: str, path: Sequence[str]) -> Any:
        """The value at `path` of the process's globals now (`ProcessRuntime.read`): its
        state, read without a message. LookupError when the path names nothing (or the
        module does not load), ValueError when the value cannot be given as JSON."""
        live = await self.catch_up(pid)
        if live.runtime is None:
            raise LookupError(f"the module does not load: {live.load_error}")
        async with self._lock(live.process["id"]):
            return live.runtime.read(path)
