"""Transactions of one key that are sent exactly once, across restarts (PROTOCOL 8.6, 8.10),
and the poll loop the unit's messenger and bridge run.

A transaction is built with the key's next nonce, signed, and written to the store under a
key of the caller's before it is sent; once the chain answers it is marked `done` (with the
chain's `error` when it refused it). After a restart `resend_pending` sends the ones not
marked, the same signed transaction: the chain takes it once (a second time its nonce is
used, -32000, which is read as "sent before the restart"). One lock serializes every
transaction of the key, recorded or not, so at most one recorded transaction is unsent when
the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ao.store import JsonStore
from chain.protocol import ao as ao_rules
from chain.protocol.types import AoMessage, Message
from rpc.client import InferchainClient, RpcError, TransportError, Wallet, ao_tags_json, presign
from rpc.errors import NONCE_MISMATCH

log = logging.getLogger(__name__)


class OnceSender:
    """Sends `wallet`'s recorded transactions once each."""

    def __init__(self, client: InferchainClient, wallet: Wallet, store: JsonStore) -> None:
        self.client = client
        self.wallet = wallet
        self.store = store
        self.lock = asyncio.Lock()

    async def send_once(self, key: bytes, build: Callable[[int], Message]) -> dict[str, Any]:
        """The record under `key`: made from `build(nonce)`, signed, written, then sent, the
        first time; sent again when it was written but not sent; else as it is. The record
        is `{method, params, id, digest, done[, error]}`: `id` the AO id of the signature,
        `digest` the EIP-712 digest (a SubmitTask's taskHash)."""
        async with self.lock:
            record = self.store.get(key)
            if record is None:
                nonce = await self.client.next_nonce(self.wallet.address)
                tx = presign(build(nonce), await self.client.chain_id(), self.wallet.private_key)
                record = {
                    "method": tx.method,
                    "params": tx.params,
                    "id": ao_rules.ao_id(tx.signed.signature),
                    "digest": tx.digest,
                    "done": False,
                }
                self.store.write({key: record})
            if not record["done"]:
                record = await self._send(key, record)
            return dict(record)

    async def send_message_once(
        self,
        key: bytes,
        target: str,
        tags: Sequence[tuple[str, str]],
        data: str = "",
        from_process: str = "",
    ) -> dict[str, Any]:
        """`send_once` of an AoMessage from the wallet to `target` (relayed for
        `from_process` when given)."""

        def build(nonce: int) -> Message:
            return AoMessage(
                sender=self.wallet.address,
                nonce=nonce,
                target=target,
                data=data,
                tags=ao_tags_json(tags),
                from_process=from_process,
            )

        return await self.send_once(key, build)

    async def _send(self, key: bytes, record: dict[str, Any]) -> dict[str, Any]:
        try:
            await self.client.send_signed(record["method"], record["params"])
            done = {**record, "done": True}
        except RpcError as exc:
            if exc.code == NONCE_MISMATCH:  # sent before the restart: the chain has it
                log.info("%s %s was sent before: %s", record["method"], record["id"], exc)
                done = {**record, "done": True}
            else:  # refused: its nonce is not used
                log.warning("%s %s refused: %s", record["method"], record["id"], exc)
                self.client.reset_nonce(self.wallet.address)
                done = {**record, "done": True, "error": {"code": exc.code, "message": str(exc)}}
        self.store.write({key: done})
        return done

    async def resend_pending(self, prefix: bytes) -> None:
        """Send the records under `prefix` written but not sent, in nonce order."""
        undone = [(k, r) for k, r in self.store.scan(prefix) if not r["done"]]
        undone.sort(key=lambda item: int(item[1]["params"]["nonce"]))
        async with self.lock:
            for key, record in undone:
                await self._send(key, record)


async def poll_forever(
    step: Callable[[], Awaitable[None]], stopping: asyncio.Event, interval: float, name: str
) -> None:
    """`step` every `interval` seconds until `stopping` is set; a chain that cannot be
    reached is logged and tried again, anything else logged with its traceback."""
    while not stopping.is_set():
        try:
            await step()
        except (RpcError, TransportError) as exc:
            log.info("%s: the chain is not reachable (%s)", name, exc)
        except Exception:
            log.exception("%s failed unexpectedly", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
