"""The job engine behind Infernet's `/api/jobs` routes (PROTOCOL 7.2): a JobRequest checked
as Infernet's guardian checks it, its containers run in sequence, the job kept in the node's
job store.

A job belongs to the client that made it, by the client's address (its IP, as Infernet's
`remote_addr`). It is recorded `running` before its id is answered, rewritten after each stage
and once it ends, so it survives a restart; a job still `running` when the node starts again
was cut short by the stop, and ends `failed` with an error from the stage that was running,
saying so (`recover`), the stages before it kept. At most
`max_running` jobs run at a time: past that `Busy`, which the server answers 503 with a
Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from resource_node.containers import Container, RateLimit, StageError, job_seed, render_input
from resource_node.jobstore import JobStore
from resource_node.untrusted import describe

log = logging.getLogger(__name__)

JOB_PREFIX = b"infernet/job/"
OWNER_PREFIX = b"infernet/owner/"
MAX_STAGES = 16
MAX_BATCH = 100
MAX_IDS = 100
BUSY_RETRY_AFTER_S = 1
STOPPED_ERROR = "the node stopped while the job ran"
# How long a finished job's task is kept before only the store has it.
Clock = Callable[[], float]


class JobStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class JobRequestError(Exception):
    """A JobRequest the node refuses: Infernet's `{error, params}`."""

    def __init__(self, error: str, **params: Any) -> None:
        super().__init__(error)
        self.error = error
        self.params = params

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error}
        if self.params:
            out["params"] = self.params
        return out


class Busy(Exception):
    """Every slot for running jobs is taken; try again after `retry_after` seconds."""

    def __init__(self, running: int, retry_after: int = BUSY_RETRY_AFTER_S) -> None:
        super().__init__(f"{running} jobs are running, the most this node runs at a time")
        self.retry_after = retry_after


class UnknownJobs(Exception):
    """Ids this client has no job of."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"no job with id {', '.join(ids)} for this client")
        self.ids = ids


class RateLimited(Exception):
    def __init__(self, what: str, limit: RateLimit, retry_after: float) -> None:
        super().__init__(
            f"too many requests{what}: at most {limit.num_requests} per {limit.period:g} s"
        )
        self.retry_after = max(1, int(retry_after + 0.999))


@dataclass(slots=True)
class RateLimiter:
    """A sliding window per key: at most `limit.num_requests` in any `limit.period`."""

    limit: RateLimit
    clock: Clock = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def hit(self, key: str, what: str = "") -> None:
        """Count one request of `key`; RateLimited (and nothing counted) past the limit."""
        now = self.clock()
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - self.limit.period:
            window.popleft()
        if len(window) >= self.limit.num_requests:
            raise RateLimited(what, self.limit, window[0] + self.limit.period - now)
        window.append(now)
        if len(self._seen) > 4096:  # forget keys whose windows are empty
            for stale in [k for k, w in self._seen.items() if not w]:
                del self._seen[stale]


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A checked JobRequest."""

    containers: tuple[str, ...]
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored: its ContainerResults, the last one its result."""

    id: str
    owner: str
    containers: tuple[str, ...]
    status: JobStatus
    results: tuple[dict[str, Any], ...] = ()
    created: float = 0.0
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "containers": list(self.containers),
            "status": self.status.value,
            "results": list(self.results),
            "created": self.created,
            "finished": self.finished,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Job:
        return cls(
            id=value["id"],
            owner=value["owner"],
            containers=tuple(value["containers"]),
            status=JobStatus(value["status"]),
            results=tuple(value["results"]),
            created=value["created"],
            finished=value["finished"],
        )

    def job_result(self, intermediate: bool) -> dict[str, Any]:
        """Infernet's JobResult."""
        done = self.status is not JobStatus.RUNNING
        return {
            "id": self.id,
            "status": self.status.value,
            "result": self.results[-1] if done and self.results else None,
            "intermediate_results": list(self.results[:-1] if done else self.results)
            if intermediate
            else [],
        }


async def finish(tasks: Iterable[asyncio.Task[None]], grace: float) -> None:
    """Let `tasks` end within `grace` seconds, then cancel the rest and wait for them."""
    running = list(tasks)
    if not running:
        return
    _done, pending = await asyncio.wait(running, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def job_key(job_id: str) -> bytes:
    return JOB_PREFIX + job_id.encode()


def owner_key(job: Job) -> bytes:
    stamp = int(job.created * 1e6).to_bytes(8, "big")
    return OWNER_PREFIX + job.owner.encode() + b"/" + stamp + job.id.encode()


class JobEngine:
    """Checks, runs and keeps the node's off-chain jobs."""

    def __init__(
        self,
        containers: Mapping[str, Container],
        store: JobStore,
        *,
        max_running: int,
        clock: Clock = time.time,
    ) -> None:
        self.containers = dict(containers)
        self.store = store
        self.max_running = max_running
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._limiters = {
            cid: RateLimiter(c.config.rate_limit)
            for cid, c in self.containers.items()
            if c.config.rate_limit is not None
        }
        self.reserved = 0  # slots taken by other work on the containers (Ocean jobs)

    # Start and stop

    def recover(self) -> int:
        """End `failed` every job the store still has as running (the node stopped under
        it); the number of them."""
        changes: dict[bytes, Any] = {}
        for key, value in self.store.scan(JOB_PREFIX):
            job = Job.from_json(value)
            if job.status is JobStatus.RUNNING:
                failed = self._ended(
                    job,
                    JobStatus.FAILED,
                    (*job.results, {"container": self._current(job), "error": STOPPED_ERROR}),
                )
                changes[key] = failed.to_json()
        if changes:
            self.store.write(changes)
            log.warning("%d jobs were running when the node stopped: failed", len(changes))
        return len(changes)

    async def close(self, grace: float) -> None:
        """Let running jobs end within `grace` seconds; the rest are cancelled (and end
        failed at the next start)."""
        await finish(self._tasks.values(), grace)

    @property
    def running(self) -> int:
        return len(self._tasks)

    # Requests

    def check(self, body: Any, ip: str) -> JobRequest:
        """A JobRequest as Infernet's guardian checks it; JobRequestError naming what is
        wrong."""
        if not isinstance(body, dict):
            raise JobRequestError("Invalid JobRequest: expected an object", got=describe(body))
        unknown = sorted(set(body) - {"containers", "data", "requires_proof"})
        if unknown:
            raise JobRequestError("Invalid JobRequest: unknown field(s)", fields=unknown)
        containers = body.get("containers")
        if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
            raise JobRequestError(
                "Invalid JobRequest: containers must be a list of container ids",
                containers=describe(containers),
            )
        if not containers:
            raise JobRequestError("No containers specified")
        if len(containers) > MAX_STAGES:
            raise JobRequestError(
                f"At most {MAX_STAGES} containers in a job", count=len(containers)
            )
        for cid in containers:
            if cid not in self.containers:
                raise JobRequestError("Container not supported", container=cid)
        if not self.containers[containers[0]].config.external:
            raise JobRequestError("First container must be external", first_container=containers[0])
        if body.get("requires_proof"):
            raise JobRequestError("Container does not generate proof", container=containers[-1])
        for cid in containers:
            if not self.containers[cid].config.admits_ip(ip):
                raise JobRequestError(
                    "Container not allowed for address", container=cid, address=ip
                )
        data = body.get("data", {})
        try:
            render_input(data)
        except ValueError as exc:
            raise JobRequestError(f"Invalid JobRequest: {exc}", field="data") from exc
        return JobRequest(tuple(containers), data)

    def _admit(self, request: JobRequest, ip: str) -> None:
        if len(self._tasks) + self.reserved >= self.max_running:
            raise Busy(len(self._tasks) + self.reserved)
        for cid in dict.fromkeys(request.containers):
            limiter = self._limiters.get(cid)
            if limiter is not None:
                limiter.hit(ip, f" to container {cid}")

    def create(self, body: Any, ip: str) -> str:
        """Check, record and start a job; its id. JobRequestError, Busy or RateLimited."""
        request = self.check(body, ip)
        self._admit(request, ip)
        job = self._record(request, ip)
        self._tasks[job.id] = asyncio.create_task(self._run(job, request))
        return job.id

    def create_batch(self, body: Any, ip: str) -> list[dict[str, Any]]:
        """Each request of a batch created in order: `{id}` or `{error[, params]}`."""
        if not isinstance(body, list):
            raise JobRequestError("Invalid batch: expected an array of JobRequests")
        if len(body) > MAX_BATCH:
            raise JobRequestError(
                f"Invalid batch: at most {MAX_BATCH} JobRequests", count=len(body)
            )
        out: list[dict[str, Any]] = []
        for item in body:
            try:
                out.append({"id": self.create(item, ip)})
            except JobRequestError as exc:
                out.append(exc.to_json())
            except (Busy, RateLimited) as exc:
                out.append({"error": str(exc)})
        return out

    async def stream(self, body: Any, ip: str) -> tuple[str, AsyncIterator[str]]:
        """Check, record and start a job whose last stage streams: its id and its chunks.
        The job is kept as any other (GET /api/jobs shows it)."""
        request = self.check(body, ip)
        self._admit(request, ip)
        job = self._record(request, ip)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks[job.id] = asyncio.create_task(self._run(job, request, queue))

        async def chunks() -> AsyncIterator[str]:
            while (chunk := await queue.get()) is not None:
                yield chunk

        return job.id, chunks()

    def _record(self, request: JobRequest, ip: str) -> Job:
        job = Job(str(uuid.uuid4()), ip, request.containers, JobStatus.RUNNING, (), self.clock())
        self.store.write({job_key(job.id): job.to_json(), owner_key(job): job.id})
        return job

    async def _run(
        self, job: Job, request: JobRequest, queue: asyncio.Queue[str | None] | None = None
    ) -> None:
        results: list[dict[str, Any]] = []
        data: Any = request.data
        status = JobStatus.SUCCESS
        try:
            for index, cid in enumerate(request.containers):
                container = self.containers[cid]
                seed = job_seed(job.id, index)
                last = index == len(request.containers) - 1
                try:
                    if queue is not None and last:
                        output = await self._streamed(container, data, seed, queue)
                    else:
                        output = await container.run(data, seed)
                except StageError as exc:
                    results.append({"container": cid, "error": str(exc)})
                    status = JobStatus.FAILED
                    break
                results.append({"container": cid, "output": output})
                data = {"prompt": output["output"]}
                if not last:  # kept as it goes: a stop keeps the stages that ended
                    running = replace(job, results=tuple(results))
                    self.store.write({job_key(job.id): running.to_json()})
            self.store.write({job_key(job.id): self._ended(job, status, results).to_json()})
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must fail the job, not leave it running
            log.exception("job %s failed unexpectedly", job.id)
            results.append({"container": self._current(job, len(results)), "error": "internal"})
            with contextlib.suppress(Exception):
                ended = self._ended(job, JobStatus.FAILED, results)
                self.store.write({job_key(job.id): ended.to_json()})
        finally:
            if queue is not None:
                queue.put_nowait(None)
            self._tasks.pop(job.id, None)

    @staticmethod
    async def _streamed(
        container: Container, data: Any, seed: int, queue: asyncio.Queue[str | None]
    ) -> dict[str, Any]:
        parts: list[str] = []
        async for chunk in container.stream(data, seed):
            parts.append(chunk)
            queue.put_nowait(chunk)
        return container.output("".join(parts), seed, None)

    def _ended(self, job: Job, status: JobStatus, results: Iterable[dict[str, Any]]) -> Job:
        return replace(job, status=status, results=tuple(results), finished=self.clock())

    @staticmethod
    def _current(job: Job, done: int | None = None) -> str:
        index = len(job.results) if done is None else done
        return job.containers[min(index, len(job.containers) - 1)]

    # Reads

    def job(self, job_id: str) -> Job | None:
        value = self.store.get(job_key(job_id))
        return None if value is None else Job.from_json(value)

    def results(self, ids: list[str], owner: str, intermediate: bool) -> list[dict[str, Any]]:
        """JobResults of `owner`'s jobs `ids`, in order; UnknownJobs naming the others."""
        jobs = [self.job(i) for i in ids]
        missing = [i for i, job in zip(ids, jobs, strict=True) if job is None or job.owner != owner]
        if missing:
            raise UnknownJobs(missing)
        return [job.job_result(intermediate) for job in jobs if job is not None]

    def ids(self, owner: str, pending: bool | None) -> list[str]:
        """The ids of `owner`'s jobs, oldest first; only running ones (`pending=True`) or
        only finished ones (`False`)."""
        out: list[str] = []
        for _key, job_id in self.store.scan(OWNER_PREFIX + owner.encode() + b"/"):
            if pending is None:
                out.append(job_id)
                continue
            job = self.job(job_id)
            if job is not None and (job.status is JobStatus.RUNNING) == pending:
                out.append(job_id)
        return out
