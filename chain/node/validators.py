"""Several validators (PROTOCOL 6): the driver of the Tendermint state machine, the intake
of what peers gossip, and block sync.

- The proposer builds a block from its mempool and proposes it with its transactions; every
  validator checks it (`blocks.validate_block`) before it prevotes for it, so a block whose
  appHash differs from the local state is never voted for. Nothing in that check needs the
  block executed (its appHash is the state before it, and a transaction that no longer
  applies stays in it as late), so a validator executes a block once it is decided, on the
  way to committing it: the votes of a large block never wait for its execution.
- Votes and proposals are written to disk before they are signed out (`chain.node.signer`);
  a restarted validator resumes in the last round it signed in (the others may wait there
  for it).
- The next height starts one block time after the decision (Tendermint's timeout_commit,
  counted as CometBFT counts it, from the moment the precommits were in): the commit itself
  (execution, the write, the mempool's re-admission) runs within that time.
- Each validator sends its own messages of the current height again every second, so a peer
  that missed them (restarted, partitioned) still gets them.
- A validator whose peers are ahead fetches their committed blocks, checks the commit of each
  (more than 2/3 of the voting power) and executes it; an appHash mismatch then means its
  state differs from the network's, and it stops.

Everything here runs on the node's event loop, between awaits, so it never interleaves with
admission. The messages travel through a `Network` (the HTTP transport of `rpc.p2p`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chain.node.ledger import log_late
from chain.protocol import blocks, gossip, wire
from chain.protocol.blocks import Head, block_hash
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
    InvalidPeerMessage,
    InvalidTransaction,
    MempoolFull,
)
from chain.protocol.gossip import CommittedBlock, SignedProposal, Verifier
from chain.protocol.state import State
from chain.protocol.types import Block, SignedTx, Vote

if TYPE_CHECKING:
    from chain.node.node import Node

log = logging.getLogger(__name__)

# consensus timeouts on loopback: round r waits base + r * delta, at most max_ms
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
MAX_CANDIDATES = 64
# signed votes kept for the two open heights (a byzantine validator could sign without end)
MAX_VOTES = 50_000
# how many rounds of own messages are sent again: the current one and the one before
REBROADCAST_ROUNDS = 2
# gossiped transactions recovered on the recovery thread from this many on, on the loop below
RECOVER_THREAD_MIN = 8


class Network(Protocol):
    """What the validators need from the transport between them (`rpc.p2p`)."""

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


@dataclass(slots=True)
class Candidate:
    """A block proposed at the current height: checked once against the head it was first
    asked about on (`checked_on`, that head's hash), and executed once it is decided."""

    block: Block
    hash: bytes
    txs: tuple[SignedTx, ...]
    checked_on: bytes | None = None
    problem: str | None = None


@dataclass(slots=True)
class RoundMessages:
    """This validator's own signed messages of the current height, to send again."""

    height: int = 0
    by_round: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


class Consensus:
    """The validator's part in a network of validators: Tendermint, gossip, block sync.

    On a one-validator chain it only serves its peers' reads (committed blocks) and takes
    their transactions; `run` needs several validators.
    """

    def __init__(self, node: Node) -> None:
        genesis = node.genesis
        self.node = node
        self.validator_set = ValidatorSet.from_genesis(genesis)
        self.verifier = Verifier(
            genesis.chain_id,
            self.validator_set,
            {v.address: v.consensus_pub_key for v in genesis.validators},
        )
        self._machine: Tendermint | None = None
        self._candidates: dict[bytes, Candidate] = {}
        self._seen_proposals: set[tuple[int, object, object, bytes]] = set()
        self._votes: dict[tuple[int, int, str, str, bytes], Vote] = {}
        self._own = RoundMessages()
        self._timers: set[asyncio.TimerHandle] = set()
        self._height_since = 0.0
        self._height_started = (0, 0.0)  # (height, loop time) of the height being decided
        self._warned_app_hash: set[int] = set()
        self._fatal: ChainError | None = None
        self._pool: ThreadPoolExecutor | None = None

    def status(self) -> dict[str, Any]:
        """Where consensus stands, for /health and the testnet status line."""
        machine = self._machine
        status: dict[str, Any] = {"validators": len(self.validator_set)}
        if machine is not None:
            step = machine.step.name.lower() if machine.running else "commit"
            status |= {"round": machine.round, "step": step}
        if self.node.network is not None:
            status["peers"] = self.node.network.reachable()
        return status

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # Transactions from peers

    def pending_tx_wire(self) -> list[dict[str, Any]]:
        """Every transaction waiting in the mempool, as peers receive them."""
        return [wire.signed_tx_to_json(tx) for tx in self.node.mempool.take(len(self.node.mempool))]

    async def receive_txs(self, items: list[Any]) -> None:
        """Transactions another validator admitted: verify and admit them here too.

        From RECOVER_THREAD_MIN new ones on, their signers are recovered on a thread of their
        own (libsecp256k1 runs without the GIL), so the event loop serves meanwhile; fewer are
        recovered on the loop, where handing them to the thread would cost about as much. The
        first badly signed or malformed one stops the batch with InvalidPeerMessage naming
        it, and then none is admitted (an honest validator only relays what it admitted).
        Admission runs on the loop."""
        fresh = [(i, item) for i, item in enumerate(items) if not self._claims_known_tx(item)]
        if not fresh:
            return
        chain_id = self.node.genesis.chain_id
        if len(fresh) < RECOVER_THREAD_MIN:
            txs = _decode_txs(fresh, chain_id)
        else:
            loop = asyncio.get_running_loop()
            txs = await loop.run_in_executor(self._recovery_pool(), _decode_txs, fresh, chain_id)
            if self.node.stopping.is_set():
                return
        for tx in txs:
            if self._knows_tx(tx.hash):
                continue
            try:
                self.node.mempool.admit(tx, self.node.next_context())
            except (InvalidTransaction, MempoolFull) as exc:
                log.debug("gossiped transaction not admitted: %s", exc)
                continue
            self.node.admitted(tx)

    def _claims_known_tx(self, item: Any) -> bool:
        """Whether a gossiped transaction names a hash this node holds already (its
        signature recovery is then skipped; a wrong claim only costs that)."""
        claimed = item.get("hash") if isinstance(item, dict) else None
        if not isinstance(claimed, str):
            return False
        try:
            return self._knows_tx(bytes.fromhex(claimed.removeprefix("0x")))
        except ValueError:
            return False

    def _recovery_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gossip-recover")
        return self._pool

    def _knows_tx(self, tx_hash: bytes) -> bool:
        return tx_hash in self.node.mempool or self.node.ledger.get_tx(tx_hash) is not None

    # Consensus

    async def run(self) -> None:
        if self.node.block_time_ms <= 0:
            raise ChainError(
                "automine (block time 0) needs a one-validator chain; "
                f"this genesis has {len(self.node.genesis.validators)} validators"
            )
        if self.node.network is None:
            raise ChainError("several validators: the node needs a network to its peers")
        self._machine = Tendermint(
            self.validator_set,
            self.node.validator.address,
            self._is_valid,
            timeouts=self.node.timeouts,
        )
        self._start_height()
        loop = asyncio.get_running_loop()
        resend_at = loop.time() + REBROADCAST_S
        while not self.node.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.node.stopping.wait(), SYNC_CHECK_S)
            if self.node.stopping.is_set():
                break
            if loop.time() >= resend_at:
                resend_at = loop.time() + REBROADCAST_S
                self._resend_own()
            await self._sync()
        self.cancel_timers()
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, exc: ChainError) -> None:
        """Stop the node for good: its state cannot go on with the network's. The error is
        raised when the run ends, and said once by whoever ran it (`python -m rpc`)."""
        if self._fatal is None:
            self._fatal = exc
        self.node.stop()

    @property
    def machine(self) -> Tendermint:
        if self._machine is None:
            raise ChainError("consensus is not running")
        return self._machine

    def _start_height(self) -> None:
        """Start consensus at the height after the head, resuming what an earlier run of
        this validator signed there."""
        if self.node.stopping.is_set():
            return
        height = self.node.head.height + 1
        machine = self.machine
        if machine.height >= height:
            return
        signed, round_ = self.node.priv.signed_at(height)
        self._own = RoundMessages(height)
        for vote in self.node.ledger.own_votes(height):
            self._votes[_vote_key(vote)] = vote
            self._own.by_round.setdefault(vote.round, []).append(gossip.vote_to_wire(vote))
        for record in self.node.ledger.locked_blocks(height):
            kept = gossip.committed_from_wire(record, self.node.genesis.chain_id)
            self._candidates.setdefault(kept.hash, Candidate(kept.block, kept.hash, kept.txs))
        proposed = self.node.priv.proposal_on_record(height, round_)
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
        self._height_started = (height, self._height_since)
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
            if not self.node.stopping.is_set():
                self._act(self.machine.on_timeout(action.kind, action.height, action.round))

        timer = loop.call_later(action.duration_ms / 1000, fire)
        self._timers.add(timer)

    def _send(self, message: Proposal | VoteMsg) -> None:
        network = self.node.network
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
            signed = self.node.priv.sign_proposal(message, candidate.block, candidate.txs)
            self._seen_proposals.add(
                (message.height, message.round, message.proposer, message.value)
            )
            obj = gossip.proposal_to_wire(signed)
        else:
            if message.type == "precommit" and message.block_hash:
                self._keep_locked(message)
            vote = self.node.priv.sign_vote(message)
            self._votes[_vote_key(vote)] = vote
            obj = gossip.vote_to_wire(vote)
        if message.height == self._own.height:
            self._own.by_round.setdefault(message.round, []).append(obj)
        network.broadcast(obj)

    def _keep_locked(self, message: VoteMsg) -> None:
        """Before a precommit for a block: the block on disk, unless it is this validator's own
        proposal of that round (kept with the proposal)."""
        candidate = self._candidates.get(message.block_hash)
        ledger = self.node.ledger
        if candidate is None or ledger.own_proposal(message.height, message.round) is not None:
            return
        record = gossip.committed_to_wire(
            gossip.CommittedBlock(candidate.block, candidate.hash, (), candidate.txs)
        )
        ledger.save_locked_block(message.height, message.round, record)

    def _resend_own(self) -> None:
        network = self.node.network
        if network is None or self._own.height != self.node.head.height + 1:
            return
        for round_ in sorted(self._own.by_round)[-REBROADCAST_ROUNDS:]:
            for obj in self._own.by_round[round_]:
                network.broadcast(obj)

    def _propose_value(self, request: RequestValue) -> list[Action]:
        if request.height != self.node.head.height + 1:
            return []
        proposed = self.node.ledger.own_proposal(request.height, request.round)
        if proposed is not None and proposed in self._candidates:  # before a restart
            return self.machine.on_value(request.height, request.round, proposed)
        txs = tuple(
            self.node.mempool.take(self.node.params.max_block_txs, blocks.MAX_BLOCK_TX_BYTES)
        )
        block = self.node.ledger.next_block(self.node.next_context(), [tx.hash for tx in txs])
        candidate = Candidate(block, block_hash(block), txs)
        self._candidates[candidate.hash] = candidate
        return self.machine.on_value(request.height, request.round, candidate.hash)

    def _decide(self, decision: Decide) -> None:
        if decision.height != self.node.head.height + 1:
            return  # committed already, through block sync
        candidate = self._candidates[decision.value]
        keys = ((v.height, v.round, v.type, v.validator, v.block_hash) for v in decision.precommits)
        commit = tuple(self._votes[key] for key in keys if key in self._votes)
        try:
            self.verifier.commit(decision.height, decision.value, commit)
        except InvalidPeerMessage as exc:  # only if a vote of this node was refused
            log.error("decided block %d but cannot prove it: %s", decision.height, exc)
            return
        loop = asyncio.get_running_loop()
        decided_at = loop.time()
        self._commit(candidate, commit)
        started_height, started = self._height_started
        if started_height == decision.height:  # not for a block that came by block sync
            self.node.observe_commit(loop.time() - started)
        timer: asyncio.TimerHandle | None = None

        def next_height() -> None:
            assert timer is not None
            self._timers.discard(timer)
            self._start_height()

        timer = loop.call_at(decided_at + self.node.block_time_ms / 1000, next_height)
        self._timers.add(timer)

    def _commit(self, candidate: Candidate, commit: tuple[Vote, ...]) -> None:
        """Execute a decided block (checked already) on the head and commit it."""
        block, node = candidate.block, self.node
        state = State(node.ledger.view)
        signers = [v.validator for v in block.last_commit]
        records = blocks.execute_block(
            state, node.params, blocks.context_of(block), candidate.txs, signers, log_late
        )
        stale: dict[bytes, bytes | None] = {
            key: None for key in node.ledger.stale_own_keys(block.height)
        }
        new_head = node.ledger.commit_block(block, commit, records, state.write_set(), stale)
        self.node.mempool.after_commit(block.txs, self.node.next_context())
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
        if self.node.check_invariants:
            self.node.assert_supply_invariant()
        self.node.spawn(self.node.notify_new_block())

    # Consensus messages from peers

    def receive_messages(self, items: list[Any]) -> None:
        """Proposals and votes from other validators (PROTOCOL 6.3, 6.8).

        All of them are checked before any is acted on: first that each names a genesis
        validator as its signer (cheap, before any decoding), then each in full, signature
        included. The first bad one raises InvalidPeerMessage naming it, and consensus sees
        none of the batch. Messages of other heights and ones seen before are skipped."""
        if self._machine is None or self.node.stopping.is_set():
            return
        for index, item in enumerate(items):
            try:
                self.verifier.claimed_signer(item)
            except InvalidPeerMessage as exc:
                raise InvalidPeerMessage(f"messages[{index}]: {exc}") from exc
        checked: list[Vote | tuple[SignedProposal, Proposal, bytes]] = []
        for index, item in enumerate(items):
            try:
                message = self._check_message(item)
            except InvalidPeerMessage as exc:
                raise InvalidPeerMessage(f"messages[{index}]: {exc}") from exc
            if message is not None:
                checked.append(message)
        for message in checked:
            if self.node.stopping.is_set():
                return
            if isinstance(message, Vote):
                self._take_vote(message)
            else:
                self._take_proposal(*message)

    def _check_message(
        self, item: dict[str, Any]
    ) -> Vote | tuple[SignedProposal, Proposal, bytes] | None:
        """A consensus message decoded and its signature checked; None to skip it."""
        if item.get("kind") == "vote":
            vote = gossip.vote_from_wire(item)
            self.verifier.vote(vote)  # one Ed25519 check: a forged vote is refused at any height
            if not self._current(vote.height) or _vote_key(vote) in self._votes:
                return None
            return vote
        block = gossip.block_from_wire(item.get("block"))
        if not self._current(block.height):
            return None
        hash_ = block_hash(block)
        seen = (block.height, item.get("round"), item.get("proposer"), hash_)
        if seen in self._seen_proposals:
            return None
        # its signature is checked before its transactions are recovered
        signed = gossip.proposal_from_wire(item, self.node.genesis.chain_id, self.verifier)
        return signed, signed.proposal, hash_

    @property
    def _open_heights(self) -> tuple[int, int]:
        return self.node.head.height + 1, self.node.head.height + 2

    def _current(self, height: int) -> bool:
        """Messages are kept for the height being decided (the one after the head) and the
        one after it (a peer that committed first may already be there)."""
        return 1 <= height - self.node.head.height <= 2

    def _take_vote(self, vote: Vote) -> None:
        key = _vote_key(vote)
        if not self._current(vote.height) or key in self._votes:
            return
        if len(self._votes) >= MAX_VOTES:
            log.warning("too many votes at heights %d and %d; ignoring more", *self._open_heights)
            return
        self._votes[key] = vote
        self._act(self.machine.on_vote(VoteMsg.from_vote(vote)))

    def _take_proposal(self, signed: SignedProposal, proposal: Proposal, hash_: bytes) -> None:
        block = signed.block
        seen = (block.height, proposal.round, proposal.proposer, hash_)
        if not self._current(block.height) or seen in self._seen_proposals:
            return
        self._seen_proposals.add(seen)
        if proposal.value not in self._candidates:
            if len(self._candidates) >= MAX_CANDIDATES:
                log.warning("too many proposed blocks at height %d; ignoring more", block.height)
                return
            self._candidates[proposal.value] = Candidate(block, hash_, signed.txs)
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
        """Why the candidate cannot be the next block, or None. A problem with its contents
        is kept: that block never becomes valid; once it passed on a head, only its place
        after that head (height, prevHash, time) is checked again."""
        if candidate.problem is not None:
            return candidate.problem
        node = self.node
        block, head, now = candidate.block, node.head, node.now()
        if candidate.checked_on == head.hash:
            return blocks.follows(block, head, now)
        problem = blocks.validate_block(
            block,
            candidate.txs,
            head,
            node.params,
            now=now,
            proposers=self.validator_set,
            in_chain=lambda tx_hash: node.ledger.get_tx(tx_hash) is not None,
            check_commit=self.verifier.commit,
        )
        if problem is not None:
            if blocks.follows(block, head, now) is None:
                candidate.problem = problem
                self._warn_app_hash(block, head)
            return problem
        candidate.checked_on = head.hash
        return None

    def _warn_app_hash(self, block: Block, head: Head) -> None:
        """Log, once per height, a block whose appHash is not this validator's state."""
        if block.app_hash == head.app_hash or block.height in self._warned_app_hash:
            return
        self._warned_app_hash.add(block.height)
        log.error(
            "block %d carries appHash %s, but the state of this validator after block %d is %s",
            block.height,
            wire.hex0x(block.app_hash),
            head.height,
            wire.hex0x(head.app_hash),
        )

    # Block sync

    async def _sync(self) -> None:
        """Fetch and commit the blocks a peer is ahead by (each with a verified commit)."""
        network = self.node.network
        if network is None:
            return
        best = network.best_peer()
        if best is None:
            return
        peer, height = best
        ahead = height - self.node.head.height
        waited = asyncio.get_running_loop().time() - self._height_since
        if ahead <= 0 or (ahead == 1 and waited < max(2.0, 2 * self.node.block_time_ms / 1000)):
            return
        try:
            items = await network.fetch_blocks(peer, self.node.head.height + 1, SYNC_BATCH)
        except Exception as exc:  # the peer went away: the next round of sync tries again
            log.info("block sync from %s failed: %s", peer, exc)
            return
        synced = 0
        for item in items:
            if self.node.stopping.is_set():
                return
            try:
                committed = gossip.committed_from_wire(item, self.node.genesis.chain_id)
                if committed.block.height <= self.node.head.height:
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
            log.info("synced %d blocks from %s, now at %d", synced, peer, self.node.head.height)
            self._start_height()

    def _apply_synced(self, committed: CommittedBlock) -> None:
        block, head = committed.block, self.node.head
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
        stored = self.node.ledger.get_block(height)
        if stored is None or height == 0:
            return None
        txs = []
        for tx_hash in stored.block.txs:
            record = self.node.ledger.get_tx(tx_hash)
            if record is None:
                raise ChainError(f"block {height} lists a transaction the ledger lacks")
            txs.append(record.tx)
        return CommittedBlock(stored.block, stored.hash, stored.commit, tuple(txs))


def _decode_txs(items: list[tuple[int, Any]], chain_id: int) -> list[SignedTx]:
    """Gossiped transactions decoded and their signers recovered, up to the first bad one
    (InvalidPeerMessage naming its place in the request). Pure: runs on the recovery
    thread."""
    txs = []
    for index, item in items:
        try:
            txs.append(gossip.tx_from_wire(item, chain_id))
        except InvalidPeerMessage as exc:
            raise InvalidPeerMessage(f"txs[{index}]: {exc}") from exc
    return txs


def _vote_key(vote: Vote) -> tuple[int, int, str, str, bytes]:
    return (vote.height, vote.round, vote.type, vote.validator, vote.block_hash)
