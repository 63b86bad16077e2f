"""The validator node: ledger + mempool + consensus, wired on one asyncio loop.

Admission, block execution and every consensus event are synchronous functions called from
the loop, so they never interleave: a block sees exactly the transactions admitted before it
started. A single validator commits alone (PROTOCOL 6, dev mode): it signs its own precommit,
which the next block carries as `lastCommit`, and makes blocks on a timer or on demand
(automine).

With several validators the node runs Tendermint (`chain.protocol.consensus`) with its
peers through a `Network` (the HTTP transport of `rpc.p2p`):

- the proposer builds a block from its mempool, executes it and proposes it with its
  transactions; every validator re-executes it before it prevotes for it (`_check_block`),
  and a block whose appHash differs from the local state is never voted for;
- votes and proposals are written to disk before they are signed out (`chain.node.signer`), and a
  restarted validator resumes in the last round it signed in (the others may wait there for it);
- after a commit the next height starts `block_time_ms` later (Tendermint's timeout_commit);
- each validator re-sends its own messages of the current height every second, so a peer
  that missed them (restarted, partitioned) still gets them;
- a validator whose peers are ahead fetches their committed blocks and commits, verifies the
  commit of each (more than 2/3 of the voting power) and re-executes it; an appHash mismatch
  then means this validator's state differs from the network's, and it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chain.node.ledger import Head, Ledger, PreparedBlock, TxRecord
from chain.node.mempool import DEFAULT_CAPACITY, Mempool
from chain.node.signer import PrivValidator
from chain.protocol import blocks, crypto, gossip, wire
from chain.protocol.blocks import block_hash
from chain.protocol.consensus import (
    Action,
    Broadcast,
    Decide,
    Proposal,
    RequestValue,
    ScheduleTimeout,
    Tendermint,
    Timeouts,
    ValidatorSet,
    VoteMsg,
)
from chain.protocol.errors import (
    AppHashMismatch,
    ChainError,
    ConflictingVote,
    GenesisError,
    InvalidPeerMessage,
    InvalidTransaction,
    MempoolFull,
)
from chain.protocol.genesis import RESOURCE_NODE_KEY_OFFSET, VALIDATOR_KEY_OFFSET, Genesis
from chain.protocol.gossip import CommittedBlock, ValidatorKey, Verifier
from chain.protocol.state import State
from chain.protocol.types import Block, BlockContext, Message, SignedTx, Vote, signer_of

__all__ = ["Network", "Node", "ValidatorKey", "dev_validator_key", "resource_node_dev_key"]

log = logging.getLogger(__name__)

AUTOMINE_HEARTBEAT_S = 1.0
# consensus timeouts on loopback: round r waits base + r * delta, at most CEILING
CONSENSUS_TIMEOUTS = Timeouts(
    propose_ms=1000,
    propose_delta_ms=500,
    prevote_ms=500,
    prevote_delta_ms=250,
    precommit_ms=500,
    precommit_delta_ms=250,
    max_ms=5000,
)
REBROADCAST_S = 1.0
SYNC_CHECK_S = 0.25
SYNC_BATCH = 100
MAX_CLOCK_DRIFT_S = 30
MAX_CANDIDATES = 64
# a proposal travels with its transactions in one request to each peer (bodies up to 5 MiB)
MAX_BLOCK_TX_BYTES = 3 * 1024 * 1024
# signed votes kept for the two open heights (a byzantine validator could sign without end)
MAX_VOTES = 50_000
# how many rounds of own messages are sent again: the current one and the one before
REBROADCAST_ROUNDS = 2


class Network(Protocol):
    """What the node needs from the transport between validators (`rpc.p2p`)."""

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a consensus message to every peer (best effort: it may be lost)."""

    def gossip_tx(self, tx: dict[str, Any]) -> None:
        """Send a transaction this node admitted to every peer's mempool."""

    def best_peer(self) -> tuple[str, int] | None:
        """(peer, committed height) of the reachable peer furthest ahead, if any."""

    def reachable(self) -> int:
        """How many peers answered recently."""

    async def fetch_blocks(self, peer: str, from_height: int, limit: int) -> list[Any]:
        """Committed blocks from `from_height` on, with commits and transactions (JSON)."""


WriteSet = list[tuple[bytes, bytes | None]]


@dataclass(slots=True)
class Candidate:
    """A block proposed at the current height, executed once, when first asked about."""

    block: Block
    hash: bytes
    txs: tuple[SignedTx, ...]
    records: list[tuple[SignedTx, str]] | None = None
    write_set: WriteSet | None = None
    problem: str | None = None

    @property
    def executed(self) -> bool:
        return self.records is not None


@dataclass(slots=True)
class RoundMessages:
    """This validator's own signed messages of the current height, to send again."""

    height: int = 0
    by_round: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


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
        check_invariants: bool = False,
        clock: Callable[[], float] = time.time,
        timeouts: Timeouts = CONSENSUS_TIMEOUTS,
    ) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.data_dir = Path(data_dir)
        self.validator = validator
        self.block_time_ms = self.params.block_time_ms if block_time_ms is None else block_time_ms
        self.check_invariants = check_invariants
        self.timeouts = timeouts
        self._clock = clock
        self._mempool_capacity = mempool_capacity
        self.dev_keys: dict[str, bytes] = genesis.dev_keys()
        self._ledger: Ledger | None = None
        self._mempool: Mempool | None = None
        self._stopping = asyncio.Event()
        self._tx_waiting = asyncio.Event()
        self._new_block = asyncio.Condition()
        self._check_validator()
        # several validators
        self.validator_set = ValidatorSet.from_genesis(genesis)
        self.verifier = Verifier(
            genesis.chain_id,
            self.validator_set,
            {v.address: v.consensus_pub_key for v in genesis.validators},
        )
        self.network: Network | None = None
        self._machine: Tendermint | None = None
        self._priv: PrivValidator | None = None
        self._candidates: dict[bytes, Candidate] = {}
        self._seen_proposals: set[tuple[int, object, object, bytes]] = set()
        self._votes: dict[tuple[int, int, str, str, bytes], Vote] = {}
        self._own = RoundMessages()
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._height_since = 0.0
        self._warned_app_hash: set[int] = set()
        self._fatal: ChainError | None = None
        self._writing: asyncio.Future[PreparedBlock] | None = None
        self._writing_head: Head | None = None  # of the block being written (dev mode)
        self._open: BlockContext | None = None  # dev mode: of the block being filled

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
        self._mempool = Mempool(self._ledger.view, self.params, self._mempool_capacity)
        self._priv = PrivValidator(self.validator, self.genesis.chain_id, self._ledger)
        head = self._ledger.head
        log.info("ledger open at height %d, appHash 0x%s", head.height, head.app_hash.hex())

    async def run_forever(self) -> None:
        if not self.alone:
            await self._run_consensus()
        elif self.block_time_ms > 0:
            await self._run_timed(self.block_time_ms / 1000)
        else:
            await self._run_automine()

    async def _run_timed(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stopping.is_set():
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
            else:
                next_at = loop.time()
            await self._produce()

    async def _run_automine(self) -> None:
        while not self._stopping.is_set():
            if not self._tx_waiting.is_set():  # no timer to arm while transactions wait
                try:
                    async with asyncio.timeout(AUTOMINE_HEARTBEAT_S):
                        await self._tx_waiting.wait()
                except TimeoutError:
                    if not self.ledger.has_open_tasks():
                        continue
            if self._stopping.is_set():
                return
            self._tx_waiting.clear()
            await self._produce()
            if len(self.mempool):
                self._tx_waiting.set()

    async def _notify_new_block(self) -> None:
        async with self._new_block:
            self._new_block.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        self._tx_waiting.set()

    async def cleanup(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._writing is not None:  # never close the ledger under a block's write
            await asyncio.wait({self._writing})
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

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

    def next_context(self) -> BlockContext:
        """The context of the next block: in dev mode the one fixed by the first transaction
        admitted to it; else after the head, or after the block being written."""
        head = self._writing_head or self.ledger.head
        if self._open is not None and self._open.height == head.height + 1:
            return self._open
        return BlockContext(
            head.height + 1, max(head.time, int(self._clock())), self.validator.address
        )

    def consensus_status(self) -> dict[str, Any]:
        """Where consensus stands, for /health and the testnet status line."""
        machine = self._machine
        status: dict[str, Any] = {"validators": len(self.validator_set)}
        if machine is not None:
            step = machine.step.name.lower() if machine.running else "commit"
            status |= {"round": machine.round, "step": step}
        if self.network is not None:
            status["peers"] = self.network.reachable()
        return status

    # Admission

    def submit(self, tx: SignedTx) -> None:
        """Admit a verified transaction to the mempool and pass it on to the other
        validators; raises ChainError if refused."""
        ctx = self.next_context()
        self.mempool.admit(tx, ctx)
        if self.alone:  # the block being filled keeps the context its transactions met
            self._open = ctx
        self._tx_waiting.set()
        if self.network is not None:
            self.network.gossip_tx(wire.signed_tx_to_json(tx))

    def dev_sign(self, msg: Message) -> SignedTx:
        """Sign for an unlocked dev account (PROTOCOL 5.4)."""
        key = self.dev_keys.get(signer_of(msg))
        if key is None:
            raise ChainError("not a dev account")
        return crypto.sign_message(msg, self.genesis.chain_id, key)

    def pending_tx_wire(self) -> list[dict[str, Any]]:
        """Every transaction waiting in the mempool, as peers receive them."""
        return [wire.signed_tx_to_json(tx) for tx in self.mempool.take(len(self.mempool))]

    def receive_txs(self, items: list[Any]) -> None:
        """Transactions another validator admitted: verify and admit them here too."""
        for item in items:
            claimed = item.get("hash") if isinstance(item, dict) else None
            if isinstance(claimed, str):  # skip the signature recovery of a known one
                with contextlib.suppress(ValueError):
                    if self._knows_tx(bytes.fromhex(claimed.removeprefix("0x"))):
                        continue
            try:
                tx = gossip.tx_from_wire(item, self.genesis.chain_id)
                if self._knows_tx(tx.hash):
                    continue
                self.mempool.admit(tx, self.next_context())
            except InvalidPeerMessage as exc:
                log.warning("dropped a gossiped transaction: %s", exc)
            except (InvalidTransaction, MempoolFull) as exc:
                log.debug("gossiped transaction not admitted: %s", exc)

    def _knows_tx(self, tx_hash: bytes) -> bool:
        return tx_hash in self.mempool or self.ledger.get_tx(tx_hash) is not None

    # Blocks, one validator

    def produce_block(self) -> Head:
        """Build, execute, sign and commit the next block from the mempool (dev mode)."""
        prepared, txs = self._seal_own_block()
        return self._publish_own_block(self._sign_and_write(prepared), txs)

    async def _produce(self) -> None:
        """`produce_block` with the precommit's signature and the synced write in a worker
        thread: the event loop goes on admitting transactions meanwhile, onto the state after
        the block being written, and they make the next block (group commit). Reads see the
        block once it is written (`Ledger.publish`)."""
        prepared, txs = self._seal_own_block()
        loop = asyncio.get_running_loop()
        writing = loop.run_in_executor(None, self._sign_and_write, prepared)
        self._writing = writing
        written = await asyncio.shield(writing)  # a cancelled producer still lets it end
        self._publish_own_block(written, txs)
        await self._notify_new_block()

    def _seal_own_block(self) -> tuple[PreparedBlock, list[SignedTx]]:
        """Execute the next block and hand its transactions to the mempool as sealed.

        When the block holds every admitted transaction, admitted under its own context, the
        mempool's state is already the state they make: only `end_block` is left to run.
        """
        ctx = self.next_context()
        txs = self.mempool.take(self.params.max_block_txs)
        block = self.ledger.next_block(ctx, [tx.hash for tx in txs])
        signers = [v.validator for v in block.last_commit]
        if self._open == ctx and self.mempool.holds_only(txs):
            state = self.mempool.pending_block_state()
            blocks.end_block(state, self.params, ctx, signers)
            records = [(tx, "committed") for tx in txs]
        else:
            state = State(self.ledger.view)
            records = blocks.execute_block(state, self.params, ctx, txs, signers)
        prepared = self.ledger.prepare_block(block, (), records, state.write_set())
        self._writing_head = prepared.head
        self._open = None
        next_ctx = self.next_context()
        self.mempool.seal((tx.hash for tx in txs), state, next_ctx)
        if len(self.mempool) > len(txs):  # more than a block: the rest met the next context
            self._open = next_ctx
        return prepared, txs

    def _sign_and_write(self, prepared: PreparedBlock) -> PreparedBlock:
        """Sign the block's precommit, put it in the batch as the block's commit and write
        the batch (synced); the block with its commit. Safe in a worker thread: it reads
        only the prepared block and the validator's key, and the Ed25519 signature (pyca
        cryptography) and the write (plyvel) both run without the GIL."""
        head = prepared.head
        precommit = self.sign_vote(head.height, 0, "precommit", head.hash)
        signed = prepared.with_commit((precommit,))
        self.ledger.store.write(signed.changes)
        return signed

    def _publish_own_block(self, prepared: PreparedBlock, txs: list[SignedTx]) -> Head:
        new_head = self.ledger.publish(prepared)
        self._writing_head = None
        self.mempool.release(tx.hash for tx in txs)
        if txs:
            log.info("block %d: %d txs", new_head.height, len(txs))
        if self.check_invariants:
            self.assert_supply_invariant()
        return new_head

    def sign_vote(self, height: int, round_: int, vote_type: str, block_hash_: bytes) -> Vote:
        message = VoteMsg(
            height,
            round_,
            "prevote" if vote_type == "prevote" else "precommit",
            block_hash_ or None,
            self.validator.address,
        )
        return gossip.sign_vote(self.validator, self.genesis.chain_id, message)

    def assert_supply_invariant(self) -> None:
        held, expected = self.ledger.supply_check()
        if held != expected:
            raise ChainError(
                f"supply invariant broken at height {self.head.height}: "
                f"held {held} != genesis + minted - burned {expected}"
            )

    async def wait_for_height(self, height: int, timeout: float) -> Head:
        async with asyncio.timeout(timeout), self._new_block:
            await self._new_block.wait_for(lambda: self.ledger.head.height >= height)
        return self.ledger.head

    # Consensus, several validators

    async def _run_consensus(self) -> None:
        if self.block_time_ms <= 0:
            raise ChainError(
                "automine (block time 0) needs a one-validator chain; "
                f"this genesis has {len(self.genesis.validators)} validators"
            )
        if self.network is None:
            raise ChainError("several validators: the node needs a network to its peers")
        self._machine = Tendermint(
            self.validator_set, self.validator.address, self._is_valid, timeouts=self.timeouts
        )
        self._start_height()
        loop = asyncio.get_running_loop()
        resend_at = loop.time() + REBROADCAST_S
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SYNC_CHECK_S)
            if self._stopping.is_set():
                break
            if loop.time() >= resend_at:
                resend_at = loop.time() + REBROADCAST_S
                self._resend_own()
            await self._sync()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, exc: ChainError) -> None:
        """Stop the node for good: its state cannot go on with the network's."""
        if self._fatal is None:
            log.error("%s", exc)
            self._fatal = exc
        self.stop()

    @property
    def machine(self) -> Tendermint:
        if self._machine is None:
            raise ChainError("consensus is not running")
        return self._machine

    def _start_height(self) -> None:
        """Start consensus at the height after the head, resuming what an earlier run of
        this validator signed there."""
        if self._stopping.is_set():
            return
        height = self.head.height + 1
        machine = self.machine
        if machine.height >= height:
            return
        signed, round_ = self.priv.signed_at(height)
        self._own = RoundMessages(height)
        for vote in self.ledger.own_votes(height):
            self._votes[_vote_key(vote)] = vote
            self._own.by_round.setdefault(vote.round, []).append(gossip.vote_to_wire(vote))
        proposed = self.priv.proposal_on_record(height, round_)
        if proposed is not None:
            candidate = Candidate(proposed.block, proposed.proposal.value, proposed.txs)
            self._candidates[candidate.hash] = candidate
            self._own.by_round.setdefault(round_, []).append(gossip.proposal_to_wire(proposed))
        if signed or proposed is not None:
            log.info(
                "resuming height %d at round %d with %d votes%s signed before a restart",
                height,
                round_,
                len(signed),
                " and a proposal" if proposed is not None else "",
            )
        self._height_since = asyncio.get_running_loop().time()
        self._act(machine.start(height, round_, signed))
        self._resend_own()

    def _act(self, actions: list[Action]) -> None:
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            try:
                if isinstance(action, Broadcast):
                    self._send(action.message)
                elif isinstance(action, ScheduleTimeout):
                    self._schedule(action)
                elif isinstance(action, RequestValue):
                    queue.extend(self._propose_value(action))
                elif isinstance(action, Decide):
                    self._decide(action)
            except ConflictingVote as exc:
                log.error("%s", exc)
            except ChainError as exc:  # an appHash mismatch, a broken invariant, storage
                self._fail(exc)
                return

    def _schedule(self, action: ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert timer is not None
            self._timers.discard(timer)
            if not self._stopping.is_set():
                self._act(self.machine.on_timeout(action.kind, action.height, action.round))

        timer = loop.call_later(action.duration_ms / 1000, fire)
        self._timers.add(timer)

    def _send(self, message: Proposal | VoteMsg) -> None:
        network = self.network
        assert network is not None
        if isinstance(message, Proposal):
            candidate = self._candidates.get(message.value)
            if candidate is None:  # a value locked before a restart, its block since lost
                log.warning(
                    "cannot propose 0x%s at %d/%d: this validator no longer holds the block",
                    message.value.hex(),
                    message.height,
                    message.round,
                )
                return
            signed = self.priv.sign_proposal(message, candidate.block, candidate.txs)
            self._seen_proposals.add(
                (message.height, message.round, message.proposer, message.value)
            )
            obj = gossip.proposal_to_wire(signed)
        else:
            vote = self.priv.sign_vote(message)
            self._votes[_vote_key(vote)] = vote
            obj = gossip.vote_to_wire(vote)
        if message.height == self._own.height:
            self._own.by_round.setdefault(message.round, []).append(obj)
        network.broadcast(obj)

    def _resend_own(self) -> None:
        network = self.network
        if network is None or self._own.height != self.head.height + 1:
            return
        for round_ in sorted(self._own.by_round)[-REBROADCAST_ROUNDS:]:
            for obj in self._own.by_round[round_]:
                network.broadcast(obj)

    def _propose_value(self, request: RequestValue) -> list[Action]:
        if request.height != self.head.height + 1:
            return []
        proposed = self.ledger.own_proposal(request.height, request.round)
        if proposed is not None and proposed in self._candidates:  # before a restart
            return self.machine.on_value(request.height, request.round, proposed)
        txs = tuple(self.mempool.take(self.params.max_block_txs, MAX_BLOCK_TX_BYTES))
        block = self.ledger.next_block(self.next_context(), [tx.hash for tx in txs])
        candidate = Candidate(block, block_hash(block), txs)
        self._candidates[candidate.hash] = candidate
        return self.machine.on_value(request.height, request.round, candidate.hash)

    def _decide(self, decision: Decide) -> None:
        if decision.height != self.head.height + 1:
            return  # committed already, through block sync
        candidate = self._candidates[decision.value]
        keys = ((v.height, v.round, v.type, v.validator, v.block_hash) for v in decision.precommits)
        commit = tuple(self._votes[key] for key in keys if key in self._votes)
        try:
            self.verifier.commit(decision.height, decision.value, commit)
        except InvalidPeerMessage as exc:  # only if a vote of this node was refused
            log.error("decided block %d but cannot prove it: %s", decision.height, exc)
            return
        self._commit(candidate, commit)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def next_height() -> None:
            assert timer is not None
            self._timers.discard(timer)
            self._start_height()

        timer = loop.call_later(self.block_time_ms / 1000, next_height)
        self._timers.add(timer)

    def _commit(self, candidate: Candidate, commit: tuple[Vote, ...]) -> None:
        assert candidate.records is not None and candidate.write_set is not None
        block = candidate.block
        stale: dict[bytes, bytes | None] = {
            key: None for key in self.ledger.stale_own_keys(block.height)
        }
        new_head = self.ledger.commit_block(
            block, commit, candidate.records, candidate.write_set, stale
        )
        self.mempool.after_commit(block.txs, self.next_context())
        self._candidates = {
            h: c for h, c in self._candidates.items() if c.block.height > new_head.height
        }
        self._seen_proposals = {p for p in self._seen_proposals if p[0] > new_head.height}
        self._votes = {k: v for k, v in self._votes.items() if k[0] > new_head.height}
        self._height_since = asyncio.get_running_loop().time()
        log.info(
            "block %d: %d txs, proposer %s, %d precommits",
            new_head.height,
            len(block.txs),
            block.proposer,
            len(commit),
        )
        if self.check_invariants:
            self.assert_supply_invariant()
        self._spawn(self._notify_new_block())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Consensus messages from peers

    def receive_messages(self, items: list[Any]) -> None:
        """Proposals and votes from other validators; bad ones are dropped and logged."""
        if self._machine is None or self._stopping.is_set():
            return
        for item in items:
            try:
                kind = item.get("kind") if isinstance(item, dict) else None
                if kind == "vote":
                    self._receive_vote(gossip.vote_from_wire(item))
                elif kind == "proposal":
                    self._receive_proposal(item)
                else:
                    raise InvalidPeerMessage(f"unknown message kind {kind!r}")
            except InvalidPeerMessage as exc:
                log.warning("dropped a consensus message: %s", exc)

    @property
    def _open_heights(self) -> tuple[int, int]:
        return self.head.height + 1, self.head.height + 2

    def _current(self, height: int) -> bool:
        """Messages are kept for the height being decided (the one after the head) and the
        one after it (a peer that committed first may already be there)."""
        return 1 <= height - self.head.height <= 2

    def _receive_vote(self, vote: Vote) -> None:
        if not self._current(vote.height):
            return
        key = _vote_key(vote)
        if key in self._votes:
            return
        if len(self._votes) >= MAX_VOTES:
            log.warning("too many votes at heights %d and %d; ignoring more", *self._open_heights)
            return
        message = self.verifier.vote(vote)
        self._votes[key] = vote
        self._act(self.machine.on_vote(message))

    def _receive_proposal(self, item: dict[str, Any]) -> None:
        block = gossip.block_from_wire(item.get("block"))
        if not self._current(block.height):
            return
        hash_ = block_hash(block)
        round_, proposer = item.get("round"), item.get("proposer")
        seen = (block.height, round_, proposer, hash_)
        if seen in self._seen_proposals:
            return
        signed = gossip.proposal_from_wire(item, self.genesis.chain_id)
        proposal = self.verifier.proposal(signed)
        self._seen_proposals.add(seen)
        if proposal.value not in self._candidates:
            if len(self._candidates) >= MAX_CANDIDATES:
                log.warning("too many proposed blocks at height %d; ignoring more", block.height)
                return
            self._candidates[proposal.value] = Candidate(signed.block, hash_, signed.txs)
        self._act(self.machine.on_proposal(proposal))

    # Is a proposed block valid? (the predicate the consensus machine asks)

    def _is_valid(self, value: bytes) -> bool:
        candidate = self._candidates.get(value)
        if candidate is None:
            return False
        known = candidate.problem is not None
        problem = self._check_block(candidate)
        if problem is None:
            return True
        if not known and candidate.problem is not None:  # found now, and for good
            height = candidate.block.height
            log.warning("block %d 0x%s is invalid: %s", height, value.hex(), problem)
        return False

    def _check_block(self, candidate: Candidate) -> str | None:
        """Why the candidate cannot be the next block, or None; executes it the first time."""
        if candidate.problem is not None:
            return candidate.problem
        block, head = candidate.block, self.head
        if block.height != head.height + 1 or block.prev_hash != head.hash:
            return f"it does not follow the head {head.height}"
        if block.time > self._clock() + MAX_CLOCK_DRIFT_S:
            return f"its time {block.time} is ahead of this node's clock"
        if candidate.executed:
            return None
        problem = self._check_contents(candidate, head)
        if problem is not None:
            candidate.problem = problem
            return problem
        state = State(self.ledger.view)
        ctx = BlockContext(block.height, block.time, block.proposer)
        signers = [v.validator for v in block.last_commit]
        candidate.records = blocks.execute_block(state, self.params, ctx, candidate.txs, signers)
        candidate.write_set = state.write_set()
        return None

    def _check_contents(self, candidate: Candidate, head: Head) -> str | None:
        block = candidate.block
        if block.app_hash != head.app_hash:
            if block.height not in self._warned_app_hash:
                self._warned_app_hash.add(block.height)
                log.error(
                    "block %d carries appHash %s, but the state of this validator after "
                    "block %d is %s",
                    block.height,
                    wire.hex0x(block.app_hash),
                    head.height,
                    wire.hex0x(head.app_hash),
                )
            return "its appHash differs from this validator's state"
        if block.time < head.time:
            return f"its time {block.time} is before the head's {head.time}"
        if block.proposer not in self.validator_set:
            return f"its proposer {block.proposer} is not a validator"
        if len(block.txs) > self.params.max_block_txs:
            return f"it holds {len(block.txs)} transactions, more than maxBlockTxs"
        size = sum(blocks.tx_size(tx) for tx in candidate.txs)
        if size > MAX_BLOCK_TX_BYTES:
            return f"its transactions take {size} bytes, more than {MAX_BLOCK_TX_BYTES}"
        if any(self.ledger.get_tx(h) is not None for h in block.txs):
            return "it holds a transaction that is already in the chain"
        if block.height == 1:
            if block.last_commit:
                return "block 1 carries a lastCommit"
        else:
            try:
                self.verifier.commit(head.height, head.hash, block.last_commit)
            except InvalidPeerMessage as exc:
                return f"its lastCommit is not valid: {exc.reason}"
        return None

    # Block sync

    async def _sync(self) -> None:
        """Fetch and commit the blocks a peer is ahead by (each with a verified commit)."""
        network = self.network
        if network is None:
            return
        best = network.best_peer()
        if best is None:
            return
        peer, height = best
        ahead = height - self.head.height
        waited = asyncio.get_running_loop().time() - self._height_since
        if ahead <= 0 or (ahead == 1 and waited < max(2.0, 2 * self.block_time_ms / 1000)):
            return
        try:
            items = await network.fetch_blocks(peer, self.head.height + 1, SYNC_BATCH)
        except Exception as exc:  # the peer went away: the next round of sync tries again
            log.info("block sync from %s failed: %s", peer, exc)
            return
        synced = 0
        for item in items:
            if self._stopping.is_set():
                return
            try:
                committed = gossip.committed_from_wire(item, self.genesis.chain_id)
                if committed.block.height <= self.head.height:
                    continue
                self._apply_synced(committed)
                synced += 1
            except InvalidPeerMessage as exc:
                log.warning("block sync from %s: %s", peer, exc)
                break
            except ChainError as exc:  # an appHash mismatch, a broken invariant, storage
                self._fail(exc)
                return
        if synced:
            log.info("synced %d blocks from %s, now at %d", synced, peer, self.head.height)
            self._start_height()

    def _apply_synced(self, committed: CommittedBlock) -> None:
        block, head = committed.block, self.head
        if block.height != head.height + 1 or block.prev_hash != head.hash:
            raise InvalidPeerMessage(f"block {block.height} does not follow the head")
        self.verifier.commit(block.height, committed.hash, committed.commit)
        if block.app_hash != head.app_hash:
            raise AppHashMismatch(
                f"appHash mismatch: the network committed block {block.height} on appHash "
                f"{wire.hex0x(block.app_hash)}, but this validator's state after block "
                f"{head.height} is {wire.hex0x(head.app_hash)}. Its ledger differs from the "
                "network's (another genesis or another version of the rules?); stopping. "
                "Start it from fresh data to sync the chain again."
            )
        candidate = Candidate(block, committed.hash, committed.txs)
        problem = self._check_block(candidate)
        if problem is not None:
            raise InvalidPeerMessage(f"block {block.height} is committed but {problem}")
        self._commit(candidate, committed.commit)

    def committed_block(self, height: int) -> CommittedBlock | None:
        """A committed block with its commit and its transactions, for a syncing peer."""
        stored = self.ledger.get_block(height)
        if stored is None or height == 0:
            return None
        txs = []
        for tx_hash in stored.block.txs:
            record = self.ledger.get_tx(tx_hash)
            if record is None:
                raise ChainError(f"block {height} lists a transaction the ledger lacks")
            txs.append(record.tx)
        return CommittedBlock(stored.block, stored.hash, stored.commit, tuple(txs))

    # Reads

    def tx_record(self, tx_hash: bytes) -> TxRecord | None:
        """A committed or late transaction from the ledger, else a pending one."""
        record = self.ledger.get_tx(tx_hash)
        if record is not None:
            return record
        pending = self.mempool.get(tx_hash)
        if pending is not None:
            return TxRecord(pending, None, None, "pending")
        return None


def _vote_key(vote: Vote) -> tuple[int, int, str, str, bytes]:
    return (vote.height, vote.round, vote.type, vote.validator, vote.block_hash)
