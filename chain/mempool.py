"""The mempool: admission of verified transactions, in per-sender nonce order, bounded.

Admission applies each transaction to a speculative state (the committed state plus every
transaction already admitted), so the answer a client gets (nonce, balance, fee checks)
is the answer the next block will give. The signature is checked once, before admission;
the mempool only keeps `SignedTx` values whose signer is already known.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from chain import rules
from chain.errors import InvalidTransaction, MempoolFull
from chain.genesis import Params
from chain.state import Reader, State, get_account
from chain.types import BlockContext, SignedTx, SubmitTask

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 20_000
DEFAULT_CAPACITY_BYTES = 64 * 1024 * 1024


class Mempool:
    def __init__(
        self,
        committed: Reader,
        params: Params,
        capacity: int = DEFAULT_CAPACITY,
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
    ) -> None:
        self._committed = committed
        self._params = params
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self._txs: dict[bytes, SignedTx] = {}
        self._sizes: dict[bytes, int] = {}
        self._bytes = 0
        self._tasks: dict[bytes, SignedTx] = {}
        self._pending = State(committed)

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> SignedTx | None:
        return self._txs.get(tx_hash)

    def pending_task(self, task_hash: bytes) -> SignedTx | None:
        """The admitted, not yet committed SubmitTask whose taskHash is `task_hash`."""
        return self._tasks.get(task_hash)

    @property
    def pending_state(self) -> Reader:
        """The committed state with every admitted transaction applied."""
        return self._pending

    def next_nonce(self, address: str) -> int:
        return get_account(self._pending, address).nonce

    def admit(self, tx: SignedTx, ctx: BlockContext) -> None:
        """Admit `tx` or raise (InvalidTransaction, MempoolFull); a refusal changes nothing."""
        size = rules.tx_size(tx)
        if len(self._txs) >= self.capacity or self._bytes + size > self.capacity_bytes:
            by_bytes = len(self._txs) < self.capacity
            raise MempoolFull(
                self.capacity, len(self._txs), self.capacity_bytes, self._bytes, by_bytes
            )
        rules.apply_tx(self._pending, self._params, ctx, tx)
        self._txs[tx.hash] = tx
        self._sizes[tx.hash] = size
        self._bytes += size
        if isinstance(tx.message, SubmitTask):
            self._tasks[tx.digest] = tx

    def take(self, limit: int, max_bytes: int | None = None) -> list[SignedTx]:
        """The first `limit` transactions in admission order, at most `max_bytes` of them
        by `rules.tx_size` (they stay until committed)."""
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

    def after_commit(self, included: Iterable[bytes], ctx: BlockContext) -> list[SignedTx]:
        """Drop committed transactions and re-admit the rest on the new state.

        Returns the transactions that no longer apply and were dropped.
        """
        for tx_hash in included:
            tx = self._txs.pop(tx_hash, None)
            self._bytes -= self._sizes.pop(tx_hash, 0)
            if tx is not None:
                self._tasks.pop(tx.digest, None)
        self._pending = State(self._committed)
        if not self._txs:
            return []
        remaining = list(self._txs.values())
        self._txs.clear()
        self._sizes.clear()
        self._tasks.clear()
        self._bytes = 0
        dropped = []
        for tx in remaining:
            try:
                self.admit(tx, ctx)
            except (InvalidTransaction, MempoolFull) as exc:
                log.info("dropped %s from the mempool: %s", tx.hash.hex(), exc)
                dropped.append(tx)
        return dropped
