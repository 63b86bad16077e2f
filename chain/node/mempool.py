"""The mempool: admission of verified transactions, in per-sender nonce order, bounded.

Admission applies each transaction to a speculative state (the committed state plus every
transaction already admitted), so the answer a client gets (nonce, balance, fee checks)
is the answer the next block will give. The signature is checked once, before admission;
the mempool only keeps `SignedTx` values whose signer is already known.

In dev mode the admitted transactions are the next block: admitted under its context, they
leave in `pending_block_state` exactly the state its execution would (the proposer then adds
`end_block` only). While a block is written, admission goes on: `seal` sets its transactions
aside (still known, still pending to readers) and moves admission onto the state after that
block, so nothing needs applying again once it is written (`release`). With several
validators a block comes from consensus, and `after_commit` re-admits what is left on the
new state.

Two limits besides the pool's size keep one sender from crowding out the others: at most
`max_per_sender` transactions of one signer wait at once (as geth's account slots), and a
Transfer pays `transferFee` (PROTOCOL 4.12), so each pending transaction costs its sender.

With a `Journal`, every admitted transaction (from a client or a peer) is written to it
before `admit` returns, and the journal is rewritten after blocks once it holds many more
records than the pool (`chain.node.journal`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from chain.node.journal import Journal
from chain.protocol import blocks
from chain.protocol.errors import InvalidTransaction, MempoolFull
from chain.protocol.genesis import Params
from chain.protocol.state import Reader, State, get_account
from chain.protocol.types import BlockContext, SignedTx, SubmitTask

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 20_000
DEFAULT_CAPACITY_BYTES = 64 * 1024 * 1024
# One sender's transactions waiting at once: a full JSON-RPC batch (1000 calls) of one
# wallet still fits, and twenty senders are needed to fill the pool's count.
DEFAULT_MAX_PER_SENDER = 1000
# The journal is rewritten after a block once it holds more than this many records beyond
# twice the transactions held: rewrites cost O(1) per admitted transaction on average.
JOURNAL_SLACK_RECORDS = 1024
# The versions of every mempool's pending state: a new mempool never repeats an old one's.
_VERSIONS = itertools.count(1)


class Mempool:
    def __init__(
        self,
        committed: Reader,
        params: Params,
        capacity: int = DEFAULT_CAPACITY,
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
        max_per_sender: int = DEFAULT_MAX_PER_SENDER,
        journal: Journal | None = None,
    ) -> None:
        self._committed = committed
        self._params = params
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.max_per_sender = max_per_sender
        self.journal = journal
        self._per_sender: dict[str, int] = {}  # signer -> transactions held (sealed included)
        self._txs: dict[bytes, SignedTx] = {}
        self._sizes: dict[bytes, int] = {}
        self._bytes = 0
        self._tasks: dict[bytes, SignedTx] = {}
        self._sealed: dict[bytes, SignedTx] = {}  # in a block being written
        self._pending = State(committed)
        self._journal_stale = False  # it holds a dropped transaction
        # Changes whenever `pending_state` may read otherwise (an admission, a block sealed,
        # released or committed): what was read under one version holds until it changes.
        self.version = next(_VERSIONS)

    def __len__(self) -> int:
        """Transactions held: admitted, or in a block not yet written."""
        return len(self._txs) + len(self._sealed)

    @property
    def bytes_held(self) -> int:
        """The size (`blocks.tx_size`) of the transactions held, sealed ones included."""
        return self._bytes

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs or tx_hash in self._sealed

    def get(self, tx_hash: bytes) -> SignedTx | None:
        return self._txs.get(tx_hash) or self._sealed.get(tx_hash)

    def task_count(self) -> int:
        """SubmitTasks admitted and not yet committed."""
        return len(self._tasks)

    def pending_task(self, task_hash: bytes) -> SignedTx | None:
        """The admitted, not yet committed SubmitTask whose taskHash is `task_hash`."""
        return self._tasks.get(task_hash)

    @property
    def pending_state(self) -> Reader:
        """The committed state with every admitted transaction applied."""
        return self._pending

    def holds_only(self, txs: list[SignedTx]) -> bool:
        """True when `txs` (from `take`) are every transaction admitted and none is sealed."""
        return len(txs) == len(self._txs) and not self._sealed

    def pending_block_state(self) -> State:
        """The speculative state itself, for a block made of every admitted transaction
        (`holds_only`): its writes are the writes of those transactions."""
        return self._pending

    def next_nonce(self, address: str) -> int:
        return get_account(self._pending, address).nonce

    def pending_of(self, signer: str) -> int:
        """Transactions of `signer` held: admitted, or in a block not yet written."""
        return self._per_sender.get(signer, 0)

    def admit(self, tx: SignedTx, ctx: BlockContext) -> None:
        """Admit `tx` or raise (InvalidTransaction, MempoolFull); a refusal changes nothing.
        With a journal, `tx` is in it when this returns."""
        self._admit(tx, ctx, self.journal)

    def _admit(self, tx: SignedTx, ctx: BlockContext, journal: Journal | None) -> None:
        self.version = next(_VERSIONS)
        size = blocks.tx_size(tx)
        held = len(self)
        if held >= self.capacity or self._bytes + size > self.capacity_bytes:
            by_bytes = held < self.capacity
            raise MempoolFull(self.capacity, held, self.capacity_bytes, self._bytes, by_bytes)
        pending = self._per_sender.get(tx.signer, 0)
        if pending >= self.max_per_sender:
            raise MempoolFull(
                self.capacity,
                held,
                self.capacity_bytes,
                self._bytes,
                False,
                sender=tx.signer,
                max_per_sender=self.max_per_sender,
                pending=pending,
            )
        if journal is None:
            blocks.apply_tx(self._pending, self._params, ctx, tx)
        else:  # on disk before it counts as admitted; a failed write admits nothing
            scratch = self._pending.child()
            blocks.apply_tx(scratch, self._params, ctx, tx)
            journal.append(tx)
            self._pending.merge(scratch)
        self._txs[tx.hash] = tx
        self._sizes[tx.hash] = size
        self._bytes += size
        self._per_sender[tx.signer] = pending + 1
        if isinstance(tx.message, SubmitTask):
            self._tasks[tx.digest] = tx

    def _forget(self, tx: SignedTx) -> None:
        """Uncount a transaction that left the pool (its entry in `_txs` or `_sealed` is
        already gone)."""
        self._bytes -= self._sizes.pop(tx.hash, 0)
        self._tasks.pop(tx.digest, None)
        left = self._per_sender.get(tx.signer, 0) - 1
        if left > 0:
            self._per_sender[tx.signer] = left
        else:
            self._per_sender.pop(tx.signer, None)

    def take(self, limit: int, max_bytes: int | None = None) -> list[SignedTx]:
        """The first `limit` transactions in admission order, at most `max_bytes` of them
        by `blocks.tx_size` (they stay until committed)."""
        out: list[SignedTx] = []
        total = 0
        for tx in self._txs.values():
            if len(out) >= limit:
                break
            size = self._sizes[tx.hash]
            if max_bytes is not None and total + size > max_bytes:
                break
            total += size
            out.append(tx)
        return out

    def seal(self, included: Iterable[bytes], state_after: Reader, ctx: BlockContext) -> None:
        """Set aside the transactions of a block about to be written, and admit from now on
        onto `state_after` (the state after that block) with `ctx` (the next block's)."""
        self.version = next(_VERSIONS)
        for tx_hash in included:
            tx = self._txs.pop(tx_hash, None)
            if tx is not None:
                self._sealed[tx_hash] = tx
        if self._readmit(State(state_after), ctx):
            self._journal_stale = True

    def release(self, included: Iterable[bytes]) -> None:
        """The sealed block is written: forget its transactions, and read the committed
        state (which now holds the block) instead of the block's state in memory."""
        self.version = next(_VERSIONS)
        for tx_hash in included:
            tx = self._sealed.pop(tx_hash, None)
            if tx is not None:
                self._forget(tx)
        self._pending.rebase(self._committed)
        self._compact_journal(force=self._journal_stale)

    def after_commit(self, included: Iterable[bytes], ctx: BlockContext) -> list[SignedTx]:
        """Drop committed transactions and re-admit the rest on the new state.

        Returns the transactions that no longer apply and were dropped.
        """
        self.version = next(_VERSIONS)
        for tx_hash in included:
            tx = self._txs.pop(tx_hash, None)
            if tx is not None:
                self._forget(tx)
        dropped = self._readmit(State(self._committed), ctx)
        self._compact_journal(force=bool(dropped))
        return dropped

    def held(self) -> list[SignedTx]:
        """Every transaction held, in the order they were admitted (sealed ones first)."""
        return [*self._sealed.values(), *self._txs.values()]

    def _compact_journal(self, force: bool) -> None:
        """Rewrite the journal with the transactions held, when it holds many more records
        (committed or dropped ones), or at once when `force` (dropped ones must not come back
        at a restart)."""
        journal = self.journal
        if journal is None:
            return
        if force or journal.records > 2 * len(self) + JOURNAL_SLACK_RECORDS:
            journal.rewrite(self.held())
            self._journal_stale = False

    def _readmit(self, pending: State, ctx: BlockContext) -> list[SignedTx]:
        """Apply every admitted transaction again, in order, onto `pending`; drop those
        that no longer apply (and return them). They are in the journal already."""
        self.version = next(_VERSIONS)
        self._pending = pending
        if not self._txs:
            return []
        remaining = list(self._txs.values())
        self._txs.clear()
        for tx in remaining:
            self._forget(tx)
        dropped = []
        for tx in remaining:
            try:
                self._admit(tx, ctx, None)
            except (InvalidTransaction, MempoolFull) as exc:
                log.info("dropped %s from the mempool: %s", tx.hash.hex(), exc)
                dropped.append(tx)
        return dropped
