"""The ledger: blocks, transactions, state and indexes in LevelDB (plyvel).

Storage sits behind a small interface (`KeyValueStore`: get, iterate, atomic batch). Each
block is written in one `write_batch(transaction=True, sync=True)` with its state changes,
indexes and the new head, so a killed process reopens at its last committed block with the
same appHash. `MemoryStore` is the in-memory twin for reference models in property tests.

Key layout (big-endian integers, raw 20-byte addresses and 32-byte hashes):
  s/...                  consensus state (see chain.protocol.state), enters the appHash
  meta/head              {height, hash, appHash, time}
  meta/genesis           genesis hash
  blk/<h:8>              block with its hash and its commit
  bhash/<hash>           height of a block hash
  tx/<hash>              {tx, height, index, status}
  sender/<addr><nonce:8> taskHash of that sender's task with that nonce
  hist/<state key><h:8>  value of an account or node record after block h
  vote/<h:8><r:4><t:1>   this validator's own signed vote at (height, round, type)
  ev/<h:8>               the hashes of the tasks block h changed (chain.node.events)
  meta/dev/timeOffset    dev chains: seconds added to the clock for block times (5.7)
"""

from __future__ import annotations

import bisect
import itertools
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from chain.node import events
from chain.node import store as stores
from chain.node.store import DataDirState, KeyValueReader, KeyValueStore, LevelDBStore
from chain.protocol import blocks, crypto, wire
from chain.protocol.blocks import (
    Head,
    block_from_json,
    block_header_json,
    header_hash,
    next_app_hash,
    vote_from_json,
    vote_to_json,
)
from chain.protocol.errors import AppHashMismatch, InvalidTransaction, StorageError
from chain.protocol.genesis import Genesis
from chain.protocol.state import (
    ACCOUNT,
    NODE,
    OPEN_TASK,
    STATE_PREFIX,
    TASK,
    State,
    decode_account,
    get_supply,
    get_task,
)
from chain.protocol.types import ZERO_ADDRESS, ZERO_HASH, Block, BlockContext, SignedTx, Task, Vote

log = logging.getLogger(__name__)

HEAD = b"meta/head"
GENESIS_HASH = b"meta/genesis"
BLOCK = b"blk/"
BLOCK_HASH = b"bhash/"
TX = b"tx/"
SENDER_TASK = b"sender/"
HISTORY = b"hist/"
OWN_VOTE = b"vote/"
VERSIONED_PREFIXES = (ACCOUNT, NODE)
_VIEW_VERSIONS = itertools.count(1)


def h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class TxRecord:
    tx: SignedTx
    height: int | None
    index: int | None
    status: str


@dataclass(frozen=True, slots=True)
class StoredBlock:
    block: Block
    hash: bytes
    commit: tuple[Vote, ...]


# Encoding of blocks and votes


class HeadView:
    """The committed state at the published head.

    A snapshot of the store, replaced when the ledger publishes a new head: while a block's
    batch is being written (possibly in another thread), every read still sees the state, the
    blocks and the transactions of the head that clients know, never half of a new one.

    `version` changes with every move (a new head, a dev control's write): a read cached under
    one version answers as the view does until it changes. Versions are never reused, by any
    view of the process.
    """

    def __init__(self, reader: KeyValueReader) -> None:
        self._reader = reader
        self.version = next(_VIEW_VERSIONS)

    def get(self, key: bytes) -> bytes | None:
        return self._reader.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._reader.iterate(prefix, start=start, reverse=reverse)

    def move_to(self, reader: KeyValueReader) -> None:
        self._reader = reader
        self.version = next(_VIEW_VERSIONS)


@dataclass(frozen=True, slots=True)
class PreparedBlock:
    """A block ready to write: every change of its batch, and the head it makes."""

    head: Head
    changes: Mapping[bytes, bytes | None]
    header: Mapping[str, Any]  # the block's header, as its record stores it
    commit: tuple[Vote, ...] = ()
    opened: tuple[bytes, ...] = ()
    closed: tuple[bytes, ...] = ()

    def with_commit(self, commit: Sequence[Vote]) -> PreparedBlock:
        """This block with `commit` as its commit: the block record in the batch carries
        it, and the ledger keeps it as the next block's `lastCommit` once published."""
        changes = dict(self.changes)
        record = _block_record(self.header, wire.hex0x(self.head.hash), commit)
        changes[BLOCK + h8(self.head.height)] = record
        return replace(self, changes=changes, commit=tuple(commit))


def log_late(tx: SignedTx, reason: InvalidTransaction) -> None:
    """Log a transaction that stays in its block as `late` (it no longer applied)."""
    log.info("tx 0x%s is late: %s", tx.hash.hex(), reason)


class Ledger:
    """The committed chain over a KeyValueStore: one atomic batch per block.

    Reads go through `view` (the state at the published head); `store` is written by
    commits and read directly only for this validator's own votes, which must be seen as
    soon as they are saved. A commit is `prepare_block` (no I/O), the synced write of its
    changes, then `publish`; `commit_block` does all three.
    """

    def __init__(self, store: KeyValueStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        stored = store.get(GENESIS_HASH)
        if stored is None:
            self._write_genesis()
        elif stored != genesis.hash:
            raise other_genesis(stored, genesis)
        self.head = self._load_head()
        self._head_commit: tuple[Vote, ...] | None = None  # read on first use
        self.view = HeadView(store.snapshot())
        # The open tasks, kept in memory: a scan of their index walks every deleted entry
        # LevelDB has not compacted away yet, that is every recently finished task.
        self._opened: dict[bytes, int] = {}  # open task -> its createdHeight, oldest first
        self._read_open_tasks()

    @classmethod
    def open(cls, path: str | Path, genesis: Genesis) -> Ledger:
        """The ledger in the data directory `path`: a new chain in a missing or empty one;
        otherwise only a directory whose LevelDB reads back and passes `check_ledger`
        (checked on a copy first, so a refusal changes nothing; PROTOCOL 6.11)."""
        data_dir = Path(path)

        def check(reader: KeyValueReader, marked: bool) -> None:
            check_ledger(reader, genesis, data_dir, marked)

        store = LevelDBStore(data_dir, check=check)
        if store.adopted:
            log.info("the ledger in %s is this chain's: marked as this node's", data_dir)
        try:
            return cls(store, genesis)
        except BaseException:
            store.close()
            raise

    def entries(self) -> list[tuple[bytes, bytes]]:
        """Every key and value of the ledger at the published head, in key order: what a
        dev snapshot or a state dump holds (PROTOCOL 5.9)."""
        return list(self.view.iterate(b""))

    def replace(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Make the ledger hold exactly `entries` (from `entries()` of this chain), in one
        synced batch, and read its head again: a dev revert, reset or state load. Refused
        (StorageError, nothing written) when they are not a consistent ledger of this
        genesis."""
        wanted = dict(entries)
        problem = ledger_problem(_SortedReader(wanted), self.genesis)
        if problem is not None:
            raise StorageError(f"the state to restore is not a ledger of this chain: {problem}")
        changes: dict[bytes, bytes | None] = {k: None for k, _v in self.view.iterate(b"")}
        changes.update(wanted)
        self.store.write(changes)
        self.head = self._load_head()
        self._head_commit = None
        self.view.move_to(self.store.snapshot())
        self._read_open_tasks()

    def write_state(
        self,
        write_set: Sequence[tuple[bytes, bytes | None]],
        extra: Mapping[bytes, bytes | None] | None = None,
    ) -> None:
        """Write state outside any block (dev controls only: a balance set, the clock's
        offset), the versioned keys as their value after the head block, in one synced
        batch, and read it from now on."""
        changes: dict[bytes, bytes | None] = dict(write_set)
        changes.update(_versions(write_set, h8(self.head.height)))
        changes.update(extra or {})
        self.store.write(changes)
        self.view.move_to(self.store.snapshot())

    def watch_damage(self, callback: Callable[[StorageError], None]) -> None:
        """Call `callback` once, with the error, when a read or write of the open ledger
        finds it damaged (the error is raised to the caller as well)."""
        if isinstance(self.store, LevelDBStore):
            self.store.on_damage = callback

    def close(self) -> None:
        self.store.close()

    def _load_head(self) -> Head:
        raw = self.store.get(HEAD)
        if raw is None:
            raise StorageError("the ledger has a genesis hash but no head: it is damaged")
        obj = orjson.loads(raw)
        return Head(
            obj["height"],
            bytes.fromhex(obj["hash"][2:]),
            bytes.fromhex(obj["appHash"][2:]),
            obj["time"],
        )

    def _write_genesis(self) -> None:
        state = State(self.store)
        blocks.apply_genesis(state, self.genesis)
        write_set = state.write_set()
        app_hash = next_app_hash(ZERO_HASH, write_set)
        block = Block(
            height=0,
            time=self.genesis.genesis_time,
            proposer=ZERO_ADDRESS,
            prev_hash=ZERO_HASH,
            txs=(),
            app_hash=app_hash,
        )
        changes = dict(write_set)
        changes[GENESIS_HASH] = self.genesis.hash
        header = block_header_json(block)
        self._add_block(changes, header, self.genesis.hash, (), write_set, app_hash)
        self.store.write(changes)

    def _add_block(
        self,
        changes: dict[bytes, bytes | None],
        header: dict[str, Any],
        hash_: bytes,
        commit: Sequence[Vote],
        write_set: Sequence[tuple[bytes, bytes | None]],
        app_hash: bytes,
    ) -> None:
        """The block's record (`header`, its hash and its commit), its height by hash, the
        history of its versioned keys, and the head it makes (`app_hash`: the state after
        it; the header's appHash is the state before it)."""
        height: int = header["height"]
        suffix = h8(height)
        hex_hash = wire.hex0x(hash_)
        changes[BLOCK + suffix] = _block_record(header, hex_hash, commit)
        changes[BLOCK_HASH + hash_] = suffix
        changes.update(_versions(write_set, suffix))
        changes[HEAD] = orjson.dumps(
            {
                "height": height,
                "hash": hex_hash,
                "appHash": wire.hex0x(app_hash),
                "time": header["time"],
            }
        )

    def next_block(self, ctx: BlockContext, tx_hashes: Sequence[bytes]) -> Block:
        """The block after the head at `ctx` with these transactions, carrying the commit
        of the head (dev-mode blocks and proposals alike)."""
        return Block(
            height=ctx.height,
            time=ctx.time,
            proposer=ctx.proposer,
            prev_hash=self.head.hash,
            txs=tuple(tx_hashes),
            app_hash=self.head.app_hash,
            last_commit=self.head_commit(),
        )

    def head_commit(self) -> tuple[Vote, ...]:
        """The commit of the head block (kept from its publish; read once after a start)."""
        if self._head_commit is None:
            previous = self.get_block(self.head.height)
            self._head_commit = previous.commit if previous is not None else ()
        return self._head_commit

    def prepare_block(
        self,
        block: Block,
        commit: Sequence[Vote],
        txs: Sequence[tuple[SignedTx, str]],
        write_set: Sequence[tuple[bytes, bytes | None]],
        extra: Mapping[bytes, bytes | None] | None = None,
    ) -> PreparedBlock:
        """The batch of a block after the head: its transactions (with status), its state
        changes, its indexes and the new head. Nothing is written."""
        if block.height != self.head.height + 1 or block.prev_hash != self.head.hash:
            raise StorageError(f"block {block.height} does not follow the head {self.head.height}")
        if block.app_hash != self.head.app_hash:
            raise AppHashMismatch(
                f"block {block.height} commits to appHash {wire.hex0x(block.app_hash)}, "
                f"but the state after block {self.head.height} is {wire.hex0x(self.head.app_hash)}"
            )
        app_hash = next_app_hash(self.head.app_hash, write_set)
        header = block_header_json(block)
        hash_ = header_hash(header)
        changes: dict[bytes, bytes | None] = dict(write_set)
        for index, (tx, status) in enumerate(txs):
            changes[TX + tx.hash] = orjson.dumps(
                {
                    "tx": wire.signed_tx_to_json(tx),
                    "height": block.height,
                    "index": index,
                    "status": status,
                }
            )
            if status == "committed" and tx.message.TYPE == "SubmitTask":
                changes[SENDER_TASK + bytes.fromhex(tx.signer[2:]) + h8(tx.nonce or 0)] = tx.digest
        changes[events.EVENTS + h8(block.height)] = events.changed_tasks(write_set)
        if extra:
            changes.update(extra)
        self._add_block(changes, header, hash_, commit, write_set, app_hash)
        opened: list[bytes] = []
        closed: list[bytes] = []
        for key, value in write_set:
            if key.startswith(OPEN_TASK):
                (closed if value is None else opened).append(key[len(OPEN_TASK) :])
        head = Head(block.height, hash_, app_hash, block.time)
        return PreparedBlock(head, changes, header, tuple(commit), tuple(opened), tuple(closed))

    def publish(self, prepared: PreparedBlock) -> Head:
        """Make a written block the head: reads see it from now on."""
        if prepared.head.height != self.head.height + 1:
            raise StorageError(
                f"block {prepared.head.height} does not follow the head {self.head.height}"
            )
        self.head = prepared.head
        self._head_commit = prepared.commit
        self.view.move_to(self.store.snapshot())
        for task_hash in prepared.closed:
            self._opened.pop(task_hash, None)
        for task_hash in prepared.opened:  # after every open task: the order stays by height
            self._opened.setdefault(task_hash, prepared.head.height)
        return self.head

    def _read_open_tasks(self) -> None:
        """The open tasks of the head, from their index, and when each was created."""
        created: list[tuple[int, bytes]] = []
        for key, _ in self.view.iterate(OPEN_TASK):
            task_hash = key[len(OPEN_TASK) :]
            task = self.get_task(task_hash)
            height = None if task is None else task.created_height
            created.append((self.head.height if height is None else height, task_hash))
        self._opened = {task_hash: height for height, task_hash in sorted(created)}

    def commit_block(
        self,
        block: Block,
        commit: Sequence[Vote],
        txs: Sequence[tuple[SignedTx, str]],
        write_set: Sequence[tuple[bytes, bytes | None]],
        extra: Mapping[bytes, bytes | None] | None = None,
    ) -> Head:
        """Write a block in one synced batch and make it the head."""
        prepared = self.prepare_block(block, commit, txs, write_set, extra)
        self.store.write(prepared.changes)
        return self.publish(prepared)

    # Reads

    def get_block(self, height: int) -> StoredBlock | None:
        raw = self.view.get(BLOCK + h8(height))
        if raw is None:
            return None
        obj = orjson.loads(raw)
        return StoredBlock(
            block_from_json(obj),
            bytes.fromhex(obj["hash"][2:]),
            tuple(vote_from_json(v) for v in obj["commit"]),
        )

    def height_of_block_hash(self, hash_: bytes) -> int | None:
        raw = self.view.get(BLOCK_HASH + hash_)
        return None if raw is None else int.from_bytes(raw, "big")

    def get_tx(self, tx_hash: bytes) -> TxRecord | None:
        raw = self.view.get(TX + tx_hash)
        if raw is None:
            return None
        obj = orjson.loads(raw)
        return TxRecord(
            wire.signed_tx_from_json(obj["tx"]), obj["height"], obj["index"], obj["status"]
        )

    def get_task(self, task_hash: bytes) -> Task | None:
        return get_task(self.view, task_hash)

    def events_at(self, height: int) -> list[dict[str, Any]]:
        """The events of block `height` (chain.node.events): the block, each of its
        transactions, then what happened in it to each task it changed; [] for a block this
        ledger does not hold."""
        stored = self.get_block(height)
        if stored is None:
            return []
        header = block_header_json(stored.block)
        out = [events.block_event(height, header, stored.hash)]
        for tx_hash in stored.block.txs:
            raw = self.view.get(TX + tx_hash)
            if raw is not None:
                out.append(events.tx_event(height, orjson.loads(raw)))
        for task_hash in events.task_hashes(self.view.get(events.EVENTS + h8(height))):
            raw = self.view.get(TASK + task_hash)
            if raw is not None:
                out.extend(events.task_events(orjson.loads(raw), height))
        return out

    def state_at(self, key: bytes, height: int) -> bytes | None:
        """The value of a versioned state key (accounts, nodes) after block `height`."""
        prefix = HISTORY + key
        for _k, value in self.view.iterate(prefix, start=prefix + h8(height), reverse=True):
            return value or None
        return None

    def task_hashes_of_sender(self, address: str, from_nonce: int = 0) -> Iterator[bytes]:
        """The hashes of the tasks `address` submitted, by nonce, from `from_nonce` on."""
        prefix = SENDER_TASK + bytes.fromhex(address[2:])
        for _key, value in self.view.iterate(prefix, start=prefix + h8(from_nonce)):
            yield value

    def iter_state(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        assert prefix.startswith(STATE_PREFIX)
        return self.view.iterate(prefix)

    def open_task_hashes(self) -> Iterator[bytes]:
        """The tasks not yet verified or failed at the head, in key order."""
        return iter(sorted(self._opened))

    def has_open_tasks(self) -> bool:
        return bool(self._opened)

    def open_task_count(self) -> int:
        return len(self._opened)

    def open_tasks_created_by(self, slow: int, late: int) -> tuple[int, int]:
        """How many open tasks were created at or below height `slow`, and how many of them
        at or below `late` (`late` <= `slow`): read from the oldest on, so the cost is the
        count."""
        at_slow = at_late = 0
        for height in self._opened.values():
            if height > slow:
                break
            at_slow += 1
            at_late += height <= late
        return at_slow, at_late

    def supply_check(self) -> tuple[int, int]:
        """(held, expected) of the supply invariant over the committed state (PROTOCOL 4.10)."""
        accounts = (decode_account(v) for _k, v in self.view.iterate(ACCOUNT))
        escrow = (
            task.fee
            for task in (self.get_task(h) for h in self.open_task_hashes())
            if task is not None and task.settlement is None
        )
        return blocks.supply_check(accounts, escrow, get_supply(self.view))

    # Own votes and proposals (PROTOCOL 6: persisted, synced, before they are sent)

    def own_votes(self, height: int) -> list[Vote]:
        """The votes this validator signed at `height`, by round and type."""
        out = []
        for key, raw in self.store.iterate(OWN_VOTE + h8(height)):
            if key[-1] not in (OWN_PROPOSAL_TYPE, OWN_LOCKED_TYPE):
                out.append(vote_from_json(orjson.loads(raw)))
        return out

    def own_vote(self, height: int, round_: int, vote_type: str) -> Vote | None:
        raw = self.store.get(_own_key(height, round_, crypto.VOTE_TYPES[vote_type]))
        return None if raw is None else vote_from_json(orjson.loads(raw))

    def save_own_vote(self, vote: Vote) -> None:
        key = _own_key(vote.height, vote.round, crypto.VOTE_TYPES[vote.type])
        self.store.write({key: orjson.dumps(vote_to_json(vote))})

    def own_proposal(self, height: int, round_: int) -> bytes | None:
        """The block hash this validator proposed at (height, round), if it did."""
        raw = self.store.get(_own_key(height, round_, OWN_PROPOSAL_TYPE))
        return None if raw is None else raw[:32]

    def own_proposal_record(self, height: int, round_: int) -> Any:
        """The signed proposal (its wire JSON) this validator sent at (height, round)."""
        raw = self.store.get(_own_key(height, round_, OWN_PROPOSAL_TYPE))
        return None if raw is None or len(raw) == 32 else orjson.loads(raw[32:])

    def save_own_proposal(
        self, height: int, round_: int, block_hash_: bytes, record: Any = None
    ) -> None:
        value = block_hash_ + (b"" if record is None else orjson.dumps(record))
        self.store.write({_own_key(height, round_, OWN_PROPOSAL_TYPE): value})

    def save_locked_block(self, height: int, round_: int, record: Any) -> None:
        """Keep the block this validator is about to precommit in (height, round), with its
        transactions (`gossip.committed_to_wire`, no commit yet): a validator locked on a block
        must still hold it after a restart, to propose it again (PROTOCOL 6.7)."""
        self.store.write({_own_key(height, round_, OWN_LOCKED_TYPE): orjson.dumps(record)})

    def locked_blocks(self, height: int) -> list[Any]:
        """The blocks kept by `save_locked_block` at `height`, by round."""
        return [
            orjson.loads(raw)
            for key, raw in self.store.iterate(OWN_VOTE + h8(height))
            if key[-1] == OWN_LOCKED_TYPE
        ]

    def own_rounds(self, height: int) -> list[int]:
        """The rounds of `height` in which this validator signed anything."""
        keys = self.store.iterate(OWN_VOTE + h8(height))
        return sorted({int.from_bytes(key[-5:-1], "big") for key, _value in keys})

    def stale_own_keys(self, height: int) -> list[bytes]:
        """Keys of what this validator signed at `height` or below (deleted with a commit)."""
        end = OWN_VOTE + h8(height + 1)
        return [key for key, _ in self.store.iterate(OWN_VOTE) if key < end]


OWN_PROPOSAL_TYPE = crypto.VOTE_TYPES["proposal"]
OWN_LOCKED_TYPE = 0xFF  # the block precommitted in a round (no vote type has this number)


def other_genesis(stored: bytes, genesis: Genesis) -> StorageError:
    return StorageError(
        f"the data directory holds the chain with genesis {wire.hex0x(stored)}, "
        f"but the genesis file is {wire.hex0x(genesis.hash)}; "
        "use another --data-dir or start fresh"
    )


# Consistency of a ledger before it is opened (PROTOCOL 6.11)


def check_ledger(reader: KeyValueReader, genesis: Genesis, path: Path, marked: bool) -> None:
    """Refuse (StorageError) a LevelDB that is not a consistent ledger of `genesis`: one of
    another genesis, or one without a genesis hash but with keys (damaged if the directory
    is marked, foreign if not), or one where `ledger_problem` finds something. An empty
    LevelDB passes: the genesis is written when it opens."""
    stored = reader.get(GENESIS_HASH)
    if stored is None:
        if next(iter(reader.iterate(b"")), None) is None:
            return
        if not marked:
            raise stores.foreign(path, "its LevelDB holds no inferchain chain")
        raise stores.damaged(path, "keys but no genesis hash")
    if stored != genesis.hash:
        raise other_genesis(stored, genesis)
    problem = ledger_problem(reader, genesis)
    if problem is not None:
        raise stores.damaged(path, problem)


def ledger_problem(reader: KeyValueReader, genesis: Genesis) -> str | None:
    """What makes this ledger of `genesis` inconsistent, or None. Checked: the head decodes;
    the block records at heights 0 and head are there, the first is the genesis block and the
    second carries the head's hash and time; the block-hash index holds the head; no block
    lies above the head; every account and resource-node record equals its latest version
    in the history; the supply invariant holds (PROTOCOL 4.10)."""
    raw = reader.get(HEAD)
    if raw is None:
        return "a genesis hash but no head"
    try:
        obj = orjson.loads(raw)
        head = Head(
            int(obj["height"]),
            bytes.fromhex(obj["hash"][2:]),
            bytes.fromhex(obj["appHash"][2:]),
            int(obj["time"]),
        )
    except (ValueError, KeyError, TypeError):
        return "its head record cannot be read"
    first = _block_hash_at(reader, 0)
    if first != genesis.hash:
        return "no genesis block" if first is None else "a block 0 that is not the genesis"
    top = reader.get(BLOCK + h8(head.height))
    if top is None:
        return f"no block at its head height {head.height}"
    try:
        record = orjson.loads(top)
        record_hash, record_time = bytes.fromhex(record["hash"][2:]), record["time"]
    except (ValueError, KeyError, TypeError):
        return f"the block at its head height {head.height} cannot be read"
    if record_hash != head.hash or record_time != head.time:
        return f"the head is not the block stored at height {head.height}"
    if reader.get(BLOCK_HASH + head.hash) != h8(head.height):
        return f"the block-hash index does not hold the head {head.height}"
    if reader.get(BLOCK + h8(head.height + 1)) is not None:
        return f"a block above its head {head.height}"
    for prefix in VERSIONED_PREFIXES:
        for key, value in reader.iterate(prefix):
            latest = next(iter(reader.iterate(HISTORY + key, reverse=True)), None)
            if latest is None or latest[1] != value:
                return f"the state of {key.decode(errors='replace')!r} is not its last version"
    held, expected = _supply_check(reader)
    if held != expected:
        return f"the state breaks the supply invariant (held {held}, expected {expected})"
    return None


def _block_hash_at(reader: KeyValueReader, height: int) -> bytes | None:
    raw = reader.get(BLOCK + h8(height))
    if raw is None:
        return None
    try:
        return bytes.fromhex(orjson.loads(raw)["hash"][2:])
    except (ValueError, KeyError, TypeError):
        return None


def _supply_check(reader: KeyValueReader) -> tuple[int, int]:
    accounts = (decode_account(v) for _k, v in reader.iterate(ACCOUNT))
    tasks = (get_task(reader, key[len(OPEN_TASK) :]) for key, _v in reader.iterate(OPEN_TASK))
    escrow = (t.fee for t in tasks if t is not None and t.settlement is None)
    return blocks.supply_check(accounts, escrow, get_supply(reader))


def _versions(write_set: Sequence[tuple[bytes, bytes | None]], suffix: bytes) -> dict[bytes, bytes]:
    """The history entries of the versioned keys a write set changes (`suffix`: the height
    they are the value after)."""
    return {
        HISTORY + key + suffix: value if value is not None else b""
        for key, value in write_set
        if key.startswith(VERSIONED_PREFIXES)
    }


class _SortedReader:
    """A KeyValueReader over a state held in memory, to check it before it is written: its
    keys sorted once, each range found by bisection (the check reads one range per account,
    so a scan per read would be quadratic)."""

    def __init__(self, items: Mapping[bytes, bytes]) -> None:
        self._items = items
        self._keys = sorted(items)

    def get(self, key: bytes) -> bytes | None:
        return self._items.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys
        low = bisect.bisect_left(keys, prefix)
        high = low
        while high < len(keys) and keys[high].startswith(prefix):
            high += 1
        if start is not None:
            if reverse:
                high = min(high, bisect.bisect_right(keys, start, low, high))
            else:
                low = max(low, bisect.bisect_left(keys, start, low, high))
        span = range(high - 1, low - 1, -1) if reverse else range(low, high)
        for i in span:
            yield keys[i], self._items[keys[i]]


# Repair (`python -m rpc --repair`)


@dataclass(frozen=True, slots=True)
class Repaired:
    """What a repair did: the LevelDB files before and after, those LevelDB could not read
    (moved to `lost/`), and the head of the ledger it left, which passed `check_ledger`."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    lost: tuple[str, ...]
    head: Head


def repair_ledger(path: str | Path, genesis: Genesis) -> Repaired:
    """Run LevelDB's repair on the data directory `path`, then open it as `Ledger.open` does
    (so the repaired ledger is checked, and refused if it is not consistent), re-execute its
    blocks from genesis (`replay_problem`: the appHash of every block and the state after the
    head must be what the blocks make), and close it.

    Only a directory that holds a LevelDB (with the marker or without: a ledger of before
    the marker) is repaired, and only when no process holds it."""
    data_dir = Path(path)
    state = stores.data_dir_state(data_dir)
    if state is DataDirState.NEW:
        raise StorageError(f"there is no ledger in {data_dir} to repair")
    if not {n for n in stores.leveldb_files(data_dir) if not n.startswith(("LOCK", "LOG"))}:
        raise stores.foreign(data_dir, "it holds no LevelDB to repair")
    stores.refuse_if_in_use(data_dir)
    lost_dir = data_dir / "lost"
    lost_before = set(_names(lost_dir))
    before, after = stores.repair(data_dir)
    lost = tuple(sorted(set(_names(lost_dir)) - lost_before))
    try:
        ledger = Ledger.open(data_dir, genesis)
        try:
            with tempfile.TemporaryDirectory(prefix="inferchain-replay-") as scratch:
                problem = replay_problem(ledger, Path(scratch) / "ledger")
            head = ledger.head
        finally:
            ledger.close()
    except stores.DamagedLedger as exc:
        problem = exc.what
    except StorageError as exc:
        problem = str(exc)
    if problem is not None:
        raise StorageError(
            f"LevelDB repaired the ledger in {data_dir}, but it is still not consistent "
            f"({problem}); LevelDB files {' '.join(before)} became {' '.join(after)}; "
            "move the directory away to start a new chain"
        )
    return Repaired(tuple(before), tuple(after), lost, head)


def replay_problem(ledger: Ledger, scratch: Path) -> str | None:
    """Re-execute every block of `ledger` from its genesis into a new ledger in `scratch`, as
    block sync would: the first block that is missing, whose transactions are missing, or
    that gives another block hash or appHash; or a state after the head that is not the
    state of the re-execution; None if everything agrees."""
    replay = Ledger.open(scratch, ledger.genesis)
    try:
        for height in range(1, ledger.head.height + 1):
            stored = ledger.get_block(height)
            if stored is None:
                return f"no block at height {height}"
            block = stored.block
            txs = []
            for tx_hash in block.txs:
                record = ledger.get_tx(tx_hash)
                if record is None:
                    return f"transaction {wire.hex0x(tx_hash)} of block {height} is missing"
                txs.append(record.tx)
            state = State(replay.view)
            ctx = blocks.context_of(block)
            signers = [v.validator for v in block.last_commit]
            records = blocks.execute_block(state, ledger.genesis.params, ctx, txs, signers)
            try:
                head = replay.commit_block(block, stored.commit, records, state.write_set())
            except (AppHashMismatch, StorageError) as exc:
                return f"block {height} does not re-execute: {exc}"
            if head.hash != stored.hash:
                return f"block {height} re-executed has hash {wire.hex0x(head.hash)}"
        if replay.head != ledger.head:
            return f"the head re-executed is {replay.head}, the ledger says {ledger.head}"
        ours = dict(ledger.view.iterate(STATE_PREFIX))
        theirs = dict(replay.view.iterate(STATE_PREFIX))
        if ours != theirs:
            key = min(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            return f"the state of {key!r} is not what the blocks make"
        return None
    finally:
        replay.close()


def _names(path: Path) -> list[str]:
    try:
        return [entry.name for entry in path.iterdir()]
    except OSError:
        return []


def _own_key(height: int, round_: int, kind: int) -> bytes:
    return OWN_VOTE + h8(height) + round_.to_bytes(4, "big") + bytes([kind])


def _block_record(header: Mapping[str, Any], hex_hash: str, commit: Sequence[Vote]) -> bytes:
    """A block as stored under its height: its header, its hash and its commit."""
    record = {**header, "hash": hex_hash, "commit": [vote_to_json(v) for v in commit]}
    return orjson.dumps(record)
