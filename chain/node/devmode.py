"""The one-validator block producer (PROTOCOL 6, dev mode): automine, interval blocks, and
group commit.

A validator alone commits by itself: it signs its own precommit, which the next block carries
as `lastCommit`. With a block time it makes a block every interval, empty or not (deadlines
count blocks); with block time 0 (automine) it makes one as soon as transactions wait, and
once a second while tasks are open.

Group commit: the block's precommit is signed and its batch written in a worker thread, while
the event loop goes on admitting transactions onto the state after that block; they make the
next block. Reads see a block once its write is done (`Ledger.publish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from chain.node.ledger import PreparedBlock, log_late
from chain.protocol import blocks, gossip
from chain.protocol.blocks import Head
from chain.protocol.consensus import VoteMsg
from chain.protocol.state import State
from chain.protocol.types import BlockContext, SignedTx, Vote

if TYPE_CHECKING:
    from chain.node.node import Node

log = logging.getLogger(__name__)

AUTOMINE_HEARTBEAT_S = 1.0


class DevProducer:
    """Makes and commits every block of a one-validator chain."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.tx_waiting = asyncio.Event()
        self._writing: asyncio.Future[PreparedBlock] | None = None
        self._writing_head: Head | None = None  # of the block being written
        self._open: BlockContext | None = None  # of the block being filled

    async def run(self) -> None:
        block_time_ms = self.node.block_time_ms
        if block_time_ms > 0:
            await self._run_timed(block_time_ms / 1000)
        else:
            await self._run_automine()

    async def _run_timed(self, interval: float) -> None:
        stopping = self.node.stopping
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stopping.is_set():
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                if stopping.is_set():
                    return
            else:
                next_at = loop.time()
            await self._produce()

    async def _run_automine(self) -> None:
        stopping = self.node.stopping
        while not stopping.is_set():
            if not self.tx_waiting.is_set():  # no timer to arm while transactions wait
                try:
                    async with asyncio.timeout(AUTOMINE_HEARTBEAT_S):
                        await self.tx_waiting.wait()
                except TimeoutError:
                    if not self.node.ledger.has_open_tasks():
                        continue
            if stopping.is_set():
                return
            self.tx_waiting.clear()
            await self._produce()
            if len(self.node.mempool):
                self.tx_waiting.set()

    def next_context(self) -> BlockContext:
        """The context of the next block: the one fixed by the first transaction admitted
        to it; else after the head, or after the block being written."""
        head = self._writing_head or self.node.ledger.head
        if self._open is not None and self._open.height == head.height + 1:
            return self._open
        return self.node.context_after(head)

    def admitted(self, ctx: BlockContext) -> None:
        """A transaction was admitted under `ctx`: the block being filled keeps it."""
        self._open = ctx
        self.tx_waiting.set()

    def produce_block(self) -> Head:
        """Build, execute, sign and commit the next block from the mempool, in this thread."""
        started = time.perf_counter()
        prepared, txs = self._seal()
        head = self._publish(self._sign_and_write(prepared), txs)
        self.node.observe_commit(time.perf_counter() - started)
        return head

    async def _produce(self) -> None:
        """`produce_block` with the signature and the synced write in a worker thread."""
        started = time.perf_counter()
        prepared, txs = self._seal()
        loop = asyncio.get_running_loop()
        writing = loop.run_in_executor(None, self._sign_and_write, prepared)
        self._writing = writing
        written = await asyncio.shield(writing)  # a cancelled producer still lets it end
        self._publish(written, txs)
        self.node.observe_commit(time.perf_counter() - started)
        await self.node.notify_new_block()

    def _seal(self) -> tuple[PreparedBlock, list[SignedTx]]:
        """Execute the next block and hand its transactions to the mempool as sealed.

        When the block holds every admitted transaction, admitted under its own context, the
        mempool's state is already the state they make: only `end_block` is left to run.
        """
        node = self.node
        mempool, ledger, params = node.mempool, node.ledger, node.params
        ctx = self.next_context()
        txs = mempool.take(params.max_block_txs)
        block = ledger.next_block(ctx, [tx.hash for tx in txs])
        signers = [v.validator for v in block.last_commit]
        in_block = blocks.context_of(block)  # with the block's hash, for its end (4.5)
        if self._open == ctx and mempool.holds_only(txs):
            state = mempool.pending_block_state()
            blocks.end_block(state, params, in_block, signers)
            records = [(tx, "committed") for tx in txs]
        else:
            state = State(ledger.view)
            records = blocks.execute_block(state, params, in_block, txs, signers, log_late)
        prepared = ledger.prepare_block(block, (), records, state.write_set())
        self._writing_head = prepared.head
        self._open = None
        next_ctx = self.next_context()
        mempool.seal((tx.hash for tx in txs), state, next_ctx)
        if len(mempool) > len(txs):  # more than a block: the rest met the next context
            self._open = next_ctx
        return prepared, txs

    def _sign_and_write(self, prepared: PreparedBlock) -> PreparedBlock:
        """Sign the block's precommit, put it in the batch as the block's commit and write
        the batch (synced); the block with its commit. Safe in a worker thread: it reads
        only the prepared block and the validator's key, and the Ed25519 signature (pyca
        cryptography) and the write (plyvel) both run without the GIL."""
        head = prepared.head
        precommit = self.sign_precommit(head.height, head.hash)
        signed = prepared.with_commit((precommit,))
        self.node.ledger.store.write(signed.changes)
        return signed

    def sign_precommit(self, height: int, block_hash: bytes) -> Vote:
        node = self.node
        message = VoteMsg(height, 0, "precommit", block_hash, node.validator.address)
        return gossip.sign_vote(node.validator, node.genesis.chain_id, message)

    def _publish(self, prepared: PreparedBlock, txs: list[SignedTx]) -> Head:
        node = self.node
        new_head = node.ledger.publish(prepared)
        self._writing_head = None
        node.mempool.release(tx.hash for tx in txs)
        if txs:
            log.info("block %d: %d txs", new_head.height, len(txs))
        if node.check_invariants:
            node.assert_supply_invariant()
        return new_head

    async def wait_written(self) -> None:
        """Wait for the block being written, if any (never close the ledger under it)."""
        if self._writing is not None:
            await asyncio.wait({self._writing})
