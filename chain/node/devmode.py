"""The one-validator block producer (PROTOCOL 6, dev mode): automine, interval blocks, and
group commit.

A validator alone commits by itself: it signs its own precommit, which the next block carries
as `lastCommit`. With a block time it makes a block every interval, empty or not (deadlines
count blocks); with block time 0 (automine) it makes one as soon as transactions wait, and
once a second while tasks are open.

Automine waits at least `--automine-interval` between blocks when it is set, so that
deadlines counted in blocks keep a length in time under load.

The dev controls (PROTOCOL 5.9) run here, one at a time with block production, never under a
block being written: mine blocks now, snapshot and revert the whole state (anvil's semantics:
a revert consumes its snapshot and every later one), reset to genesis, move the clock, set a
balance.

Group commit: the block's precommit is signed and its batch written in a worker thread, while
the event loop goes on admitting transactions onto the state after that block; they make the
next block. Reads see a block once its write is done (`Ledger.publish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chain.node import devstate
from chain.node.devstate import ChainState
from chain.node.ledger import PreparedBlock, log_late
from chain.protocol import blocks, gossip
from chain.protocol import state as st
from chain.protocol.blocks import Head
from chain.protocol.consensus import VoteMsg
from chain.protocol.errors import InvalidParams
from chain.protocol.state import State
from chain.protocol.types import BlockContext, SignedTx, Vote

if TYPE_CHECKING:
    from chain.node.node import Node

log = logging.getLogger(__name__)

AUTOMINE_HEARTBEAT_S = 1.0


@dataclass(frozen=True, slots=True)
class DevSnapshot:
    state: ChainState
    next_timestamp: tuple[int, int] | None


class DevProducer:
    """Makes and commits every block of a one-validator chain."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.tx_waiting = asyncio.Event()
        self._writing: asyncio.Future[PreparedBlock] | None = None
        self._writing_head: Head | None = None  # of the block being written
        self._open: BlockContext | None = None  # of the block being filled
        self.lock = asyncio.Lock()  # one block or one dev control at a time
        self._snapshots: dict[int, DevSnapshot] = {}
        self._next_snapshot = 1

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
            gap = self.node.automine_interval_ms / 1000
            if gap > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), gap)

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
        async with self.lock:
            await self._produce_unlocked()

    async def _produce_unlocked(self) -> None:
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

    def forget_open_block(self) -> None:
        """The mempool was made again: the block being filled has no context yet."""
        self._open = None

    # Dev controls (PROTOCOL 5.9)

    async def mine(self, count: int) -> Head:
        """Make `count` blocks now, one after the other; the last one's head."""
        async with self.lock:
            for _ in range(count):
                await self._produce_unlocked()
        return self.node.ledger.head

    async def snapshot(self) -> int:
        """Keep the whole state (ledger, mempool, pinned time); its id."""
        async with self.lock:
            node = self.node
            state = ChainState(tuple(node.ledger.entries()), tuple(node.mempool.held()))
            snapshot_id = self._next_snapshot
            self._next_snapshot += 1
            self._snapshots[snapshot_id] = DevSnapshot(state, node.next_timestamp)
            return snapshot_id

    async def revert(self, snapshot_id: int) -> bool:
        """Restore a snapshot, consuming it and every later one; False if there is none."""
        async with self.lock:
            snap = self._snapshots.get(snapshot_id)
            if snap is None:
                return False
            for later in [i for i in self._snapshots if i >= snapshot_id]:
                del self._snapshots[later]
            self.node.restore(snap.state.entries, snap.state.mempool)
            self.node.next_timestamp = snap.next_timestamp
            return True

    async def reset(self) -> Head:
        """Back to the genesis block: an empty mempool, no snapshots, no time offset."""
        async with self.lock:
            fresh = devstate.genesis_state(self.node.genesis)
            self._snapshots.clear()
            self.node.restore(fresh.entries, ())
            return self.node.ledger.head

    async def load(self, state: ChainState) -> Head:
        async with self.lock:
            self.node.restore(state.entries, state.mempool)
            return self.node.ledger.head

    async def dump(self) -> ChainState:
        async with self.lock:
            node = self.node
            return ChainState(tuple(node.ledger.entries()), tuple(node.mempool.held()))

    async def increase_time(self, seconds: int) -> int:
        """Move the clock of block times forward; the offset in all, in seconds."""
        async with self.lock:
            node = self.node
            node.set_time_offset(node.time_offset + seconds)
            node.reload_mempool()
            return node.time_offset

    async def set_next_block_timestamp(self, at: int) -> int:
        """Pin the next block's time to `at` (Unix seconds); later blocks go on from it."""
        async with self.lock:
            node = self.node
            head = node.ledger.head
            if at < head.time:
                raise InvalidParams(
                    "timestamp", f"{at} is before the head block's time {head.time}"
                )
            node.set_time_offset(at - int(node.now()))
            node.next_timestamp = (head.height + 1, at)
            node.reload_mempool()
            return at

    async def set_balance(self, address: str, balance: int) -> None:
        """Set an account's balance, outside any block; the supply counters follow (the
        difference is minted or burned), so the supply invariant holds."""
        async with self.lock:
            node = self.node
            state = State(node.ledger.view)
            account = st.get_account(state, address)
            genesis_supply, minted, burned = st.get_supply(state)
            if balance > account.balance:
                minted += balance - account.balance
            else:
                burned += account.balance - balance
            st.put_account(state, address, replace(account, balance=balance))
            st.put_supply(state, genesis_supply, minted, burned)
            node.ledger.write_state(state.write_set())
            node.reload_mempool()
