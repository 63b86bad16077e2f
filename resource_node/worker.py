"""The resource node's worker: poll the validator, compute, submit results, verify others.

Every poll interval the node asks `queryPendingTasks` (signed, PROTOCOL 5.1) for the tasks it
can act on, in its privilege order. For a task marked `compute` it runs the backend with its
own seed (PROTOCOL 4.4) and submits the signed result; for each entry of `verify` it recomputes
the submitter's result with the submitter's seed and submits `valid = (keccak(own output) ==
keccak(result))` (PROTOCOL 4.5). A task that other nodes compute too is left first to the
nodes whose turn comes before this one's (`resource_node.turns`, PROTOCOL 4.3), and computed
here after a standby if it is still open. Work runs concurrently: at most `concurrency` calls of the
backend at once (a semaphore), while the submissions to the validator are not bounded by it, so
that slow answers do not hold inferences back.

Every field of a listed task is untrusted (`resource_node.untrusted`): a task the node cannot
read within its bounds is skipped and logged once, a verify entry it cannot read likewise,
and the node goes on with the rest of the listing; no value of a task can end the poll loop.

Answers: `true` is accepted, `false` means the task or result no longer takes submissions
(closed), -32006 means it was already done: all three are recorded in the submission log
(`resource_node.state`) and never sent again, also after a restart. An unreachable (transport
error) or busy (-32007) validator is retried with jittered exponential backoff, and the node
keeps running across validator restarts. Other rejections and backend failures count as
failed and are retried after a per-item cooldown.

Forced errors (PROTOCOL 4.13), when the chain's `canaryRateBps` is above 0 (the node learns
the params from `WorkerConfig.params`, the genesis file given with `--genesis`, or else from
the chain itself: getParams, once, at setup or at the first poll that reaches the
validator). The node needs a committed chain of secrets to compute (`resource_node.secrets`):
at the first poll it reads its record (getResourceNodes) and uses the chain of the epoch its
state file names, or epoch 0 (a dev node's genesis `secretsHead`), when the chain holds that
head; otherwise it commits a fresh epoch (CommitSecrets) and computes once
it is on chain. A result for a task created at height h is a forced error when
`crypto.is_forced_error(secret(h), taskHash, canaryRateBps)`: the node then submits its output
reversed, with `FORCED_MARKER` (deliberately wrong), and counts it. When a listed task says
`reveal`, its decided result waits for the secret: the node reveals the highest such
createdHeight, but never a height at or above one of its own results still undecided (that
would tell its verifiers whether it is a forced error), and computes no task created at or
below a height it revealed. When its chain is about to run out, it takes no new task until
nothing of it is unsettled and commits the next epoch.

Pushed work (PROTOCOL 5.6): besides polling, the node subscribes to `pendingTasks` over the
validator's WebSocket and acts on each item as it is offered, a task still in the mempool
included (on a chain without forced errors: a forced error is drawn from the secret of the
task's block), so it can start one block earlier. It polls as well, every
`pushed_poll_interval` while subscribed (by default the same `poll_interval`: a multi-validator
network with a byzantine node was seen to miss verifications with polls 2 s apart, so the
push adds speed and the polls keep their guarantee); a validator without `/ws`, or a
subscription that closes, puts it back on `poll_interval`, and it subscribes again after
`push_retry`.

Lifecycle as every service here: `setup()`, `run_forever()`, `stop()`, `cleanup()`;
`run_once()` is one poll-and-act cycle for tests and scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from chain.protocol import crypto, wire
from chain.protocol.genesis import Params
from chain.protocol.schema import JSON, postprocess, schema_kind
from chain.protocol.tasks import MAX_REVEAL_STEPS
from chain.protocol.types import Secrets, SubmitInferenceResult
from resource_node import turns
from resource_node.backends import (
    Backend,
    BackendError,
    InferenceRequest,
    TaskError,
    close_backend,
    request_for,
    setup_backend,
)
from resource_node.backends.faults import Faults
from resource_node.metrics import NodeMetrics
from resource_node.secrets import SecretChain, listed_secrets
from resource_node.state import SubmissionLog, state_path
from resource_node.untrusted import (
    MAX_FIELD_LENGTH,
    ListedResult,
    PendingTask,
    TaskInputs,
    Unreadable,
    VerifyEntry,
    check_field,
    decode_task,
    describe,
    listed_hash,
)
from rpc import api
from rpc.client import (
    InferchainClient,
    RpcError,
    TransportError,
    Wallet,
    pending_tasks_params,
    presign,
)
from rpc.errors import DUPLICATE_SUBMISSION, MEMPOOL_FULL

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 3
MAX_COOLDOWNS = 4096
MAX_REMEMBERED = 4096  # tasks read, and problems logged, kept in memory (oldest forgotten)
INPUTS_BUDGET = 64 << 20  # characters of the task inputs kept, at most (oldest forgotten)
FORCED_MARKER = " [forced error]"  # appended to the output of a forced error (PROTOCOL 4.13)
ROLLOVER_MARGIN = 64  # heights kept in hand past the deadlines before a chain of secrets ends
COMMIT_PATIENCE = 100  # polls a sent CommitSecrets may take to show on chain, then sent again
# The length of a block, for the standby of turns, on an automine chain (blocks of no length).
STANDBY_BLOCK_S = 0.2
DECIDED_BATCH = 100  # own results read in one batch when a reveal looks for its limit
REVEAL_PATIENCE = 10  # polls a sent RevealSecret may take to show on chain, then sent again
# A scored result identical to an earlier one is a copy unless an independent sample would be
# this text with probability at least e^COPY_LOG_CHANCE (about one in a million).
COPY_LOG_CHANCE = -13.8

# Where the node's chain of secrets stands (PROTOCOL 4.13).
SECRETS_OFF = "off"  # canaryRateBps 0: no secrets needed
SECRETS_UNKNOWN = "unknown"  # not read from the chain yet
SECRETS_COMMITTING = "committing"  # a CommitSecrets sent, not on chain yet
SECRETS_READY = "ready"
SECRETS_ROLLOVER = "rollover"  # the chain runs out: no new task, the next epoch to commit

# What a piece of work is about: ("result", taskHash) or ("verdict", taskHash, submitter).
WorkKey = tuple[str, ...]
Sleep = Callable[[float], Awaitable[None]]
Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Knobs of the worker; the defaults suit a local testnet."""

    poll_interval: float = 0.2
    push: bool = True  # subscribe to pendingTasks over /ws, polling less while subscribed
    pushed_poll_interval: float | None = None  # while subscribed; None: poll_interval
    push_retry: float = 5.0
    settlement_read_interval: float = 1.0  # the settlements of new blocks, for the metrics
    concurrency: int = 4
    limit: int = 100
    models: tuple[str, ...] = ("*",)
    state_dir: Path | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 5.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    shutdown_grace: float = 5.0
    params: Params = field(default_factory=Params)  # the chain's params (genesis)
    genesis_hash: str | None = None  # of the genesis the params were read from
    secret_chain_length: int = crypto.SECRET_CHAIN_LENGTH  # of the epochs it commits
    # Block times a node leaves a task to the nodes before it in the task's order before it
    # computes it too (`resource_node.turns`); 0: every node computes at once.
    standby_blocks: int = turns.STANDBY_BLOCKS

    def __post_init__(self) -> None:
        if not self.poll_interval > 0:
            raise ValueError(f"poll interval must be positive, got {self.poll_interval}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if not 1 <= self.limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {self.limit}")
        if not self.models:
            raise ValueError("models: give at least one model, or * for all")
        if self.secret_chain_length < 1:
            raise ValueError(
                f"secret chain length must be positive, got {self.secret_chain_length}"
            )
        if self.standby_blocks < 0:
            raise ValueError(f"standby blocks cannot be negative, got {self.standby_blocks}")


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Counters of one node. `done` counts answered results, `verified` answered verdicts."""

    in_flight: int = 0
    done: int = 0
    failed: int = 0
    verified: int = 0
    postprocess_errors: int = 0
    unreadable: int = 0
    results_accepted: int = 0
    results_closed: int = 0
    results_duplicate: int = 0
    verdicts_accepted: int = 0
    verdicts_closed: int = 0
    verdicts_duplicate: int = 0
    polls: int = 0
    poll_errors: int = 0
    forced_errors: int = 0
    reveals: int = 0
    reveals_refused: int = 0
    secrets_commits: int = 0
    pushes: int = 0
    standby: int = 0  # listings of a task left to a node before this one in its order


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one poll did: tasks listed, work started, tasks skipped as unreadable, and the
    poll error if there was one."""

    tasks: int = 0
    results: int = 0
    verdicts: int = 0
    skipped: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Counters:
    done: int = 0
    failed: int = 0
    verified: int = 0
    postprocess_errors: int = 0
    unreadable: int = 0
    results: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "closed": 0, "duplicate": 0}
    )
    verdicts: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "closed": 0, "duplicate": 0}
    )
    polls: int = 0
    poll_errors: int = 0
    pushes: int = 0
    standby: int = 0
    results_sent: int = 0
    forced_errors: int = 0
    reveals: int = 0
    reveals_refused: int = 0
    secrets_commits: int = 0


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()


def same_output(output: str, result: str) -> bool:
    """PROTOCOL 4.5: keccak(own output) == keccak(result), over the bytes the strings encode."""
    own = crypto.keccak(wire.decode_bytes_field(output))
    theirs = crypto.keccak(wire.decode_bytes_field(result))
    return own == theirs


def describe_output(output: str) -> str:
    """An output for a verdict's log line: its start, its length and its keccak."""
    digest = wire.hex0x(crypto.keccak(wire.decode_bytes_field(output)))
    return f"{describe(output)}, keccak {digest[:18]}..."


def copy_source(task: PendingTask, entry: VerifyEntry) -> ListedResult | None:
    """Another node's result of the task, earlier in rank than `entry`'s, with the same text:
    what a copier submits as its own (PROTOCOL 4.15)."""
    # both addresses are checksummed as they were read (`untrusted`): compared as they are
    rank = next((r.rank for r in task.results if r.submitter == entry.submitter), None)
    if rank is None:
        return None
    own = wire.decode_bytes_field(entry.result)
    for other in task.results:
        if (
            other.rank < rank
            and other.submitter != entry.submitter
            and wire.decode_bytes_field(other.result) == own
        ):
            return other
    return None


def forced_output(output: str) -> str:
    """A deliberately wrong result (PROTOCOL 4.13): the output's characters in reverse order
    with `FORCED_MARKER`, which no honest recomputation gives (it differs from `output`) and no
    model's distribution passes (a text with a marker only appended can pass `scored`, 4.15),
    within a task field's length."""
    room = MAX_FIELD_LENGTH - len(FORCED_MARKER)
    wrong = output[:room][::-1] + FORCED_MARKER
    if wrong == output:  # a full-length output that ends with the marker already
        wrong = output[:room] + FORCED_MARKER.upper()
    return wrong


class ResourceNode:
    """One resource node. It takes ownership of `client` and `backend` (closed in cleanup).

    `sleep` is handed to fault wrappers (slow), `rng` jitters the backoff and
    `exit_process` ends the process for the crash fault: all injectable for tests.
    """

    def __init__(
        self,
        client: InferchainClient,
        wallet: Wallet,
        backend: Backend,
        *,
        faults: Faults | None = None,
        config: WorkerConfig | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        exit_process: Callable[[int], Any] = os._exit,
    ) -> None:
        self.client = client
        self.wallet = wallet
        self.backend = backend
        self.faults = faults or Faults()
        self.config = config or WorkerConfig()
        self._compute_backend = self.faults.compute_backend(backend, sleep)
        self._verify_backend = self.faults.verify_backend(backend, sleep)
        self._rng = rng or random.Random()
        self._exit_process = exit_process
        self._serves_all = "*" in self.config.models
        self.submissions = SubmissionLog(wallet.address)
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        self._stopping = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        self._active: set[WorkKey] = set()
        self._cooldown: dict[WorkKey, tuple[int, float]] = {}
        self._inputs: dict[str, TaskInputs] = {}  # read once per task hash
        self._inputs_length = 0
        self._unreadable: dict[str, str] = {}  # task hash -> why it cannot be read
        self._reported: dict[tuple[str, ...], None] = {}  # problems logged once
        self._counters = _Counters()
        self.metrics = NodeMetrics()  # served at GET /metrics by the node's server
        self._failures = 0  # consecutive polls that could not reach the validator
        self.last_error: str | None = None
        self.params = self.config.params
        # Without --genesis the params are the chain's own, asked for once (getParams).
        self._params_known = self.config.genesis_hash is not None
        # The chain of secrets (PROTOCOL 4.13): the one on chain, the one being committed.
        self._secrets_state = SECRETS_UNKNOWN if self.params.canary_rate_bps else SECRETS_OFF
        self._secrets: SecretChain | None = None
        self._base = 0
        self._revealed_height = 0  # on chain, when last read
        self._next: SecretChain | None = None  # the epoch to commit next, derived once
        self._commit_polls = 0
        self._reveal_sent = -1  # the highest height of a reveal the validator admitted
        self._reveal_polls = 0
        self._computing: dict[str, int] = {}  # task hash -> createdHeight, results in the works
        self._turns = turns.Turns(wallet.address, 0.0)  # its standby set by _standby_s
        self._decided_own: dict[str, None] = {}  # tasks whose own result is known decided
        self._result_txs: dict[str, str] = {}  # task hash -> the txHash of the own result sent
        self._endpoint: str | None = None  # the URL to register, until the chain shows it
        self._pushing = False  # subscribed to pendingTasks
        self._events_from: int | None = None  # the next block whose settlements are read
        self._events_read_at = 0.0

    @property
    def address(self) -> str:
        return self.wallet.address

    # Lifecycle

    async def setup(self) -> None:
        """Load the submission log from the state directory (StateError if it is unreadable)."""
        path = None
        if self.config.state_dir is not None:
            path = state_path(self.config.state_dir, self.address)
        self.submissions = SubmissionLog.load(self.address, path)
        await setup_backend(self.backend)
        log.info(
            "resource node %s: backend %s, models %s, faults %s, %d tasks remembered%s",
            self.address,
            self.backend.name,
            ",".join(self.config.models),
            ",".join(self.faults.describe()) or "none",
            len(self.submissions),
            f" ({path})" if path else "",
        )
        if self.faults.silent:
            log.warning("fault silent: this node never submits results or verdicts")
        if self.faults.noreveal:
            log.warning("fault noreveal: this node never reveals its secrets")
        try:
            await self._learn_params()
        except TransportError as exc:
            log.info("the validator is not reachable yet (%s): its params are read at a poll", exc)
        if self._secrets_state == SECRETS_OFF:
            log.info("canaryRateBps 0: no forced errors, no secrets needed")
        else:
            log.info(
                "canaryRateBps %d: forced errors on; the secrets are read now or at a poll",
                self.params.canary_rate_bps,
            )
            await self._try_sync_secrets()

    async def _try_sync_secrets(self) -> None:
        """`_sync_secrets` when the validator may be away: the next poll tries again."""
        try:
            await self._sync_secrets()
        except TransportError as exc:
            log.info("the secrets are read at a later poll: validator unreachable (%s)", exc)

    async def run_forever(self) -> None:
        """Poll and act until `stop()`, and follow the pushed work; the validator being away
        only slows the polling."""
        follower: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    await self.poll()
                except Exception as exc:  # a bug or a full disk must not end the node
                    log.exception("poll failed unexpectedly")
                    self._counters.poll_errors += 1
                    self._back_off("poll failed unexpectedly", exc)
                await self._read_settlements()
                if follower is None and self.config.push:  # after a first poll: params known
                    follower = asyncio.get_running_loop().create_task(self._follow_pushes())
                delay = self.next_delay()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower

    async def _read_settlements(self) -> None:
        """At most every `settlement_read_interval`, the settlements of the blocks since the
        last read (up to 100 at a time, one batch of getBlockEvents): the slashes they hold,
        for the metrics. From the head at the first read: what came before is not counted."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._events_read_at < self.config.settlement_read_interval:
            return
        self._events_read_at = loop.time()
        try:
            head = await self.client.block_number()
            if self._events_from is None:
                self._events_from = head + 1
                return
            heights = list(range(self._events_from, min(head, self._events_from + 99) + 1))
            if not heights:
                return
            answers = await self.client.batch(
                [(api.GET_BLOCK_EVENTS, {"height": h}) for h in heights]
            )
        except (TransportError, RpcError):
            return  # read again later: the polls say what is wrong
        except Exception as exc:  # a validator's odd answer must not touch the node's work
            self._report_once(("settlements",), "settlements not read: %r", exc)
            return
        me = self.address.lower()
        for answer in answers:
            events = answer.get("events") if isinstance(answer, dict) else None
            for event in events if isinstance(events, list) else []:
                if not isinstance(event, dict) or event.get("event") != "settled":
                    continue
                settlement = event.get("settlement")
                slashed = settlement.get("slashed") if isinstance(settlement, dict) else None
                if not isinstance(slashed, list):
                    continue
                self.metrics.slashes_seen.inc(len(slashed))
                if any(
                    isinstance(x, dict) and str(x.get("address")).lower() == me for x in slashed
                ):
                    self.metrics.slashed.inc()
        self._events_from = heights[-1] + 1

    async def _follow_pushes(self) -> None:
        """Act on the work the validator pushes (pendingTasks) while it does; when it cannot
        (no /ws, a refusal, a close), poll as before and subscribe again later."""
        said_polling = False
        while not self._stopping.is_set():
            try:
                chain_id = await self.client.chain_id()
                params = pending_tasks_params(self.wallet, chain_id=chain_id)
                async with self.client.subscription("pendingTasks", **params) as pushed:
                    self._pushing = True
                    said_polling = False
                    log.info("work is pushed by %s (pendingTasks)", self.client.url)
                    async for note in pushed:
                        self._take_pushed(note)
            except (TransportError, RpcError) as exc:
                if self._pushing or not said_polling:
                    log.info("polling %s: no pendingTasks subscription (%s)", self.client.url, exc)
                said_polling = True
            except Exception:  # a bug must not end the node: it polls
                log.exception("the pendingTasks subscription failed unexpectedly")
            self._pushing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.push_retry)

    def _take_pushed(self, note: Any) -> None:
        """One pushed item: acted on as a one-task listing."""
        self._counters.pushes += 1
        work = note.get("work") if isinstance(note, dict) else None
        if work is None:
            self._report_once(("push",), "a pushed notification without work: %s", describe(note))
            return
        if note.get("inMempool") is True and self.params.canary_rate_bps:
            return  # whether a result is a forced error depends on its block: wait for it
        self._dispatch([work])

    def stop(self) -> None:
        self._stopping.set()

    async def cleanup(self) -> None:
        """Let work in flight finish (up to the shutdown grace), then close backend and client."""
        if self._jobs:
            _done, pending = await asyncio.wait(set(self._jobs), timeout=self.config.shutdown_grace)
            for job in pending:
                job.cancel()
            if pending:
                log.warning("cancelled %d jobs still running at shutdown", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        await close_backend(self.backend)
        await self.client.close()
        self.submissions.close()

    async def run_once(self) -> CycleReport:
        """One poll, then wait for all the work it started; and the settlements read."""
        await self._read_settlements()
        report, jobs = await self._poll()
        if jobs:
            await asyncio.gather(*jobs)
        return report

    async def act_on(self, listing: Any) -> CycleReport:
        """Act on `listing` as on an answer of queryPendingTasks, and wait for the work it
        started: what a poll does once the validator has answered."""
        await self._try_sync_secrets()
        report, jobs = self._take(listing)
        if jobs:
            await asyncio.gather(*jobs)
        return report

    async def poll(self) -> CycleReport:
        """One poll; the work it starts runs in the background."""
        report, _jobs = await self._poll()
        return report

    # Status

    def stats(self) -> NodeStats:
        c = self._counters
        return NodeStats(
            in_flight=len(self._active),
            done=c.done,
            failed=c.failed,
            verified=c.verified,
            postprocess_errors=c.postprocess_errors,
            unreadable=c.unreadable,
            results_accepted=c.results["accepted"],
            results_closed=c.results["closed"],
            results_duplicate=c.results["duplicate"],
            verdicts_accepted=c.verdicts["accepted"],
            verdicts_closed=c.verdicts["closed"],
            verdicts_duplicate=c.verdicts["duplicate"],
            polls=c.polls,
            poll_errors=c.poll_errors,
            pushes=c.pushes,
            standby=c.standby,
            forced_errors=c.forced_errors,
            reveals=c.reveals,
            reveals_refused=c.reveals_refused,
            secrets_commits=c.secrets_commits,
        )

    def info(self) -> dict[str, Any]:
        """The GET /status document of the node's HTTP server."""
        s = self.stats()
        return {
            "address": self.address,
            "models": list(self.config.models),
            "backend": self.backend.name,
            "faults": self.faults.describe(),
            "inFlight": s.in_flight,
            "done": s.done,
            "failed": s.failed,
            "verified": s.verified,
            "postprocessErrors": s.postprocess_errors,
            "unreadable": s.unreadable,
            "validator": self.client.url,
            "results": {
                "accepted": s.results_accepted,
                "closed": s.results_closed,
                "duplicate": s.results_duplicate,
            },
            "verdicts": {
                "accepted": s.verdicts_accepted,
                "closed": s.verdicts_closed,
                "duplicate": s.verdicts_duplicate,
            },
            "polls": s.polls,
            "pollErrors": s.poll_errors,
            "push": "subscribed" if self._pushing else ("polling" if self.config.push else "off"),
            "pushes": s.pushes,
            "standby": s.standby,
            "lastError": self.last_error,
            "forcedErrors": s.forced_errors,
            "reveals": {"sent": s.reveals, "refused": s.reveals_refused},
            "secrets": self.secrets_info(),
        }

    def secrets_info(self) -> dict[str, Any]:
        """Where the node's chain of secrets stands (PROTOCOL 4.13), for GET /status."""
        chain = self._secrets
        return {
            "state": self._secrets_state,
            "canaryRateBps": self.params.canary_rate_bps,
            "epoch": None if chain is None else chain.epoch,
            "base": None if chain is None else self._base,
            "length": None if chain is None else chain.length,
            "revealedHeight": None if chain is None else self._revealed_height,
            "commits": self._counters.secrets_commits,
        }

    def next_delay(self) -> float:
        """The poll interval (the longer one while work is pushed), or a jittered
        exponential backoff while the validator is away."""
        if self._failures == 0:
            pushed = self.config.pushed_poll_interval
            if self._pushing and pushed is not None:
                return max(self.config.poll_interval, pushed)
            return self.config.poll_interval
        base = min(
            self.config.backoff_max,
            self.config.backoff_initial * (1 << min(self._failures - 1, 30)),
        )
        return max(self.config.poll_interval, base * (0.5 + 0.5 * self._rng.random()))

    # Polling

    def _back_off(self, what: str, exc: Exception, *, polling: bool = True) -> None:
        """The validator is away or busy: back off. Failed submissions only make sure the next
        poll backs off; consecutive failed polls make the backoff grow."""
        self._failures = self._failures + 1 if polling else max(self._failures, 1)
        self.last_error = f"{what}: {exc}"
        quiet = self._failures not in (1, 10) and self._failures % 100 != 0
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "%s (attempt %d, backing off): %s", what, self._failures, exc)

    async def _learn_params(self) -> None:
        """Without --genesis: the params of the chain itself, once (getParams); a validator
        that does not serve them leaves the protocol's defaults, with a warning."""
        if self._params_known:
            return
        try:
            params = await self.client.get_params()
        except (RpcError, ValueError) as exc:
            log.warning("getParams unavailable (%s): assuming the protocol's defaults", exc)
            params = self.params
        self._params_known = True
        if params != self.params:
            self.params = params
            self._secrets_state = SECRETS_UNKNOWN if params.canary_rate_bps else SECRETS_OFF
        log.info(
            "the chain's params: canaryRateBps %d, verificationQuorum %d",
            params.canary_rate_bps,
            params.verification_quorum,
        )

    async def _check_chain(self) -> None:
        """Every poll: a chain that was reset (another genesis hash) is a new start, as the
        validator may have been replaced between two polls without the node seeing it down."""
        try:
            genesis = await self.client.genesis_hash()
        except RpcError as exc:
            log.debug("genesisHash unavailable (%s); cannot detect chain resets", exc)
            return
        expected = self.config.genesis_hash
        if expected is not None and genesis.lower() != expected.lower():
            self._report_once(
                ("genesis", genesis),
                "the validator's genesis hash is %s, the genesis the params were read from has %s:"
                " its params may differ",
                genesis,
                expected,
            )
        known = self.submissions.genesis_hash
        if known is None:
            self.submissions.record_genesis(genesis)
        elif known != genesis:
            log.warning(
                "the chain was reset (genesis hash %s, was %s): forgetting %d remembered tasks",
                genesis,
                known,
                len(self.submissions),
            )
            self.submissions.reset(genesis)
            self.client.forget_chain()
            self._forget_secrets()

    def announce(self, endpoint: str) -> None:
        """Register `endpoint` (the node's HTTP URL) on the chain at the next poll, if the
        chain shows another one for this node (PROTOCOL 7)."""
        self._endpoint = endpoint

    async def _register_endpoint(self) -> None:
        """A RegisterResourceNode with the models the chain has and the endpoint to announce,
        once the chain shows another endpoint; nothing for a node the chain does not list."""
        endpoint = self._endpoint
        if endpoint is None:
            return
        try:
            listed = await self.client.get_resource_nodes()
        except RpcError as exc:  # a validator without the method: nothing to register
            self._endpoint = None
            log.warning("getResourceNodes refused (%s): endpoint %s not registered", exc, endpoint)
            return
        entry = next(
            (n for n in listed if str(n.get("address", "")).lower() == self.address.lower()),
            None,
        )
        if entry is None:
            self._endpoint = None
            log.warning("this node is not registered on the chain: endpoint %s not sent", endpoint)
            return
        if entry.get("endpoint") != endpoint:
            try:
                await self.client.register_resource_node(
                    self.wallet, str(entry.get("models") or "*"), endpoint
                )
            except RpcError as exc:
                self._endpoint = None
                log.warning("registering endpoint %s refused: %s", endpoint, exc)
                return
            log.info("registered endpoint %s on the chain", endpoint)
        self._endpoint = None

    async def _poll(self) -> tuple[CycleReport, list[asyncio.Task[None]]]:
        self._counters.polls += 1
        try:
            await self._learn_params()
            await self._check_chain()
            await self._register_endpoint()
            await self._sync_secrets()
            tasks = await self.client.query_pending_tasks(self.wallet, limit=self.config.limit)
        except TransportError as exc:
            self._counters.poll_errors += 1
            self._back_off("validator unreachable", exc)
            return CycleReport(error=str(exc)), []
        except RpcError as exc:
            self._counters.poll_errors += 1
            # busy (-32007), or e.g. not eligible (-32005, jailed): do not hammer it either
            what = "validator busy" if exc.code == MEMPOOL_FULL else "queryPendingTasks refused"
            self._back_off(what, exc)
            return CycleReport(error=str(exc)), []
        return self._take(tasks)

    def _take(self, listing: Any) -> tuple[CycleReport, list[asyncio.Task[None]]]:
        """The answer of a poll: a list of tasks to act on, or the validator misbehaves."""
        if not isinstance(listing, list):
            self._counters.poll_errors += 1
            what = f"queryPendingTasks answered {describe(listing)}, not a list"
            self._back_off(what, ValueError(describe(listing)))
            return CycleReport(error=what), []
        if self._failures:
            log.info("validator %s reachable again", self.client.url)
        self._failures = 0
        return self._dispatch(listing)

    def _dispatch(self, listing: list[Any]) -> tuple[CycleReport, list[asyncio.Task[None]]]:
        """Start the work of each task of the listing. A task is read and planned on its own:
        whatever one holds (PendingTask, Unreadable) concerns that task only."""
        jobs: list[asyncio.Task[None]] = []
        if len(listing) > self.config.limit:
            self._report_once(
                ("listing", "limit"),
                "queryPendingTasks listed %d tasks, more than the %d asked for: acting on the "
                "first %d",
                len(listing),
                self.config.limit,
                self.config.limit,
            )
        results = verdicts = skipped = 0
        reveals: dict[str, int] = {}  # task hash -> createdHeight, of the tasks that say reveal
        for item in listing[: self.config.limit]:
            try:
                task = self._read(item)
                if task is not None and task.reveal and task.created_height is not None:
                    reveals[task.task_hash] = task.created_height
                if task is None:
                    skipped += 1
                elif self.faults.silent:
                    log.debug("silent: ignoring task %s", task.task_hash)
                elif self._serves(task):
                    started = self._plan(task, jobs)
                    results += started[0]
                    verdicts += started[1]
            except Exception as exc:  # a bug, not a field: confined to this task all the same
                where = listed_hash(item) or describe(item)
                self._report_once(
                    ("bug", where), "task %s: not handled: %r", where, exc, exc_info=True
                )
                skipped += 1
        if reveals and ("reveal",) not in self._active:
            jobs.append(self._start(("reveal",), partial(self._reveal, reveals)))
        report = CycleReport(
            tasks=len(listing), results=results, verdicts=verdicts, skipped=skipped
        )
        return report, jobs

    def _read(self, item: Any) -> PendingTask | None:
        """The listed task read (its inputs once per task hash), or None when it cannot be
        read: logged the first time, skipped without a word afterwards."""
        task_hash = listed_hash(item)
        if task_hash is not None and task_hash in self._unreadable:
            return None
        inputs = self._inputs.get(task_hash) if task_hash is not None else None
        try:
            task = decode_task(item, inputs)
        except Unreadable as exc:
            self._skip(task_hash, item, exc)
            return None
        if inputs is None:
            self._keep_inputs(task.task_hash, task.inputs)
        for entry_name, reason in task.bad_entries:
            self._report_once(
                ("entry", task.task_hash, entry_name),
                "task %s: verify entry of %s left out: cannot read it: %s",
                task.task_hash,
                entry_name,
                reason,
            )
        return task

    def _skip(self, task_hash: str | None, item: Any, exc: Unreadable) -> None:
        if task_hash is not None:
            what = task_hash
        elif isinstance(item, dict):
            what = f"with taskHash {describe(item.get('taskHash'))}"
        else:
            what = describe(item)
        self._set_aside(task_hash, what, "cannot read it", exc)

    def _set_aside(self, task_hash: str | None, what: str, why: str, exc: Exception) -> None:
        """A task this node will not work on: remembered (when it has a hash), logged once,
        counted with the unreadable."""
        if task_hash is not None:
            self._remember(self._unreadable, task_hash, str(exc))
        if self._report_once(("task", what), "task %s skipped: %s: %s", what, why, exc):
            self._counters.unreadable += 1
            self.last_error = f"task {what} skipped: {exc}"

    def _report_once(
        self, key: tuple[str, ...], message: str, *args: Any, exc_info: bool = False
    ) -> bool:
        """Log a warning the first time `key` comes up (of the last MAX_REMEMBERED); whether
        it was logged now. The line is formatted here: it is the one line of its subject, so
        a filter that throttles repeats of a template must not take it for a repeat."""
        if key in self._reported:
            return False
        self._remember(self._reported, key, None)
        log.warning(message % args, exc_info=exc_info)
        return True

    def _keep_inputs(self, task_hash: str, inputs: TaskInputs) -> None:
        """Keep a task's inputs, so the next listing of it is not read again: at most
        MAX_REMEMBERED tasks and INPUTS_BUDGET characters, the oldest forgotten first."""
        self._inputs_length += inputs.length
        self._inputs[task_hash] = inputs
        while self._inputs_length > INPUTS_BUDGET or len(self._inputs) > MAX_REMEMBERED:
            oldest = next(iter(self._inputs))
            self._inputs_length -= self._inputs.pop(oldest).length

    @staticmethod
    def _remember(memory: dict[Any, Any], key: Any, value: Any) -> None:
        while len(memory) >= MAX_REMEMBERED:
            del memory[next(iter(memory))]
        memory[key] = value

    def _plan(self, task: PendingTask, jobs: list[asyncio.Task[None]]) -> tuple[int, int]:
        """Start the result and the verdicts the task asks of this node and it has not given;
        how many of each were started."""
        task_hash = task.task_hash
        started = len(jobs)
        results = 0
        now = asyncio.get_running_loop().time()
        submitters = {r.submitter for r in task.results} | {v.submitter for v in task.verify}
        for submitter in submitters:  # they compute this model
            self._turns.saw(submitter, task.inputs.model, now)
        if self._secrets_state == SECRETS_ROLLOVER:
            return 0, 0  # no new task until the next chain of secrets is committed
        outcome = self.submissions.result_outcome(task_hash)
        if task.compute and outcome == "accepted":  # listed again: was it taken?
            recheck: WorkKey = ("recheck", task_hash)
            if self._may_start(recheck):
                self._start(recheck, partial(self._recheck_result, task_hash))
        if (
            task.compute
            # A result answered closed (the slots were full), or accepted and then not taken
            # (`_recheck_result`), is computed again when a rejected result opens its slot.
            and outcome in (None, "closed")
            and (not self.faults.copy or self._copied(task) is not None)
            and self._may_compute(task)
            and self._my_turn(task, now)
        ):
            key: WorkKey = ("result", task_hash)
            if self._may_start(key):
                if task.created_height is not None:  # a reveal from now on stays below it
                    self._computing[task_hash] = task.created_height
                jobs.append(self._start(key, partial(self._compute, key, task)))
                results = 1
        for entry in task.verify:
            if entry.submitter == self.address:
                continue  # never verify our own result (PROTOCOL 4.5)
            key = ("verdict", task_hash, entry.submitter.lower())
            if self.submissions.has_verdict(task_hash, entry.submitter) or not self._may_start(key):
                continue
            jobs.append(self._start(key, partial(self._verify, key, task, entry)))
        return results, len(jobs) - started - results

    def _my_turn(self, task: PendingTask, now: float) -> bool:
        """Whether the nodes before this one in the task's order had their time by `now`
        (`resource_node.turns`); the task is listed again at the next poll if not."""
        self._turns.standby_s = self._standby_s()
        taken = [r.submitter for r in task.results]
        free = task.inputs.target_count - len(taken)
        if self._turns.wait(task.task_hash, task.inputs.model, taken, free, now) <= 0:
            return True
        self._counters.standby += 1
        return False

    def _standby_s(self) -> float:
        """The standby period: `standby_blocks` block times (automine: of STANDBY_BLOCK_S)."""
        block_ms = self.params.block_time_ms
        return self.config.standby_blocks * (block_ms / 1000 if block_ms > 0 else STANDBY_BLOCK_S)

    async def _recheck_result(self, task_hash: str) -> None:
        """The task is listed to compute though its result was accepted: when that result
        is not pending nor in the task any more (another node's filled the slot in the block
        and it was dropped, or it came late), it counts as closed, so that the node computes
        again once the slot is open. The validator's word alone changes nothing."""
        tx_hash = self._result_txs.get(task_hash)
        if tx_hash is None:
            return
        record = await self.client.get_tx(tx_hash)
        if record is None or record.get("status") == "late":
            log.info(
                "result for task %s was not taken: computed again when its slot opens", task_hash
            )
            self.submissions.record_result(task_hash, "closed")

    def _serves(self, task: PendingTask) -> bool:
        model = task.inputs.model
        serves = getattr(self.backend, "serves", None)
        if serves is not None and not serves(model):
            return False  # another model than the one its server serves
        return self._serves_all or model is None or model in self.config.models

    def _may_start(self, key: WorkKey) -> bool:
        if key in self._active:
            return False
        cooling = self._cooldown.get(key)
        return cooling is None or asyncio.get_running_loop().time() >= cooling[1]

    def _start(self, key: WorkKey, work: Work) -> asyncio.Task[None]:
        self._active.add(key)
        job = asyncio.create_task(self._guarded(key, work))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    async def _guarded(self, key: WorkKey, work: Work) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not stop the node: count it, keep going
            self._report_once(
                ("unexpected", *key),
                "%s for task %s failed unexpectedly (retried after its cooldown, not logged again)",
                key[0],
                key[1] if len(key) > 1 else "-",
                exc_info=True,
            )
            self._fail(key, f"unexpected {exc!r}")
        finally:
            self._active.discard(key)

    def _fail(self, key: WorkKey, reason: str) -> None:
        self._counters.failed += 1
        failures = self._cooldown.get(key, (0, 0.0))[0] + 1
        delay = min(self.config.retry_max, self.config.retry_initial * (1 << min(failures - 1, 30)))
        now = asyncio.get_running_loop().time()
        if len(self._cooldown) >= MAX_COOLDOWNS:  # forget work whose cooldown has passed
            self._cooldown = {k: v for k, v in self._cooldown.items() if v[1] > now}
        self._cooldown[key] = (failures, now + delay)
        self.last_error = f"{key[0]} for task {key[1] if len(key) > 1 else '-'}: {reason}"

    def _succeed(self, key: WorkKey) -> None:
        self._cooldown.pop(key, None)

    # Seeds and checks

    def _seed(self, task_hash: str, node: str, reported: str | None) -> int:
        """The seed of `node` for the task, computed here (PROTOCOL 4.4); a different seed
        reported by the validator (`untrusted.reported_seed`) is logged and ignored."""
        seed = crypto.task_seed(bytes.fromhex(task_hash[2:]), node)
        if reported is not None and reported != str(seed):
            log.warning(
                "task %s: the validator reports seed %s for %s, PROTOCOL 4.4 gives %d; using %d",
                task_hash,
                reported,
                node,
                seed,
                seed,
            )
        return seed

    def _check_postprocess(self, task: PendingTask, result: str, whose: str) -> None:
        """Count and log a result that does not fit the task's schema. The result is held to
        the bounds before a JSON schema has it parsed."""
        task_schema = task.inputs.schema
        try:
            if schema_kind(task_schema) == JSON:
                check_field(result, "result")
            error = postprocess(task_schema, result).error
        except (ValueError, RecursionError) as exc:  # Unreadable is a ValueError
            error = f"cannot read it: {exc}"
        if error is not None:
            self._counters.postprocess_errors += 1
            log.warning(
                "task %s: %s result does not fit its schema %s: %s",
                task.task_hash,
                whose,
                describe(task_schema),
                error,
            )

    # Work

    async def _infer(self, backend: Backend, key: WorkKey, request: InferenceRequest) -> str | None:
        try:
            async with self._semaphore:  # the backend's calls, not the sends, are bounded
                started = time.perf_counter()
                output = await backend.infer(request)
        except TaskError as exc:
            self._refuse(key, exc)
            return None
        except BackendError as exc:
            log.warning("%s for task %s: backend failed: %s", key[0], key[1], exc)
            self._fail(key, f"backend: {exc}")
            return None
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        return output

    def _refuse(self, key: WorkKey, exc: TaskError) -> None:
        """A task this node's backend cannot do (an option it cannot pass): skipped from now
        on, neither computed nor verified, and logged once (counted with the unreadable)."""
        self._set_aside(key[1], key[1], "this node cannot do it", exc)

    def _rejected(self, key: WorkKey, exc: RpcError | TransportError | ValueError) -> None:
        """A submission that got no true/false/-32006 answer."""
        if isinstance(exc, TransportError):
            self._back_off(f"submitting {key[0]} for task {key[1]}", exc, polling=False)
        elif isinstance(exc, RpcError) and exc.code == MEMPOOL_FULL:
            what = f"submitting {key[0]} for task {key[1]}: validator busy"
            self._back_off(what, exc, polling=False)
        else:
            log.warning("%s for task %s rejected: %s", key[0], key[1], exc)
            self._fail(key, str(exc))

    async def _send(self, key: WorkKey, submission: Awaitable[bool]) -> str | None:
        """Await a result or verdict submission: "accepted" (true), "closed" (false) or
        "duplicate" (-32006: it is on chain already); None when it was refused or lost."""
        try:
            accepted = await submission
        except RpcError as exc:
            if exc.code == DUPLICATE_SUBMISSION:
                return "duplicate"
            self._rejected(key, exc)
            return None
        except (TransportError, ValueError) as exc:
            self._rejected(key, exc)
            return None
        return "accepted" if accepted else "closed"

    async def _compute(self, key: WorkKey, task: PendingTask) -> None:
        try:
            await self._compute_and_send(key, task)
        finally:
            self._computing.pop(task.task_hash, None)

    async def _compute_and_send(self, key: WorkKey, task: PendingTask) -> None:
        task_hash = task.task_hash
        copied = self._copied(task) if self.faults.copy else None
        if copied is not None:
            output: str | None = copied
        elif self.faults.copy:
            return  # nothing to copy any more
        else:
            seed = self._seed(task_hash, self.address, task.seed)
            output = await self._infer(self._compute_backend, key, request_for(task.inputs, seed))
        if output is None:
            return
        forced = self._is_forced(task)
        if forced:
            output = forced_output(output)
        outcome = await self._send(
            key, self.client.submit_inference_result(self.wallet, task_hash, output)
        )
        if outcome is None:
            return
        if outcome == "accepted":  # its hash, to tell later whether a block took it (reveals)
            msg = SubmitInferenceResult(bytes.fromhex(task_hash[2:]), self.address, output)
            chain_id = await self.client.chain_id()
            tx_hash = presign(msg, chain_id, self.wallet.private_key).tx_hash
            self._remember(self._result_txs, task_hash, tx_hash)
        self.submissions.record_result(task_hash, outcome, task.created_height)
        self._succeed(key)
        if not forced:
            self._check_postprocess(task, output, "own")
        self._counters.done += 1
        self._counters.results[outcome] += 1
        self.metrics.tasks_computed.inc()
        if forced and outcome == "accepted":
            self._counters.forced_errors += 1
        log.info(
            "result for task %s: %s (%d chars)%s%s",
            task_hash,
            outcome,
            len(output),
            " (copied)" if copied is not None else "",
            " (a forced error: deliberately wrong, PROTOCOL 4.13)" if forced else "",
        )
        if outcome != "duplicate":
            self._counters.results_sent += 1
            self._maybe_crash()

    async def _verify(self, key: WorkKey, task: PendingTask, entry: VerifyEntry) -> None:
        task_hash, submitter, result = task.task_hash, entry.submitter, entry.result
        if self.faults.lazy:
            valid, why = True, "lazy: not computed"
        else:
            seed = self._seed(task_hash, submitter, entry.seed)
            verdict = await self._judge(key, task, entry, request_for(task.inputs, seed))
            if verdict is None:
                return
            valid, why = verdict
        outcome = await self._send(
            key, self.client.submit_verification(self.wallet, task_hash, submitter, valid)
        )
        if outcome is None:
            return
        self.submissions.record_verdict(task_hash, submitter, valid, outcome)
        self._succeed(key)
        self._check_postprocess(task, result, f"{submitter}'s")
        self._counters.verified += 1
        self._counters.verdicts[outcome] += 1
        self.metrics.verdict(valid)
        log.info(
            "verdict on %s's result for task %s: valid=%s, %s; %s",
            submitter,
            task_hash,
            str(valid).lower(),
            outcome,
            why,
        )

    async def _judge(
        self, key: WorkKey, task: PendingTask, entry: VerifyEntry, request: InferenceRequest
    ) -> tuple[bool, str] | None:
        """The verdict on `entry` and why, by the task's verification method (PROTOCOL
        4.15); None when it cannot be given now (the backend failed: retried later, or the
        task is one this node cannot do)."""
        result = entry.result
        # A backend without a distribution to score against (the deterministic model) verifies
        # every task exactly: its distribution is one output per seed.
        score = getattr(self.backend, "score", None)
        verify_method = getattr(self.backend, "verify_method", None)
        try:
            method = "exact" if score is None or verify_method is None else verify_method(request)
        except TaskError as exc:
            self._refuse(key, exc)
            return None
        copy_of = copy_source(task, entry) if method == "scored" else None
        own: str | None = None
        if method == "exact" or (copy_of is None and getattr(self.backend, "fast_path", False)):
            own = await self._infer(self._verify_backend, key, request)
            if own is None:
                return None
            if same_output(own, result):
                return True, f"own output identical ({describe_output(own)}), {method}"
            if method == "exact":
                return False, f"own output differs: {describe_output(own)}, exact"
        assert score is not None
        try:
            async with self._semaphore:
                judgement = await score(request, result, own)
        except TaskError as exc:
            self._refuse(key, exc)
            return None
        except BackendError as exc:
            log.warning("verdict for task %s: scoring failed: %s", key[1], exc)
            self._fail(key, f"scoring: {exc}")
            return None
        why = (
            f"scored: {judgement.reason} (tokens {judgement.tokens}, outside {judgement.outside}, "
            f"mean log-prob {judgement.mean_logprob:.3f} against {judgement.expected_logprob:.3f}, "
            f"end {judgement.ending})"
        )
        if own is not None:
            why += f"; own output {describe_output(own)}"
        if judgement.valid and copy_of is not None and judgement.log_chance < COPY_LOG_CHANCE:
            return False, (
                f"a copy of {copy_of.submitter}'s result of rank {copy_of.rank}: an independent "
                f"sample is this text with probability e^{judgement.log_chance:.1f}; {why}"
            )
        return judgement.valid, why

    def _copied(self, task: PendingTask) -> str | None:
        """Fault copy: another node's result of the task, as the listing shows it (in its
        executionInfo, or a verify entry); the copier computes nothing itself."""
        listed = [(r.submitter, r.result) for r in task.results]
        for submitter, result in [*listed, *((e.submitter, e.result) for e in task.verify)]:
            if submitter.lower() != self.address.lower():
                return result
        return None

    # Forced errors and the chain of secrets (PROTOCOL 4.13)

    def _margin(self) -> int:
        """Heights a chain of secrets must still reach past a task's creation to take it."""
        p = self.params
        return (
            p.compute_deadline_blocks
            + p.verify_deadline_blocks
            + p.reveal_deadline_blocks
            + ROLLOVER_MARGIN
        )

    def _may_compute(self, task: PendingTask) -> bool:
        """Whether the node can tell its result in the task is a forced error, and may make it:
        its chain of secrets is on chain, reaches the task's height with room for its deadlines,
        and no secret of that height is revealed yet."""
        if self._secrets_state == SECRETS_OFF:
            return True
        chain, height = self._secrets, task.created_height
        if self._secrets_state != SECRETS_READY or chain is None:
            log.debug("task %s: not computing until the secrets are on chain", task.task_hash)
            return False
        if height is None:
            self._report_once(
                ("height", task.task_hash),
                "task %s: not computed: its createdHeight is not a height, so the node cannot "
                "tell whether its result is a forced error",
                task.task_hash,
            )
            return False
        if height <= self._base:
            return False  # committed after the task: the chain does not let it compute (4.13)
        if height <= max(self._revealed_height, self._reveal_sent):
            self._report_once(
                ("revealed", task.task_hash),
                "task %s: not computed: the secret of its height %d is revealed already",
                task.task_hash,
                height,
            )
            return False
        # Stop taking tasks a task's life before the end, so that the node's open ones settle
        # before the next epoch is needed; never more than half the chain (deadlines longer
        # than the chain would otherwise stop it for good).
        if height - self._base > chain.length - min(self._margin(), chain.length // 2):
            self._secrets_state = SECRETS_ROLLOVER
            log.info(
                "the chain of secrets of epoch %d (from height %d, length %d) runs out: no new "
                "task until nothing of this node is unsettled, then the next epoch is committed",
                chain.epoch,
                self._base,
                chain.length,
            )
            return False
        return True

    def _is_forced(self, task: PendingTask) -> bool:
        """PROTOCOL 4.13: whether this node's result in the task must be deliberately wrong."""
        chain, height = self._secrets, task.created_height
        if self._secrets_state == SECRETS_OFF or chain is None or height is None:
            return False
        if not chain.reaches(height, self._base):  # another chain since: the task refuses it
            return False
        secret = chain.secret(height, self._base)
        task_hash = bytes.fromhex(task.task_hash[2:])
        return crypto.is_forced_error(secret, task_hash, self.params.canary_rate_bps)

    def _forget_secrets(self) -> None:
        """The chain was reset: read the secrets from it again."""
        if self._secrets_state != SECRETS_OFF:
            self._secrets_state = SECRETS_UNKNOWN
        self._secrets = self._next = None
        self._base = self._revealed_height = 0
        self._reveal_sent = -1
        self._decided_own.clear()

    async def _own_secrets(self) -> tuple[bool, Secrets | None]:
        """Whether the node is registered, and its secrets as the chain shows them."""
        for entry in await self.client.get_resource_nodes():
            if isinstance(entry, dict) and str(entry.get("address", "")).lower() == (
                self.address.lower()
            ):
                return True, listed_secrets(entry.get("secrets"))
        return False, None

    def _derive(self, epoch: int, length: int) -> Awaitable[SecretChain]:
        return asyncio.to_thread(SecretChain.derive, self.wallet.private_key, epoch, length)

    async def _sync_secrets(self) -> None:
        """Before a poll: find the node's chain of secrets on chain, or commit one (or the next
        one, when it ran out). Transport errors go to the poll; a refusal is logged once and
        tried again at the next poll."""
        if self._secrets_state in (SECRETS_OFF, SECRETS_READY):
            return
        try:
            registered, record = await self._own_secrets()
        except RpcError as exc:
            self._report_once(("secrets", "read"), "getResourceNodes refused: %s", exc)
            return
        except ValueError as exc:
            self._report_once(("secrets", "bad"), "getResourceNodes: cannot read it: %s", exc)
            return
        if not registered:
            self._report_once(
                ("secrets", "unregistered"),
                "%s is not a registered resource node: no secrets to commit yet",
                self.address,
            )
            return
        if self._secrets_state == SECRETS_COMMITTING:
            pending = self._next
            if record is not None and pending is not None and record.head == pending.head:
                self._use(pending, record)
                return
            self._commit_polls += 1
            if self._commit_polls < COMMIT_PATIENCE:
                return
            log.warning("the secrets committed are not on chain after %d polls", COMMIT_PATIENCE)
            self._secrets_state = SECRETS_UNKNOWN
        if self._secrets_state == SECRETS_UNKNOWN and record is not None:
            stored = self.submissions.secrets_epoch
            tries = [
                (stored, self.config.secret_chain_length),
                (stored, crypto.SECRET_CHAIN_LENGTH),
            ]
            tries.append((0, crypto.SECRET_CHAIN_LENGTH))
            for epoch, length in dict.fromkeys(tries):
                if epoch is None:
                    continue
                chain = await self._derive(epoch, length)
                if chain.head == record.head:
                    self._use(chain, record)
                    return
            log.info(
                "the chain holds secrets of %s that are not of epoch %s or 0: committing new ones",
                self.address,
                stored,
            )
        await self._commit_next()

    def _use(self, chain: SecretChain, record: Secrets) -> None:
        self._secrets, self._next = chain, None
        self._base, self._revealed_height = record.base, record.revealed_height
        self._reveal_sent = -1
        self._secrets_state = SECRETS_READY
        log.info(
            "secrets of epoch %d on chain from height %d (length %d, revealed up to %d)",
            chain.epoch,
            record.base,
            chain.length,
            record.revealed_height,
        )

    async def _commit_next(self) -> None:
        """Send CommitSecrets with a fresh epoch: above the last the state file names and above
        the chain's height (so it is fresh also when the state file is lost), saved first."""
        if self._next is None:
            height = await self.client.block_number()
            epoch = max(height, self.submissions.secrets_epoch or 0) + 1
            self._next = await self._derive(epoch, self.config.secret_chain_length)
        chain = self._next
        self.submissions.record_secrets_epoch(chain.epoch)
        try:
            await self.client.commit_secrets(self.wallet, chain.head)
        except RpcError as exc:
            self.last_error = f"commitSecrets: {exc}"
            self._report_once(
                ("commit", str(chain.epoch), str(exc.code)),
                "commitSecrets of epoch %d refused (tried again at every poll): %s",
                chain.epoch,
                exc,
            )
            return
        self._counters.secrets_commits += 1
        self._commit_polls = 0
        self._secrets_state = SECRETS_COMMITTING
        log.info("committing the secrets of epoch %d (head 0x%s)", chain.epoch, chain.head.hex())

    async def _reveal(self, listed: dict[str, int]) -> None:
        """Reveal the secret the listed decided results wait for: the highest of their
        heights below every own result still undecided, at most MAX_REVEAL_STEPS above the
        revealed one (the rest at the next polls)."""
        if self.faults.noreveal:
            self._report_once(
                ("noreveal",), "fault noreveal: not revealing the secrets results wait for"
            )
            return
        chain = self._secrets
        if chain is None or self._secrets_state not in (SECRETS_READY, SECRETS_ROLLOVER):
            return
        try:
            _registered, record = await self._own_secrets()
        except (RpcError, TransportError, ValueError) as exc:
            log.debug("reveal: cannot read the node's secrets: %s", exc)
            return
        if record is None or record.head != chain.head:
            self._report_once(
                ("reveal", "head"),
                "reveal: the chain holds other secrets than epoch %d",
                chain.epoch,
            )
            return
        self._revealed_height = record.revealed_height
        if self._reveal_sent > record.revealed_height:
            self._reveal_polls += 1
            if self._reveal_polls < REVEAL_PATIENCE:
                return  # the last reveal is on its way to a block
        top = [
            h
            for h in listed.values()
            if h > record.revealed_height and chain.reaches(h, record.base)
        ]
        if not top:
            return
        try:
            limit = await self._reveal_limit(record.revealed_height, max(top), set(listed))
        except (RpcError, TransportError) as exc:
            log.debug("reveal: cannot read the node's own tasks: %s", exc)
            return
        allowed = [h for h in top if h < limit]
        if not allowed:
            log.debug("reveal: waiting for own results created at or below %d to be decided", limit)
            return
        height = min(max(allowed), record.revealed_height + MAX_REVEAL_STEPS)
        try:
            await self.client.reveal_secret(self.wallet, height, chain.secret(height, record.base))
        except (RpcError, TransportError) as exc:
            self._counters.reveals_refused += 1
            self.last_error = f"revealSecret of height {height}: {exc}"
            self._report_once(
                ("reveal", str(height)),
                "revealSecret of height %d refused (tried again at the next poll): %s",
                height,
                exc,
            )
            return
        self._reveal_sent, self._reveal_polls = height, 0
        self._counters.reveals += 1
        waiting = sum(1 for h in listed.values() if h <= height)
        log.info("revealed the secret of height %d: %d listed results wait for it", height, waiting)

    async def _reveal_limit(self, revealed: int, top: int, decided: set[str]) -> float:
        """The lowest createdHeight above `revealed`, up to `top`, of an own result that may
        still be undecided (in the works, in the mempool, or on chain undecided): a reveal
        must stay below it. `decided` are the tasks listed as waiting for a reveal.

        The own results not known to be decided are read lowest first, DECIDED_BATCH tasks
        in one batch of queryTask, until one is found undecided: a higher one cannot lower
        the limit. Under load a node has a few hundred results since its last reveal; read
        one call at a time they held its reveals back by seconds."""
        heights = [h for h in self._computing.values() if revealed < h <= top]
        unknown = sorted(
            (height, task_hash)
            for task_hash, height in self.submissions.results_since(revealed).items()
            if height <= top and task_hash not in decided and task_hash not in self._decided_own
        )
        for start in range(0, len(unknown), DECIDED_BATCH):
            chunk = unknown[start : start + DECIDED_BATCH]
            if heights and chunk[0][0] >= min(heights):
                break  # none of these can lower the limit
            answers = await self.client.batch(
                [(api.QUERY_TASK, {"taskHash": task_hash}) for _, task_hash in chunk]
            )
            undecided = False
            for (height, task_hash), answer in zip(chunk, answers, strict=True):
                if await self._own_result_decided(task_hash, answer):
                    self._remember(self._decided_own, task_hash, None)
                else:
                    heights.append(height)
                    undecided = True
            if undecided:
                break
        return min(heights, default=float("inf"))

    async def _own_result_decided(self, task_hash: str, task: Any) -> bool:
        """Whether the node's result for `task_hash` is decided, from its queryTask answer
        `task` (the RpcError it got, or the task)."""
        if isinstance(task, RpcError):
            return True  # not on this chain: nothing of it to tell
        if not isinstance(task, dict):
            return False
        if task.get("status") in ("verified", "failed"):
            return True
        for entry in task.get("executionInfo") or []:
            if isinstance(entry, dict) and str(entry.get("resourceNode", "")).lower() == (
                self.address.lower()
            ):
                return entry.get("status") in (2, 3, 4)  # verified, rejected, unverified
        # Not in the task: still in the mempool, or never to be (refused late in a block).
        # Only a pending one may still come; one whose hash this run does not know (sent
        # before a restart, or answered as a duplicate) may, until its task is settled.
        tx_hash = self._result_txs.get(task_hash)
        if tx_hash is None:
            return False
        try:
            tx = await self.client.get_tx(tx_hash)
        except TransportError:
            return False
        return tx is None or tx.get("status") != "pending"

    def _maybe_crash(self) -> None:
        limit = self.faults.crash_after
        if limit is not None and self._counters.results_sent >= limit:
            log.error("fault crash:%d: exiting with status %d", limit, CRASH_EXIT_CODE)
            _flush_logs()
            self._exit_process(CRASH_EXIT_CODE)
