"""Reads: `queryTask` and `queryPendingTasks` against a validator whose ledger holds 10
thousand or 1 million tasks, the explorer's page loads there (`bench.explorer`), and the
validator's memory.

The ledger is filled through the real rules and commit path, the way `Node.produce_block`
makes a dev-mode block: `blocks.execute_block` over signed SubmitTasks, a signed precommit,
`Ledger.commit_block`. Each task but the last `open_tasks` fails at its compute deadline
(no result comes) and is refunded; the last ones stay `submitted`, the same number at every
size, so `queryPendingTasks` has the same work to return whatever the number of finished
tasks. A filled ledger is cached under a key of everything its bytes depend on (sizes, the
genesis hash, the source of `chain/`, `FILL_VERSION`); a fill is written to a temporary
directory and renamed into place, so an interrupted fill is never used.

Signing is the other cost of a fill: worker processes (spawned: a script that fills must
guard its entry point with `if __name__ == "__main__"`) sign ahead while this process
executes and commits. They sign with `crypto.digest` and a coincurve key made once per
sender, which gives the bytes `crypto.sign_message` gives (checked before every fill, and
the first transaction of every block is verified) but skips the key derivation
`sign_message` repeats for every message.

A validator never opens the cache: it serves a `working_copy` (table files hard-linked), so
every run reads the ledger exactly as the fill left it, LevelDB's compaction state included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import statistics
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import coincurve

from bench import explorer
from bench.common import REPO, Service, Throughput, rss_bytes, validator
from bench.ingest import Call, sequential
from chain.node.config import load_genesis
from chain.node.ledger import Ledger
from chain.node.node import dev_validator_key
from chain.node.store import process_alive
from chain.protocol import blocks, crypto, gossip, wire
from chain.protocol.blocks import block_hash
from chain.protocol.consensus import VoteMsg
from chain.protocol.genesis import Genesis, Params
from chain.protocol.state import State, get_account, get_task_stats
from chain.protocol.tasks import task_fee
from chain.protocol.types import BlockContext, SignedTx, SubmitTask
from rpc import api
from rpc.client import InferchainClient

log = logging.getLogger(__name__)

# Bump when the fill changes what it writes: cached ledgers of other versions are refilled.
FILL_VERSION = 2
DEFAULT_SIZES = (10_000, 1_000_000)
DEFAULT_OPEN_TASKS = 100
DEFAULT_SENDERS = 10
# Transactions per filled block: None fills blocks to params.maxBlockTxs, as a busy chain
# does. (Each SubmitTask adds its task to the deadline index of two heights: if that index
# costs more the longer it is, smaller blocks fill faster.)
FILL_BLOCK_TXS: int | None = None
SIGN_CHUNK = 1000
SIGN_LOOKAHEAD_PER_WORKER = 4
SIGNED_RECORD = 65 + 32 + 32  # signature, digest, hash
PROGRESS_EVERY_S = 10.0
# the validator serving a cached ledger must never make a block while it is measured
READ_BLOCK_TIME_MS = 3_600_000
TASK_CALLS = 2000
PENDING_CALLS = 200
WARMUP_CALLS = 200
CHECKED_TASKS = 50
ROUNDS = 3
# the targets of the issue: queryTask p50 at the largest size within 1.5x of the smallest;
# queryPendingTasks independent of the finished tasks (held to the same tolerance); and
# queryPendingTasks at most twice queryTask (p50, the same rounds), at every size
TARGET_RATIO = 1.5
PENDING_OVER_TASK_TARGET = 2.0

FILL_JSON = "fill.json"
GENESIS_JSON = "genesis.json"
LEDGER_DIR = "ledger"
TASK_HASHES = "task-hashes.bin"  # 32 bytes per task, in fill order
HASH_LENGTH = 32


class FillError(Exception):
    """The fill did not give the ledger it should (a refused transaction, wrong counts)."""


class ReadCheckFailed(Exception):
    """A validator answered a read with something else than the ledger holds."""


@dataclass(frozen=True, slots=True)
class FillInfo:
    """A filled ledger: `tasks` SubmitTasks, task k from dev account k % senders with nonce
    k // senders; all but the last `open_tasks` failed at their deadline."""

    tasks: int
    open_tasks: int
    senders: int
    block_txs: int
    height: int
    head_hash: str
    seconds: float

    @property
    def finished(self) -> int:
        return self.tasks - self.open_tasks

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "openTasks": self.open_tasks,
            "senders": self.senders,
            "blockTxs": self.block_txs,
            "height": self.height,
            "headHash": self.head_hash,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FillInfo:
        return cls(
            tasks=int(obj["tasks"]),
            open_tasks=int(obj["openTasks"]),
            senders=int(obj["senders"]),
            block_txs=int(obj["blockTxs"]),
            height=int(obj["height"]),
            head_hash=str(obj["headHash"]),
            seconds=float(obj["seconds"]),
        )


@dataclass(frozen=True, slots=True)
class CachedLedger:
    """A cache entry: the genesis it was filled from, the LevelDB ledger, the fill record."""

    path: Path
    info: FillInfo
    cached: bool
    lookup_seconds: float

    @property
    def genesis_path(self) -> Path:
        return self.path / GENESIS_JSON

    @property
    def ledger_dir(self) -> Path:
        return self.path / LEDGER_DIR

    @property
    def task_hashes_path(self) -> Path:
        return self.path / TASK_HASHES

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.ledger_dir.rglob("*") if p.is_file())


# Transactions


def task_message(k: int, senders: Sequence[str]) -> SubmitTask:
    """The k-th task of a fill."""
    return SubmitTask(
        sender=senders[k % len(senders)],
        nonce=k // len(senders),
        schema="text",
        target_count=1,
        prompts=f"bench reads {k}: say something short",
        model_options="",
    )


class TaskSigner:
    """Signs the tasks of a fill with one coincurve key per sender, made once."""

    def __init__(self, chain_id: int, private_keys: Sequence[bytes]) -> None:
        self.chain_id = chain_id
        self.keys = [coincurve.PrivateKey(key) for key in private_keys]
        self.addresses = [crypto.address_of_private_key(key) for key in private_keys]

    def sign(self, k: int) -> SignedTx:
        msg = task_message(k, self.addresses)
        digest = crypto.digest(msg, self.chain_id)
        raw = self.keys[k % len(self.keys)].sign_recoverable(digest, hasher=None)
        signature = raw[:64] + bytes([raw[64] + 27])  # as crypto.sign_digest
        sender = self.addresses[k % len(self.addresses)]
        return SignedTx(msg, signature, digest, crypto.tx_hash(digest, signature), sender)

    def sign_range(self, start: int, stop: int) -> bytes:
        """Signature, digest and hash of tasks start..stop-1, back to back."""
        out = bytearray()
        for k in range(start, stop):
            tx = self.sign(k)
            out += tx.signature + tx.digest + tx.hash
        return bytes(out)

    def unpack(self, start: int, blob: bytes) -> Iterator[SignedTx]:
        for i in range(len(blob) // SIGNED_RECORD):
            record = blob[i * SIGNED_RECORD : (i + 1) * SIGNED_RECORD]
            k = start + i
            msg = task_message(k, self.addresses)
            yield SignedTx(msg, record[:65], record[65:97], record[97:], msg.sender)


_worker_signer: TaskSigner | None = None


def _init_sign_worker(chain_id: int, private_keys: list[bytes], parent: int) -> None:
    global _worker_signer
    _worker_signer = TaskSigner(chain_id, private_keys)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose fill was killed (SIGTERM, SIGKILL) would otherwise wait forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _sign_in_worker(start: int, stop: int) -> bytes:
    assert _worker_signer is not None
    return _worker_signer.sign_range(start, stop)


def signed_tasks(signer: TaskSigner, count: int, workers: int) -> Generator[SignedTx]:
    """Tasks 0..count-1 in order, signed `SIGN_CHUNK` at a time by `workers` processes
    ahead of the consumer (or here, with no worker)."""
    if workers <= 0:
        for k in range(count):
            yield signer.sign(k)
        return
    keys = [key.secret for key in signer.keys]
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers,
        context,
        initializer=_init_sign_worker,
        initargs=(signer.chain_id, keys, os.getpid()),
    )
    try:
        starts = iter(range(0, count, SIGN_CHUNK))
        queued: deque[tuple[int, Future[bytes]]] = deque()

        def queue_next() -> None:
            start = next(starts, None)
            if start is not None:
                stop = min(start + SIGN_CHUNK, count)
                queued.append((start, pool.submit(_sign_in_worker, start, stop)))

        for _ in range(workers * SIGN_LOOKAHEAD_PER_WORKER):
            queue_next()
        while queued:
            start, future = queued.popleft()
            blob = future.result()
            queue_next()
            yield from signer.unpack(start, blob)
    finally:  # also when the consumer stops early: drop what is still queued
        pool.shutdown(wait=True, cancel_futures=True)


def check_signer(signer: TaskSigner, private_keys: Sequence[bytes]) -> None:
    """The fast signer gives exactly what `crypto.sign_message` gives, for every sender."""
    for k, key in enumerate(private_keys):
        fast = signer.sign(k)
        reference = crypto.sign_message(fast.message, signer.chain_id, key)
        if fast != reference:
            raise FillError(f"the fill's signer differs from crypto.sign_message on task {k}")


def check_signature(tx: SignedTx, chain_id: int) -> None:
    if crypto.verify_message(tx.message, chain_id, tx.signature) != tx:
        raise FillError(f"transaction {wire.hex0x(tx.hash)} does not verify")


# The fill


class BlockMaker:
    """Makes dev-mode blocks as `Node.produce_block` does: execute, sign a precommit, commit."""

    def __init__(self, genesis: Genesis, ledger: Ledger) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.ledger = ledger
        self.key = dev_validator_key(genesis, None)

    def make(self, txs: Sequence[SignedTx]) -> None:
        if txs:  # as a validator admits it (the signers run in other processes)
            check_signature(txs[0], self.genesis.chain_id)
        ledger = self.ledger
        head = ledger.head
        ctx = BlockContext(head.height + 1, max(head.time, int(time.time())), self.key.address)
        block = ledger.next_block(ctx, [tx.hash for tx in txs])
        state = State(ledger.view)
        signers = [v.validator for v in block.last_commit]
        records = blocks.execute_block(state, self.params, ctx, txs, signers)
        late = [tx for tx, status in records if status != "committed"]
        if late:
            raise FillError(f"block {ctx.height}: {len(late)} transactions are late")
        vote = VoteMsg(ctx.height, 0, "precommit", block_hash(block), self.key.address)
        precommit = gossip.sign_vote(self.key, self.genesis.chain_id, vote)
        ledger.commit_block(block, (precommit,), records, state.write_set())


def _block_txs(params: Params, block_txs: int | None) -> int:
    if block_txs is not None and block_txs < 1:
        raise ValueError(f"block_txs must be at least 1: {block_txs}")
    return params.max_block_txs if block_txs is None else min(block_txs, params.max_block_txs)


def fill_ledger(
    genesis_path: Path,
    data_dir: Path,
    tasks: int,
    open_tasks: int = DEFAULT_OPEN_TASKS,
    *,
    senders: int = DEFAULT_SENDERS,
    block_txs: int | None = FILL_BLOCK_TXS,
    workers: int | None = None,
    hashes_path: Path | None = None,
) -> FillInfo:
    """Fill a new ledger in `data_dir` with `tasks` SubmitTasks, all failed at their compute
    deadline but the last `open_tasks`, which stay `submitted`.

    Blocks of `block_txs` tasks; then one block with the open tasks, then empty blocks up
    to the compute deadline of the last full block. `workers` sign ahead (default: one per
    core but this one's). The task hashes, in order, go to `hashes_path` if given.
    """
    genesis = load_genesis(genesis_path)
    params = genesis.params
    if genesis.dev is None or senders > genesis.dev.accounts:
        raise ValueError(f"the genesis must have at least {senders} dev accounts")
    if not 0 <= open_tasks <= min(tasks, params.max_block_txs):
        raise ValueError(f"open_tasks must be between 0 and min(tasks, maxBlockTxs): {open_tasks}")
    if params.compute_deadline_blocks < 1:
        raise ValueError("computeDeadlineBlocks must be at least 1 to leave tasks open")
    block_txs = _block_txs(params, block_txs)
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1)
    if data_dir.exists():
        raise FileExistsError(f"{data_dir} exists: a fill starts from an empty directory")
    keys = [crypto.dev_private_key(genesis.dev.mnemonic, i) for i in range(senders)]
    signer = TaskSigner(genesis.chain_id, keys)
    check_signer(signer, keys)

    started = time.perf_counter()
    with ExitStack() as stack:
        ledger = Ledger.open(data_dir, genesis)
        stack.callback(ledger.close)
        _check_balances(genesis, ledger, signer.addresses, tasks)
        maker = BlockMaker(genesis, ledger)
        finished = tasks - open_tasks
        stream = stack.enter_context(closing(signed_tasks(signer, tasks, workers)))
        hashes = stack.enter_context(open(hashes_path, "wb")) if hashes_path else None
        progress = _Progress(tasks, started)
        done = 0
        while done < finished:
            txs = list(islice(stream, min(block_txs, finished - done)))
            if not txs:
                raise FillError(f"the signers stopped after {done} tasks")
            maker.make(txs)
            if hashes is not None:
                hashes.write(b"".join(tx.digest for tx in txs))
            done += len(txs)
            progress.update(done, ledger.head.height)
        last_full = ledger.head.height
        if open_tasks:
            txs = list(islice(stream, open_tasks))
            maker.make(txs)
            if hashes is not None:
                hashes.write(b"".join(tx.digest for tx in txs))
        while ledger.head.height < last_full + params.compute_deadline_blocks:
            maker.make([])
        if next(stream, None) is not None:
            raise FillError("more tasks were signed than filled")
        _check_filled(ledger, finished, open_tasks)
        head = ledger.head
    seconds = time.perf_counter() - started
    log.info(
        "filled %d tasks (%d open) in %d blocks in %.1f s (%.0f tasks/s)",
        tasks,
        open_tasks,
        head.height,
        seconds,
        tasks / seconds,
    )
    return FillInfo(
        tasks, open_tasks, senders, block_txs, head.height, wire.hex0x(head.hash), seconds
    )


class _Progress:
    def __init__(self, total: int, started: float) -> None:
        self.total = total
        self.started = started
        self.next_at = started + PROGRESS_EVERY_S

    def update(self, done: int, height: int) -> None:
        now = time.perf_counter()
        if now < self.next_at:
            return
        self.next_at = now + PROGRESS_EVERY_S
        rate = done / (now - self.started)
        log.info(
            "fill: %d/%d tasks, height %d, %.0f tasks/s, about %.0f s to go",
            done,
            self.total,
            height,
            rate,
            (self.total - done) / rate if rate else math.inf,
        )


def _check_balances(genesis: Genesis, ledger: Ledger, senders: list[str], tasks: int) -> None:
    """Each sender pays every fee of its tasks even if no refund came back in between."""
    fee = task_fee(genesis.params, 1)
    per_sender = -(-tasks // len(senders))
    for address in senders:
        balance = get_account(ledger.store, address).balance
        if balance < per_sender * fee:
            raise ValueError(
                f"{address} holds {balance}, less than the fees of {per_sender} tasks "
                f"({per_sender * fee}): use more senders or a richer genesis"
            )


def _check_filled(ledger: Ledger, finished: int, open_tasks: int) -> None:
    stats = get_task_stats(ledger.store)
    expected = {"failed": finished, "submitted": open_tasks}
    if (
        any(stats[status] != count for status, count in expected.items())
        or sum(stats.values()) != finished + open_tasks
    ):
        raise FillError(f"the filled ledger counts {stats}, expected {expected}")
    held, expected_supply = ledger.supply_check()
    if held != expected_supply:
        raise FillError(f"supply invariant broken after the fill: {held} != {expected_supply}")


# The cache


def cache_key(
    genesis: Genesis,
    tasks: int,
    open_tasks: int,
    senders: int = DEFAULT_SENDERS,
    block_txs: int | None = FILL_BLOCK_TXS,
) -> str:
    """What a filled ledger's bytes depend on: the fill, the genesis, the chain's source."""
    digest = hashlib.sha256()
    fill = {
        "fillVersion": FILL_VERSION,
        "tasks": tasks,
        "openTasks": open_tasks,
        "senders": senders,
        "blockTxs": _block_txs(genesis.params, block_txs),
    }
    digest.update(json.dumps(fill, sort_keys=True).encode())
    digest.update(genesis.hash)
    for path in sorted((REPO / "chain").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_ledger(
    genesis_path: Path,
    cache_dir: Path,
    tasks: int,
    open_tasks: int = DEFAULT_OPEN_TASKS,
    *,
    senders: int = DEFAULT_SENDERS,
    block_txs: int | None = FILL_BLOCK_TXS,
    workers: int | None = None,
) -> CachedLedger:
    """The cached ledger of this size and key, filled first if there is none; cached
    ledgers of the same size under other keys (and dead temporary fills) are removed."""
    started = time.perf_counter()
    genesis = load_genesis(genesis_path)
    name = f"ledger-{tasks}-{cache_key(genesis, tasks, open_tasks, senders, block_txs)}"
    entry = cache_dir / name
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(cache_dir, tasks, name)
    info = _complete_entry(entry, tasks)
    if info is not None:
        return CachedLedger(entry, info, True, time.perf_counter() - started)
    if entry.exists():
        log.warning("the cached ledger %s is incomplete: filling it again", entry)
        shutil.rmtree(entry)
    log.info("no cached ledger %s: filling %d tasks", entry, tasks)
    tmp = cache_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shutil.copyfile(genesis_path, tmp / GENESIS_JSON)
        info = fill_ledger(
            tmp / GENESIS_JSON,
            tmp / LEDGER_DIR,
            tasks,
            open_tasks,
            senders=senders,
            block_txs=block_txs,
            workers=workers,
            hashes_path=tmp / TASK_HASHES,
        )
        (tmp / FILL_JSON).write_text(json.dumps(info.to_json(), indent=2) + "\n")
        tmp.rename(entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CachedLedger(entry, info, False, time.perf_counter() - started)


def _complete_entry(entry: Path, tasks: int) -> FillInfo | None:
    """The fill record of a cache entry that holds everything a fill writes, else None (an
    entry renamed into place but not on disk before a crash)."""
    try:
        info = FillInfo.from_json(json.loads((entry / FILL_JSON).read_text()))
        hashes = (entry / TASK_HASHES).stat().st_size
    except (OSError, ValueError, KeyError):
        return None
    if info.tasks != tasks or hashes != tasks * HASH_LENGTH:
        return None
    if not (entry / GENESIS_JSON).is_file() or not (entry / LEDGER_DIR / "CURRENT").is_file():
        return None
    return info


def _remove_stale(cache_dir: Path, tasks: int, keep: str) -> None:
    for path in cache_dir.glob(f"ledger-{tasks}-*"):
        if path.name != keep and path.is_dir():
            log.info("removing the stale cached ledger %s", path)
            shutil.rmtree(path)
    for path in cache_dir.glob(f".tmp-ledger-{tasks}-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if wire.ascii_digits(pid) and not process_alive(int(pid)):
            log.info("removing the interrupted fill %s", path)
            shutil.rmtree(path, ignore_errors=True)


# Reads


@dataclass(frozen=True, slots=True)
class RoundFigures:
    """One validator started on a fresh working copy: both methods, then its memory."""

    query_task: Throughput
    query_pending_tasks: Throughput
    rss_bytes: int
    rss_file_bytes: int  # of rss_bytes: pages of mapped files (LevelDB maps its tables)
    rss_at_start_bytes: int
    explorer: dict[str, Throughput]  # the explorer's page loads (bench.explorer)

    def to_json(self) -> dict[str, Any]:
        return {
            "queryTask": self.query_task.to_json(),
            "queryPendingTasks": self.query_pending_tasks.to_json(),
            "explorer": {page: figure.to_json() for page, figure in self.explorer.items()},
            "rssBytes": self.rss_bytes,
            "rssFileBytes": self.rss_file_bytes,
            "rssAtStartBytes": self.rss_at_start_bytes,
        }


@dataclass(frozen=True, slots=True)
class ReadFigures:
    """Reads against one ledger, round by round; each figure is its median round."""

    tasks: int
    rounds: tuple[RoundFigures, ...]

    @property
    def query_task(self) -> Throughput:
        return _median_round([r.query_task for r in self.rounds])

    @property
    def query_pending_tasks(self) -> Throughput:
        return _median_round([r.query_pending_tasks for r in self.rounds])

    def explorer(self) -> dict[str, Throughput]:
        pages = self.rounds[0].explorer
        return {page: _median_round([r.explorer[page] for r in self.rounds]) for page in pages}

    def to_json(self) -> dict[str, Any]:
        rss = sorted(self.rounds, key=lambda r: r.rss_bytes)[(len(self.rounds) - 1) // 2]
        return {
            "queryTask": self.query_task.to_json(),
            "queryPendingTasks": self.query_pending_tasks.to_json(),
            "explorer": {page: figure.to_json() for page, figure in self.explorer().items()},
            "rssBytes": rss.rss_bytes,
            "rssFileBytes": rss.rss_file_bytes,
            "rssAtStartBytes": rss.rss_at_start_bytes,
            "rounds": [r.to_json() for r in self.rounds],
        }


def _median_round(figures: list[Throughput]) -> Throughput:
    by_p50 = sorted(figures, key=lambda t: t.p50_ms or 0.0)
    return by_p50[(len(by_p50) - 1) // 2]


@dataclass(frozen=True, slots=True)
class _Target:
    """What is asked of one ledger, from the task hashes of its fill."""

    entry: CachedLedger
    sampled: list[list[bytes]]  # task hashes per round (the first call of each is not timed)
    checked: list[tuple[bytes, str]]  # (task hash, expected status)
    open_hashes: set[bytes]
    resource_node: str


def _read_targets(entry: CachedLedger, rounds: int, calls: int, seed: int) -> _Target:
    info = entry.info
    hashes = entry.task_hashes_path.read_bytes()
    if len(hashes) != info.tasks * HASH_LENGTH:
        raise ReadCheckFailed(f"{entry.task_hashes_path} does not hold {info.tasks} hashes")

    def task_hash(k: int) -> bytes:
        return hashes[k * HASH_LENGTH : (k + 1) * HASH_LENGTH]

    rng = random.Random(seed)
    sampled = [
        [task_hash(rng.randrange(info.tasks)) for _ in range(calls + 1)] for _ in range(rounds)
    ]
    checked = [
        (task_hash(k), "failed" if k < info.finished else "submitted")
        for k in rng.sample(range(info.tasks), min(CHECKED_TASKS, info.tasks))
    ]
    open_hashes = {task_hash(k) for k in range(info.finished, info.tasks)}
    resource_node = load_genesis(entry.genesis_path).resource_nodes[0].address
    return _Target(entry, sampled, checked, open_hashes, resource_node)


def working_copy(ledger_dir: Path, copy_dir: Path) -> None:
    """A copy of a LevelDB directory that a validator may open and compact without changing
    the original: LevelDB never rewrites a table file (a compaction writes new ones and
    unlinks the old), so tables are hard-linked; the small files are copied."""
    if copy_dir.exists():
        shutil.rmtree(copy_dir)
    copy_dir.mkdir(parents=True)
    for item in ledger_dir.iterdir():
        if item.name == "LOCK" or item.name.startswith("LOG"):
            continue
        target = copy_dir / item.name
        if item.suffix in (".ldb", ".sst"):
            try:
                os.link(item, target)
                continue
            except OSError:  # another file system: copy
                pass
        shutil.copy2(item, target)


def _query_task_calls(hashes: Sequence[bytes]) -> list[Call]:
    return [(api.QUERY_TASK, {"taskHash": wire.hex0x(h)}) for h in hashes]


def _pending_calls(target: _Target, count: int) -> list[Call]:
    params = {
        "ResourceAddress": target.resource_node,
        "TimeStamp": int(time.time()),
        "limit": max(1, len(target.open_hashes)),
    }
    return [(api.QUERY_PENDING_TASKS, params)] * (count + 1)


async def _check_answers(node: Service, target: _Target) -> None:
    """Fail loudly unless the validator serves exactly the filled ledger."""
    info = target.entry.info
    async with InferchainClient(node.url) as client:
        head = await client.call(api.GET_BLOCK, {"height": "latest"})
        if head["height"] != info.height or head["hash"] != info.head_hash:
            raise ReadCheckFailed(
                f"the validator on {target.entry.path} is at {head['height']} {head['hash']}, "
                f"not at the filled head {info.height} {info.head_hash}"
            )
        stats = await client.call(api.TASK_STATS)
        if stats["total"] != info.tasks or stats["submitted"] != info.open_tasks:
            raise ReadCheckFailed(f"taskStats {stats} does not match the fill {info}")
        for task_hash, status in target.checked:
            task = await client.call(api.QUERY_TASK, {"taskHash": wire.hex0x(task_hash)})
            if task["taskHash"] != wire.hex0x(task_hash) or task["status"] != status:
                raise ReadCheckFailed(
                    f"queryTask {wire.hex0x(task_hash)} answered {task['taskHash']} "
                    f"{task['status']}, expected {status}"
                )
        method, params = _pending_calls(target, 0)[0]
        pending = await client.call(method, params)
        got = {bytes.fromhex(item["taskHash"][2:]) for item in pending}
        if got != target.open_hashes or not all(item["compute"] for item in pending):
            raise ReadCheckFailed(
                f"queryPendingTasks answered {len(got)} tasks, "
                f"expected the {len(target.open_hashes)} open ones"
            )


def rss_file_bytes(pid: int) -> int:
    """The part of a process's RSS that maps files (Linux /proc: RssFile)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no RssFile for process {pid}")


async def _measure_round(
    target: _Target, work_dir: Path, round_: int, pending_calls: int
) -> RoundFigures:
    """Start a validator on a fresh working copy of the ledger, warm it with queryTask
    calls, measure both methods, then check its answers (after: the checks read too)."""
    copy = work_dir / f"reads-{target.entry.info.tasks}"
    working_copy(target.entry.ledger_dir, copy)
    try:
        with validator(
            target.entry.genesis_path, copy, "--block-time", str(READ_BLOCK_TIME_MS)
        ) as node:
            rss_at_start = rss_bytes(node.pid)
            await sequential(node.url, _query_task_calls(target.sampled[round_][:WARMUP_CALLS]))
            task = await sequential(node.url, _query_task_calls(target.sampled[round_]))
            pending = await sequential(node.url, _pending_calls(target, pending_calls))
            pages = await explorer.page_loads(node.url, target.sampled[round_], seed=round_)
            figures = RoundFigures(
                task, pending, rss_bytes(node.pid), rss_file_bytes(node.pid), rss_at_start, pages
            )
            await _check_answers(node, target)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    log.info(
        "reads at %d tasks, round %d: queryTask p50 %s ms, queryPendingTasks p50 %s ms, "
        "the explorer's task page p50 %s ms, its blocks page p50 %s ms",
        target.entry.info.tasks,
        round_ + 1,
        task.p50_ms,
        pending.p50_ms,
        pages["taskPage"].p50_ms,
        pages["blocksPage"].p50_ms,
    )
    return figures


async def measure_reads(
    ledgers: Sequence[CachedLedger],
    work_dir: Path,
    *,
    task_calls: int = TASK_CALLS,
    pending_calls: int = PENDING_CALLS,
    rounds: int = ROUNDS,
    seed: int = 1,
) -> list[ReadFigures]:
    """Sequential `queryTask` (task hashes drawn uniformly from all the filled tasks) and
    `queryPendingTasks` (unsigned, for a genesis resource node, every open task), one ledger
    after the other, `rounds` times over, so that a noisy minute weighs on every size.

    Each round starts a validator that makes no block (`READ_BLOCK_TIME_MS`) on a fresh
    `working_copy` of the cached ledger: every round reads the ledger exactly as the fill
    left it, LevelDB's compaction state included (the reads themselves make LevelDB
    compact, which would otherwise change the figures from one round to the next), and the
    cache is never opened by a validator."""
    targets = [
        _read_targets(entry, rounds, task_calls, seed + i) for i, entry in enumerate(ledgers)
    ]
    work_dir.mkdir(parents=True, exist_ok=True)
    measured: list[list[RoundFigures]] = [[] for _ in targets]
    for round_ in range(rounds):
        for i, target in enumerate(targets):
            measured[i].append(await _measure_round(target, work_dir, round_, pending_calls))
    return [
        ReadFigures(target.entry.info.tasks, tuple(figures))
        for target, figures in zip(targets, measured, strict=True)
    ]


def _ratio(high: float | None, low: float | None) -> float | None:
    if high is None or not low:
        return None
    return round(high / low, 3)


async def reads(
    genesis_path: Path,
    cache_dir: Path,
    work_dir: Path,
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    open_tasks: int = DEFAULT_OPEN_TASKS,
    rounds: int = ROUNDS,
    task_calls: int = TASK_CALLS,
    pending_calls: int = PENDING_CALLS,
    workers: int | None = None,
) -> dict[str, Any]:
    """The reads part of the benchmark, JSON-ready: per size the fill (or the cache hit),
    the ledger's size on disk, both methods and the RSS; then the ratios of the targets
    (largest size over smallest)."""
    sizes = sorted(set(sizes))
    if not sizes:
        raise ValueError("no ledger size to measure")
    ledgers = []
    for tasks in sizes:
        entry = cached_ledger(genesis_path, cache_dir, tasks, open_tasks, workers=workers)
        log.info(
            "ledger of %d tasks: %s (%s)",
            tasks,
            entry.path,
            "cached" if entry.cached else f"filled in {entry.info.seconds:.1f} s",
        )
        ledgers.append(entry)
    figures = await measure_reads(
        ledgers, work_dir, task_calls=task_calls, pending_calls=pending_calls, rounds=rounds
    )
    by_size = [
        {
            "tasks": entry.info.tasks,
            "fill": entry.info.to_json()
            | {"cached": entry.cached, "lookupSeconds": round(entry.lookup_seconds, 3)},
            "diskBytes": entry.disk_bytes(),
            **read.to_json(),
            "pendingOverTaskP50": pending_over_task(read),
        }
        for entry, read in zip(ledgers, figures, strict=True)
    ]
    low, high = figures[0], figures[-1]
    compared = len(figures) > 1
    per_size = [r for r in (pending_over_task(f) for f in figures) if r is not None]
    pending_over = max(per_size, default=None)  # the worst size
    task_ratio = _ratio(high.query_task.p50_ms, low.query_task.p50_ms) if compared else None
    pending_ratio = (
        _ratio(high.query_pending_tasks.p50_ms, low.query_pending_tasks.p50_ms)
        if compared
        else None
    )
    return {
        "openTasks": open_tasks,
        "rounds": rounds,
        "sizes": by_size,
        "ratios": {
            "sizes": [low.tasks, high.tasks] if compared else None,
            "queryTaskP50": task_ratio,
            "queryPendingTasksP50": pending_ratio,
            "pendingOverTaskP50": pending_over,
            "medianOfRoundRatios": {
                "queryTaskP50": _round_ratio(low, high, pending=False) if compared else None,
                "queryPendingTasksP50": _round_ratio(low, high, pending=True) if compared else None,
            },
        },
        "targets": {
            "ratio": TARGET_RATIO,
            "queryTaskP50": None if task_ratio is None else task_ratio <= TARGET_RATIO,
            "queryPendingTasksP50": None
            if pending_ratio is None
            else pending_ratio <= TARGET_RATIO,
            "pendingOverTask": PENDING_OVER_TASK_TARGET,
            "pendingOverTaskP50": None
            if pending_over is None
            else pending_over <= PENDING_OVER_TASK_TARGET,
        },
    }


def pending_over_task(figures: ReadFigures) -> float | None:
    """queryPendingTasks p50 over queryTask p50 at one size: the median of the rounds' ratios,
    each of the two measured on the same validator a second apart."""
    ratios = [
        ratio
        for ratio in (
            _ratio(r.query_pending_tasks.p50_ms, r.query_task.p50_ms) for r in figures.rounds
        )
        if ratio is not None
    ]
    return round(statistics.median(ratios), 3) if ratios else None


def _round_ratio(low: ReadFigures, high: ReadFigures, *, pending: bool) -> float | None:
    """The median over rounds of the ratio measured within each round (the two sizes a few
    seconds apart, so a slow minute of the machine cancels out)."""
    ratios = []
    for low_round, high_round in zip(low.rounds, high.rounds, strict=True):
        if pending:
            ratio = _ratio(
                high_round.query_pending_tasks.p50_ms, low_round.query_pending_tasks.p50_ms
            )
        else:
            ratio = _ratio(high_round.query_task.p50_ms, low_round.query_task.p50_ms)
        if ratio is not None:
            ratios.append(ratio)
    return round(statistics.median(ratios), 3) if ratios else None
