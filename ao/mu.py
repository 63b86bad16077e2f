"""The messenger unit (PROTOCOL 8.6): what evaluation sends (`ao.send`, `msg.reply`) relayed
to the target's scheduler, the chain, as new messages from the process (`fromProcess`),
signed with the unit's key on the process's behalf; and the crank that keeps monitored
processes evaluated.

The MU relays the outbox of the processes whose `scheduler` is the unit's address (the chain
refuses a relay by anyone else, 8.2). Each relay is written to the store, signed with its
nonce, before it is sent, and marked once the chain has it: a restart sends the ones not
marked again, the same signed transaction, which the chain takes once (a second time its
nonce is used: -32000), so every message is relayed exactly once (`ao.once`).

The crank polls, for each monitored process, the chain for slots not evaluated yet and has
the CU evaluate them (which hands the MU their outboxes). The unit monitors its own processes
from their spawn, and any other on `POST /messenger/monitor/{pid}` (kept in the store).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ao.cu import ComputeUnit, UnknownProcess
from ao.once import OnceSender, poll_forever
from ao.runtime import Result
from ao.store import JsonStore
from chain.protocol import ao as ao_rules
from rpc.client import (
    AoReceipt,
    InferchainClient,
    RpcError,
    TransportError,
    Wallet,
)

log = logging.getLogger(__name__)

RELAY_PREFIX = b"mu/relay/"  # <pid>/<slot:8>/<index:4> -> {params, method, id, done}
MONITOR_PREFIX = b"mu/monitor/"  # <pid> -> true
DEFAULT_POLL_S = 0.2


def relay_key(pid: str, slot: int, index: int) -> bytes:
    return RELAY_PREFIX + pid.encode() + b"/" + slot.to_bytes(8, "big") + index.to_bytes(4, "big")


class MessengerUnit:
    """Relays outboxes and cranks monitored processes."""

    def __init__(
        self,
        client: InferchainClient,
        wallet: Wallet,
        cu: ComputeUnit,
        store: JsonStore,
        *,
        poll_interval: float = DEFAULT_POLL_S,
    ) -> None:
        self.client = client
        self.wallet = wallet
        self.cu = cu
        self.store = store
        self.poll_interval = poll_interval
        self._stopping = asyncio.Event()
        self.sender = OnceSender(client, wallet, store)
        self._known_processes = 0
        cu.listeners.append(self.on_result)

    # Monitoring

    def monitored(self) -> list[str]:
        return [key[len(MONITOR_PREFIX) :].decode() for key in self.store.keys(MONITOR_PREFIX)]

    def monitor(self, pid: str) -> None:
        self.store.write({MONITOR_PREFIX + pid.encode(): True})

    def unmonitor(self, pid: str) -> None:
        self.store.write({MONITOR_PREFIX + pid.encode(): None})

    async def crank_once(self) -> None:
        """Evaluate what is new in every monitored process, and every new process whose
        scheduler is this unit (monitored from then on)."""
        await self._discover()
        for pid in self.monitored():
            try:
                await self.cu.catch_up(pid)
            except UnknownProcess:  # monitored as it was handed in: not in a block yet
                continue
            except (RpcError, TransportError) as exc:
                log.debug("crank %s: %s", pid, exc)

    async def _discover(self) -> None:
        new = await self.client.ao_processes(self._known_processes, 1000)
        for pid in new:
            process = await self.client.ao_process(pid)
            if str(process["scheduler"]).lower() == self.wallet.address.lower():
                self.monitor(pid)
        self._known_processes += len(new)

    async def run_forever(self) -> None:
        await self.resend_pending()
        await poll_forever(self.crank_once, self._stopping, self.poll_interval, "crank")

    def stop(self) -> None:
        self._stopping.set()

    # Relaying

    async def on_result(self, pid: str, entry: dict[str, Any], result: Result) -> None:
        """A slot of `pid` was evaluated: relay its outbox when this unit is its scheduler."""
        if not result.messages:
            return
        process = await self.cu.process(pid)
        if str(process["scheduler"]).lower() != self.wallet.address.lower():
            return
        for index, outgoing in enumerate(result.messages):
            if not await self._is_process(str(outgoing.get("Target", ""))):
                # to a wallet (a reply to a user, whose address may look like an id): read
                # from the result, nothing to relay
                continue
            await self.relay(pid, int(entry["slot"]), index, outgoing)

    async def _is_process(self, target: str) -> bool:
        if not ao_rules.is_id(target):
            return False
        try:
            await self.cu.process(target)
        except UnknownProcess:
            return False
        return True

    async def relay(self, pid: str, slot: int, index: int, outgoing: dict[str, Any]) -> None:
        """Sign, record, then send one outgoing message (once: a recorded one is resent)."""
        data = outgoing.get("Data", "")
        await self.sender.send_message_once(
            relay_key(pid, slot, index),
            str(outgoing.get("Target", "")),
            [(str(t["name"]), str(t["value"])) for t in outgoing.get("Tags", [])],
            data if isinstance(data, str) else str(data),
            from_process=pid,
        )

    async def resend_pending(self) -> None:
        """The relays recorded but not marked sent (the unit stopped between the two)."""
        await self.sender.resend_pending(RELAY_PREFIX)

    # The unit's own transactions, in turn with the relays (one key, one nonce sequence)

    async def send_data_item(self, raw: bytes) -> AoReceipt:
        async with self.sender.lock:
            return await self.client.ao_data_item(self.wallet, raw)

    async def send_message(
        self, target: str, tags: list[tuple[str, str]], data: str = ""
    ) -> AoReceipt:
        async with self.sender.lock:
            return await self.client.ao_message(self.wallet, target, tags=tags, data=data)

    def relayed(self, message_id: str) -> list[dict[str, Any]]:
        """The relays of the outbox of message `message_id`, as recorded."""
        kept = self.cu.kept_result(message_id)
        if kept is None:
            return []
        return [r for _k, r in self.store.scan(RELAY_PREFIX + kept[0].encode() + b"/")]
