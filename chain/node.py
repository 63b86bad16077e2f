"""The validator node: ledger + mempool + block production, wired on one asyncio loop.

Admission and block production are synchronous functions called from the loop, so they
never interleave: a block sees exactly the transactions admitted before it started. A
single validator commits alone (PROTOCOL 6, dev mode): it signs its own precommit, which
the next block carries as `lastCommit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chain import crypto, rules
from chain.errors import ChainError, GenesisError, InvalidTransaction
from chain.genesis import RESOURCE_NODE_KEY_OFFSET, VALIDATOR_KEY_OFFSET, Genesis
from chain.ledger import Head, Ledger, TxRecord, block_hash
from chain.mempool import DEFAULT_CAPACITY, Mempool
from chain.state import State
from chain.types import Block, BlockContext, Message, SignedTx, Vote, signer_of

log = logging.getLogger(__name__)

AUTOMINE_HEARTBEAT_S = 1.0


@dataclass(frozen=True, slots=True)
class ValidatorKey:
    address: str
    consensus_key: Ed25519PrivateKey

    @classmethod
    def from_account_key(cls, private_key: bytes) -> ValidatorKey:
        seed = crypto.consensus_seed(private_key)
        return cls(crypto.address_of_private_key(private_key), crypto.ed25519_private_key(seed))

    @property
    def public_key(self) -> bytes:
        return crypto.ed25519_public_bytes(self.consensus_key)


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
    ) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.data_dir = Path(data_dir)
        self.validator = validator
        self.block_time_ms = self.params.block_time_ms if block_time_ms is None else block_time_ms
        self.check_invariants = check_invariants
        self._clock = clock
        self._mempool_capacity = mempool_capacity
        self.dev_keys: dict[str, bytes] = genesis.dev_keys()
        self._ledger: Ledger | None = None
        self._mempool: Mempool | None = None
        self._stopping = asyncio.Event()
        self._tx_waiting = asyncio.Event()
        self._new_block = asyncio.Condition()
        self._check_validator()

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

    # Lifecycle

    async def setup(self) -> None:
        self._ledger = Ledger.open(self.data_dir, self.genesis)
        self._mempool = Mempool(self._ledger.store, self.params, self._mempool_capacity)
        head = self._ledger.head
        log.info("ledger open at height %d, appHash 0x%s", head.height, head.app_hash.hex())

    async def run_forever(self) -> None:
        if len(self.genesis.validators) != 1:
            raise GenesisError("validators", "this node commits blocks alone: one validator")
        if self.block_time_ms > 0:
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
            try:
                await asyncio.wait_for(self._tx_waiting.wait(), AUTOMINE_HEARTBEAT_S)
            except TimeoutError:
                if not self.ledger.has_open_tasks():
                    continue
            if self._stopping.is_set():
                return
            self._tx_waiting.clear()
            await self._produce()
            if len(self.mempool):
                self._tx_waiting.set()

    async def _produce(self) -> None:
        self.produce_block()
        async with self._new_block:
            self._new_block.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        self._tx_waiting.set()

    async def cleanup(self) -> None:
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
    def head(self) -> Head:
        return self.ledger.head

    def now(self) -> float:
        """The node clock (Unix seconds); rules never read it, only block times."""
        return self._clock()

    def next_context(self) -> BlockContext:
        head = self.ledger.head
        return BlockContext(
            head.height + 1, max(head.time, int(self._clock())), self.validator.address
        )

    # Admission

    def submit(self, tx: SignedTx) -> None:
        """Admit a verified transaction to the mempool; raises ChainError if refused."""
        self.mempool.admit(tx, self.next_context())
        self._tx_waiting.set()

    def dev_sign(self, msg: Message) -> SignedTx:
        """Sign for an unlocked dev account (PROTOCOL 5.4)."""
        key = self.dev_keys.get(signer_of(msg))
        if key is None:
            raise ChainError("not a dev account")
        return crypto.sign_message(msg, self.genesis.chain_id, key)

    # Blocks

    def produce_block(self) -> Head:
        """Build, execute, sign and commit the next block from the mempool."""
        ledger = self.ledger
        head = ledger.head
        ctx = self.next_context()
        previous = ledger.get_block(head.height)
        last_commit = previous.commit if previous is not None else ()
        txs = self.mempool.take(self.params.max_block_txs)
        state = State(ledger.store)
        records: list[tuple[SignedTx, str]] = []
        for tx in txs:
            try:
                rules.apply_tx(state, self.params, ctx, tx)
                records.append((tx, "committed"))
            except InvalidTransaction as exc:
                log.info("tx 0x%s is late: %s", tx.hash.hex(), exc)
                records.append((tx, "late"))
        rules.end_block(state, self.params, ctx, [v.validator for v in last_commit])
        block = Block(
            height=ctx.height,
            time=ctx.time,
            proposer=ctx.proposer,
            prev_hash=head.hash,
            txs=tuple(tx.hash for tx in txs),
            app_hash=head.app_hash,
            last_commit=last_commit,
        )
        precommit = self.sign_vote(ctx.height, 0, "precommit", block_hash(block))
        new_head = ledger.commit_block(block, (precommit,), records, state.write_set())
        self.mempool.after_commit((tx.hash for tx in txs), self.next_context())
        if txs:
            log.info("block %d: %d txs", new_head.height, len(txs))
        if self.check_invariants:
            self.assert_supply_invariant()
        return new_head

    def sign_vote(self, height: int, round_: int, vote_type: str, block_hash_: bytes) -> Vote:
        data = crypto.vote_sign_bytes(self.genesis.chain_id, height, round_, vote_type, block_hash_)
        return Vote(
            chain_id=self.genesis.chain_id,
            height=height,
            round=round_,
            type=vote_type,
            block_hash=block_hash_,
            validator=self.validator.address,
            signature=self.validator.consensus_key.sign(data),
        )

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
