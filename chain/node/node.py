"""One validator: its lifecycle, admission of transactions, and the reads `rpc/` serves.

The node owns the ledger (`chain.node.ledger`), the mempool and the signer, and one of two
ways of making blocks: alone, the dev-mode producer (`chain.node.devmode`); with other
validators, Tendermint (`chain.node.validators`, which also takes what peers gossip and
syncs blocks). Admission, block execution and every consensus event are synchronous
functions called from one asyncio loop, so they never interleave: a block sees exactly the
transactions admitted before it started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from chain.node.devmode import DevProducer
from chain.node.journal import Journal
from chain.node.ledger import Ledger, StoredBlock, TxRecord
from chain.node.mempool import DEFAULT_CAPACITY, DEFAULT_MAX_PER_SENDER, Mempool
from chain.node.overload import OverloadGuard
from chain.node.signer import PrivValidator
from chain.node.validators import CONSENSUS_TIMEOUTS, Consensus, Network
from chain.protocol import ao, crypto, gossip, tasks, wire
from chain.protocol import state as st
from chain.protocol.blocks import Head
from chain.protocol.consensus import Timeouts
from chain.protocol.errors import (
    ChainError,
    GenesisError,
    InvalidPeerMessage,
    InvalidTransaction,
    MempoolFull,
)
from chain.protocol.genesis import RESOURCE_NODE_KEY_OFFSET, VALIDATOR_KEY_OFFSET, Genesis
from chain.protocol.gossip import ValidatorKey
from chain.protocol.types import (
    Account,
    BlockContext,
    Message,
    ResourceNodeInfo,
    SignedTx,
    SubmitTask,
    Task,
    TaskStatus,
    ValidatorInfo,
    signer_of,
)

__all__ = ["Network", "Node", "ValidatorKey", "dev_validator_key", "resource_node_dev_key"]

log = logging.getLogger(__name__)

TIME_OFFSET = b"meta/dev/timeOffset"  # in the ledger, outside the state (PROTOCOL 5.9)


def dev_validator_key(genesis: Genesis, index: int | None) -> ValidatorKey:
    """Validator `index` of a dev genesis (dev account 100 + index); None: the only one."""
    if genesis.dev is None:
        raise GenesisError("dev", "no dev mnemonic: pass the validator key explicitly")
    if index is None:
        if len(genesis.validators) != 1:
            raise GenesisError("validators", "several validators: choose one with --validator")
        index = 0
    if not 0 <= index < len(genesis.validators):
        raise GenesisError("validators", f"there is no validator {index}")
    return ValidatorKey.from_account_key(
        crypto.dev_private_key(genesis.dev.mnemonic, VALIDATOR_KEY_OFFSET + index)
    )


def resource_node_dev_key(genesis: Genesis, index: int) -> bytes:
    assert genesis.dev is not None
    return crypto.dev_private_key(genesis.dev.mnemonic, RESOURCE_NODE_KEY_OFFSET + index)


def _ignore_seconds(_seconds: float) -> None:
    pass


class Node:
    """One validator. Lifecycle: `setup()`, `run_forever()`, `stop()`, `cleanup()`."""

    def __init__(
        self,
        genesis: Genesis,
        data_dir: str | Path,
        validator: ValidatorKey,
        *,
        block_time_ms: int | None = None,
        mempool_capacity: int = DEFAULT_CAPACITY,
        max_pending_per_sender: int = DEFAULT_MAX_PER_SENDER,
        check_invariants: bool = False,
        clock: Callable[[], float] = time.time,
        timeouts: Timeouts = CONSENSUS_TIMEOUTS,
        automine_interval_ms: int = 0,
        overload_guard: bool = True,
    ) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.data_dir = Path(data_dir)
        self.validator = validator
        self.block_time_ms = self.params.block_time_ms if block_time_ms is None else block_time_ms
        self.check_invariants = check_invariants
        self.timeouts = timeouts
        self.automine_interval_ms = automine_interval_ms
        # Dev controls (PROTOCOL 5.9): seconds added to the clock for block times (kept in
        # the ledger), the time the next block is pinned to as (height, time), and what
        # follows the head when a revert or a reset moves it back.
        self.time_offset = 0
        self.next_timestamp: tuple[int, int] | None = None
        self.on_rewind: list[Callable[[int], None]] = []
        # Told of each transaction admitted to the mempool (a client's or a peer's), after it
        # is admitted: the subscriptions offer a new task's work from the mempool (5.6).
        self.on_admitted: list[Callable[[SignedTx], None]] = []
        # New tasks past what the network verifies in time are refused (5.10); with timed
        # blocks only: an automined block's deadline has no length in time.
        self.overload: OverloadGuard | None = None
        if overload_guard and self.block_time_ms > 0:
            self.overload = OverloadGuard(self.params.compute_deadline_blocks, self.block_time_ms)
        self._clock = clock
        self._mempool_capacity = mempool_capacity
        self._max_pending_per_sender = max_pending_per_sender
        self._journal: Journal | None = None
        self.dev_keys: dict[str, bytes] = genesis.dev_keys()
        self._ledger: Ledger | None = None
        self._mempool: Mempool | None = None
        self._priv: PrivValidator | None = None
        self.stopping = asyncio.Event()
        self._new_block = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._check_validator()
        self.network: Network | None = None
        # Told the seconds of each block from the start of its production (dev mode) or of
        # its height (Tendermint) to its commit; the server's metrics set it (rpc.metrics).
        self.observe_commit: Callable[[float], None] = _ignore_seconds
        self.consensus = Consensus(self)
        self.dev = DevProducer(self) if self.alone else None

    def _check_validator(self) -> None:
        for val in self.genesis.validators:
            if val.address == self.validator.address:
                if val.consensus_pub_key != self.validator.public_key:
                    raise GenesisError(
                        "validators.consensusPubKey",
                        f"the key given for {val.address} does not match its consensusPubKey",
                    )
                return
        raise GenesisError(
            "validators", f"{self.validator.address} is not a validator of this genesis"
        )

    @property
    def alone(self) -> bool:
        """True on a one-validator chain (dev mode): this node commits blocks by itself."""
        return len(self.genesis.validators) == 1

    # Lifecycle

    async def setup(self) -> None:
        self._ledger = Ledger.open(self.data_dir, self.genesis)
        self._mempool = self._new_mempool()
        self._priv = PrivValidator(self.validator, self.genesis.chain_id, self._ledger)
        head = self._ledger.head
        log.info("ledger open at height %d, appHash 0x%s", head.height, head.app_hash.hex())
        self._read_time_offset()
        self._replay_journal()

    def _replay_journal(self) -> None:
        """Admit again, through the ordinary admission, every transaction of the mempool
        journal on the committed state; drop (and count) those committed meanwhile or no
        longer valid; then journal every admission from here on (PROTOCOL 5.1)."""
        journal = Journal(self.data_dir)
        self._journal = journal
        records, unreadable = journal.read()
        txs: list[SignedTx] = []
        undecoded = 0
        for obj in records:
            try:
                txs.append(gossip.tx_from_wire(obj, self.genesis.chain_id))
            except InvalidPeerMessage as exc:
                log.debug("journal record not admitted again: %s", exc)
                undecoded += 1
        admitted, dropped = self._admit_again(txs)
        if records or unreadable:
            log.info(
                "mempool journal: %d transactions admitted again, %d dropped (committed or "
                "no longer valid), %d unreadable records skipped",
                admitted,
                dropped + undecoded,
                unreadable,
            )

    def _admit_again(self, txs: list[SignedTx]) -> tuple[int, int]:
        """Admit `txs` in order into the mempool, without journaling them one by one; then
        rewrite the journal with what it holds and journal every admission from here on.
        (admitted, dropped): those committed already or no longer valid are dropped."""
        mempool = self.mempool
        mempool.journal = None
        admitted = dropped = 0
        for tx in txs:
            try:
                if tx.hash in mempool or self.ledger.get_tx(tx.hash) is not None:
                    dropped += 1
                    continue
                ctx = self.next_context()
                mempool.admit(tx, ctx)
            except (InvalidTransaction, MempoolFull) as exc:
                log.debug("transaction not admitted again: %s", exc)
                dropped += 1
                continue
            admitted += 1
            if self.dev is not None:
                self.dev.admitted(ctx)
        assert self._journal is not None
        self._journal.rewrite(mempool.held())
        mempool.journal = self._journal
        return admitted, dropped

    # Dev controls (PROTOCOL 5.9): called by the dev producer, no block being written

    def dev_controls_refusal(self) -> str | None:
        """Why this chain has no dev controls, or None when it has them."""
        if self.genesis.dev is None:
            return "dev controls need a dev chain: this genesis has no dev section"
        if self.dev is None:
            return "dev controls need a chain of one validator: this one has several"
        return None

    def restore(self, entries: Sequence[tuple[bytes, bytes]], txs: Sequence[SignedTx]) -> None:
        """Make the ledger hold exactly `entries` and the mempool `txs` (a revert, a reset,
        a loaded state); whatever follows the head is told where it moved."""
        self.ledger.replace(entries)
        self._read_time_offset()
        self.reload_mempool(list(txs))
        for rewound in self.on_rewind:
            rewound(self.head.height)

    def reload_mempool(self, txs: list[SignedTx] | None = None) -> None:
        """A new mempool over the committed state, with `txs` (by default the ones held)
        admitted again: after the dev controls changed the state or the clock."""
        held = self.mempool.held() if txs is None else txs
        self._mempool = self._new_mempool()
        if self.dev is not None:
            self.dev.forget_open_block()
        self._admit_again(held)

    def set_time_offset(self, seconds: int) -> None:
        self.ledger.write_state((), {TIME_OFFSET: str(seconds).encode()})
        self.time_offset = seconds

    def _read_time_offset(self) -> None:
        raw = self.ledger.view.get(TIME_OFFSET)
        self.time_offset = 0 if raw is None else int(raw)
        self.next_timestamp = None

    async def run_forever(self) -> None:
        if self.dev is not None:
            await self.dev.run()
        else:
            await self.consensus.run()

    def stop(self) -> None:
        self.stopping.set()
        if self.dev is not None:
            self.dev.tx_waiting.set()

    async def cleanup(self) -> None:
        self.consensus.cancel_timers()
        for task in list(self._tasks):
            task.cancel()
        if self.dev is not None:
            await self.dev.wait_written()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` on the loop; it is cancelled at cleanup."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def notify_new_block(self) -> None:
        async with self._new_block:
            self._new_block.notify_all()

    async def wait_for_height(self, height: int, timeout: float) -> Head:
        async with asyncio.timeout(timeout), self._new_block:
            await self._new_block.wait_for(lambda: self.ledger.head.height >= height)
        return self.ledger.head

    # Components

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise ChainError("the node is not set up")
        return self._ledger

    @property
    def mempool(self) -> Mempool:
        if self._mempool is None:
            raise ChainError("the node is not set up")
        return self._mempool

    @property
    def priv(self) -> PrivValidator:
        if self._priv is None:
            raise ChainError("the node is not set up")
        return self._priv

    @property
    def head(self) -> Head:
        return self.ledger.head

    def now(self) -> float:
        """The node clock (Unix seconds); rules never read it, only block times."""
        return self._clock()

    def _new_mempool(self) -> Mempool:
        return Mempool(
            self.ledger.view,
            self.params,
            self._mempool_capacity,
            max_per_sender=self._max_pending_per_sender,
        )

    def context_after(self, head: Head) -> BlockContext:
        """The context of the block after `head`, made by this validator now: at the
        clock plus the dev offset, or at the time the dev controls pinned it to."""
        pinned = self.next_timestamp
        if pinned is not None and pinned[0] == head.height + 1:
            at = pinned[1]
        else:
            at = int(self._clock()) + self.time_offset
        return BlockContext(head.height + 1, max(head.time, at), self.validator.address)

    def next_context(self) -> BlockContext:
        """The context of the next block (in dev mode, the one its first transaction met)."""
        if self.dev is not None:
            return self.dev.next_context()
        return self.context_after(self.ledger.head)

    def consensus_status(self) -> dict[str, Any]:
        """Where consensus stands, for /health and the testnet status line."""
        return self.consensus.status()

    def assert_supply_invariant(self) -> None:
        held, expected = self.ledger.supply_check()
        if held != expected:
            raise ChainError(
                f"supply invariant broken at height {self.head.height}: "
                f"held {held} != genesis + minted - burned {expected}"
            )

    # Admission

    def submit(self, tx: SignedTx) -> None:
        """Admit a verified transaction to the mempool and pass it on to the other
        validators; raises ChainError if refused (a new task, Overloaded, when the network
        could not verify it in time)."""
        if self.overload is not None and isinstance(tx.message, SubmitTask):
            self._check_overload()
        ctx = self.next_context()
        self.mempool.admit(tx, ctx)
        if self.dev is not None:
            self.dev.admitted(ctx)
        if self.network is not None:
            self.network.gossip_tx(wire.signed_tx_to_json(tx))
        self.admitted(tx)

    def _check_overload(self) -> None:
        assert self.overload is not None
        guard, height = self.overload, self.ledger.head.height
        open_tasks = self.ledger.open_task_count() + self.mempool.task_count()
        if guard.needs_head(height):
            slow, late = self.ledger.open_tasks_created_by(
                height - guard.slow_blocks, height - guard.late_blocks
            )
            verified = self.task_stats().get(TaskStatus.VERIFIED.value, 0)
            guard.saw_head(height, verified, open_tasks, slow, late)
        guard.check(open_tasks)

    def admitted(self, tx: SignedTx) -> None:
        """Tell whatever follows the mempool that `tx` was admitted."""
        for listener in self.on_admitted:
            listener(tx)

    def dev_sign(self, msg: Message) -> SignedTx:
        """Sign for an unlocked dev account (PROTOCOL 5.4)."""
        key = self.dev_keys.get(signer_of(msg))
        if key is None:
            raise ChainError("not a dev account")
        return crypto.sign_message(msg, self.genesis.chain_id, key)

    def produce_block(self) -> Head:
        """Make the next block now, in this thread (dev mode only)."""
        if self.dev is None:
            raise ChainError("blocks come from consensus: this chain has several validators")
        return self.dev.produce_block()

    # Reads: everything rpc/ serves, at the published head (the mempool where it says so)

    def tx_record(self, tx_hash: bytes) -> TxRecord | None:
        """A committed or late transaction from the ledger, else a pending one."""
        record = self.ledger.get_tx(tx_hash)
        if record is not None:
            return record
        pending = self.mempool.get(tx_hash)
        if pending is not None:
            return TxRecord(pending, None, None, "pending")
        return None

    def block(self, height: int) -> StoredBlock | None:
        return self.ledger.get_block(height)

    def block_events(self, height: int) -> list[dict[str, Any]]:
        """What block `height` changed, as the subscriptions give it (`chain.node.events`)."""
        return self.ledger.events_at(height)

    def account(
        self, address: str, height: int | None = None
    ) -> tuple[Account, ResourceNodeInfo | None]:
        """An account and its resource-node record, at the head or after block `height`."""
        if height is None:
            view = self.ledger.view
            return st.get_account(view, address), st.get_node(view, address)
        raw_account = self.ledger.state_at(st.account_key(address), height)
        raw_node = self.ledger.state_at(st.node_key(address), height)
        return (
            Account() if raw_account is None else st.decode_account(raw_account),
            None if raw_node is None else st.decode_node(raw_node),
        )

    def pending_count(self) -> int:
        """How many transactions wait in the mempool."""
        return len(self.mempool)

    def pending_bytes(self) -> int:
        """The size of the transactions waiting in the mempool (`blocks.tx_size`)."""
        return self.mempool.bytes_held

    def next_nonce(self, address: str) -> int:
        """The next nonce of `address`, counting its transactions in the mempool."""
        return self.mempool.next_nonce(address)

    def validators(self) -> list[tuple[ValidatorInfo, int]]:
        """The genesis validators with their stake."""
        view = self.ledger.view
        out = []
        for val in self.genesis.validators:
            info = st.get_validator(view, val.address)
            if info is not None:
                out.append((info, st.get_account(view, info.address).stake))
        return out

    def resource_nodes(self) -> list[tuple[str, ResourceNodeInfo, int]]:
        """(address, record, stake) of every registered resource node, by address."""
        view = self.ledger.view
        out = []
        for key, raw in self.ledger.iter_state(st.NODE):
            address = wire.checksum(key[len(st.NODE) :])
            out.append((address, st.decode_node(raw), st.get_account(view, address).stake))
        return out

    def task_stats(self) -> dict[str, int]:
        return st.get_task_stats(self.ledger.view)

    def task(self, task_hash: bytes) -> Task | None:
        """A committed task, else one whose SubmitTask waits in the mempool."""
        task = self.ledger.get_task(task_hash)
        if task is not None:
            return task
        tx = self.mempool.pending_task(task_hash)
        if tx is None:
            return None
        return tasks.pending_task(self.params, tx)

    def pending_work(
        self, address: str, task_hashes: list[bytes] | None = None
    ) -> list[tasks.Work]:
        """The open tasks `address` may act on at the next block (queryPendingTasks), on the
        state the mempool would produce; with `task_hashes`, among those only (a task still
        in the mempool included). A task's stored bytes decode to the same Task as long as
        `state.decode_task` keeps them."""
        return tasks.pending_work(
            self.mempool.pending_state,
            self.params,
            address,
            self.next_context().height,
            list(self.ledger.open_task_hashes()) if task_hashes is None else task_hashes,
        )

    def read_version(self) -> tuple[int, int, int]:
        """A value that changes whenever the reads on the state the mempool would produce,
        at the next block's height, may answer otherwise (`pending_work` above all): the
        mempool's version (a new mempool has new ones), the committed view's, the height of
        the next block. An answer kept under one value holds as long as it is the same."""
        return (self.mempool.version, self.ledger.view.version, self.next_context().height)

    # AO (PROTOCOL 8): committed state only, as a scheduler unit answers

    def ao_process(self, pid: str) -> dict[str, Any] | None:
        """The process `pid` names (its own id or an alias of it, PROTOCOL 8.2)."""
        view = self.ledger.view
        return ao.get_process(view, ao.resolve(view, pid))

    def ao_processes(self, start: int, limit: int) -> list[str]:
        """The ids of the processes spawned, in order, from the `start`-th."""
        view = self.ledger.view
        ids = (ao.process_at(view, i) for i in range(start, start + limit))
        return [pid for pid in ids if pid is not None]

    def ao_slots(self, pid: str, start: int, limit: int) -> list[dict[str, Any]]:
        """The process's scheduled messages from slot `start`, at most `limit`."""
        view = self.ledger.view
        pid = ao.resolve(view, pid)
        out = []
        for slot in range(start, start + limit):
            entry = ao.get_slot(view, pid, slot)
            if entry is None:
                break
            out.append(entry)
        return out

    def ao_message(self, message_id: str) -> dict[str, Any] | None:
        view = self.ledger.view
        place = ao.get_message_place(view, message_id)
        return None if place is None else ao.get_slot(view, *place)

    def ao_module(self, module_id: str) -> str | None:
        return ao.get_module(self.ledger.view, module_id)

    def tasks_of_sender(self, address: str, from_nonce: int, limit: int) -> list[Task]:
        """The committed tasks of `address`, by nonce, from `from_nonce` on."""
        hashes = islice(self.ledger.task_hashes_of_sender(address, from_nonce), limit)
        return [task for task in map(self.ledger.get_task, hashes) if task is not None]
