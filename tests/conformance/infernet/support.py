"""Shared pieces of the Infernet conformance suite: the node under test as `GET /info`
describes it, a caller (an HTTP client bound to one local address: the node knows a client by
its address), and the shapes of Ritual's Infernet node API document (Container, JobResult,
ContainerOutput, ContainerError, the `{error[, params]}` answer).

Everything here talks HTTP to the node and reads nothing else of it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

WAIT_S = 15.0  # how long a job of the suite may take to end
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.5
JOB_STATUSES = {"running", "success", "failed"}
JOB_RESULT_KEYS = {"id", "status", "result", "intermediate_results"}
CONTAINER_KEYS = {"id", "external", "image", "description"}
STAGE_OUTPUT_KEYS = {"output", "model", "seed", "usage"}  # a container of this node (owned)
MAIN_CLIENT = "127.0.0.1"
OTHER_CLIENT = "127.0.0.2"  # the ownership rows
LIMITED_CLIENT = "127.0.0.3"  # the 429 row, on the rate-limited node
BUSY_CLIENT = "127.0.0.4"  # the 503 row, on the same node
RESTART_CLIENT = "127.0.0.5"  # the restart row: a list of ids of its own
SUITE_REQUESTS = 100  # about what a run sends to /api/ routes from 127.0.0.1


@dataclass
class Target:
    """The Infernet node under test: its URL, its `GET /info`, and when the suite started it
    (`owned`), how to kill and start it again on the same state directory and port."""

    url: str
    owned: bool
    info: dict[str, Any]
    restart: Callable[[], None] | None = None
    stream_served: bool | None = None  # probed on first use

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.info["containers"])

    @property
    def external(self) -> list[str]:
        return [c["id"] for c in self.containers if c.get("external") is True]

    @property
    def first(self) -> str:
        """The container the suite's jobs start with: the first external one."""
        return self.external[0]

    @property
    def second(self) -> str:
        """The next stage of the suite's chains: a second external container, else the first."""
        return self.external[1] if len(self.external) > 1 else self.external[0]

    @property
    def internal(self) -> str | None:
        """A container that may not start a job, if the node has one."""
        return next((c["id"] for c in self.containers if c.get("external") is False), None)

    def loopback(self) -> bool:
        """Whether the node listens on an IPv4 loopback address: only then can the suite
        reach it as several clients (127.0.0.2, ...)."""
        host = urlsplit(self.url).hostname or ""
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
        except ValueError:
            return False


@dataclass
class Caller:
    """One client of the node: every request goes from `address` (None: the default route)."""

    url: str
    session: aiohttp.ClientSession
    address: str | None = None
    limited: bool = False  # the suite's rate-limited node: a 429 is what a row expects

    async def request(
        self, method: str, path: str, *, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any, Mapping[str, str]]:
        """The status, the parsed JSON answer and the headers."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as resp:
            text = await resp.read()
            answer = json.loads(text) if text else None
            if resp.status == 429 and not self.limited:
                pytest.fail(
                    f"{method} {path}: the target rate-limited the suite ({answer}); a run "
                    f"sends about {SUITE_REQUESTS} requests to /api/ routes within seconds from "
                    f"{self.address or 'this host'}: raise the target's limit to pass"
                )
            return resp.status, answer, resp.headers

    async def get(self, path: str) -> tuple[int, Any]:
        status, answer, _headers = await self.request("GET", path)
        return status, answer

    async def post(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        status, answer, _headers = await self.request("POST", path, body=body, raw=raw)
        return status, answer

    async def info(self) -> dict[str, Any]:
        status, info = await self.get("/info")
        assert status == 200, (status, info)
        check_info(info)
        return dict(info)

    async def create(self, containers: list[str], data: dict[str, Any]) -> str:
        """POST /api/jobs of a request the node must take: the new job's id."""
        status, answer = await self.post("/api/jobs", {"containers": containers, "data": data})
        assert status == 200, (status, answer)
        return check_created(answer)

    async def ids(self, pending: bool | None = None) -> list[str]:
        """GET /api/jobs without ids: this client's job ids."""
        query = "" if pending is None else f"?pending={str(pending).lower()}"
        status, ids = await self.get("/api/jobs" + query)
        assert status == 200, (status, ids)
        assert isinstance(ids, list) and all(isinstance(i, str) for i in ids), ids
        return list(ids)

    async def results(self, *ids: str, intermediate: bool = False) -> list[dict[str, Any]]:
        query = "&".join(f"id={i}" for i in ids) + ("&intermediate=true" if intermediate else "")
        status, results = await self.get(f"/api/jobs?{query}")
        assert status == 200, (status, results)
        assert isinstance(results, list) and len(results) == len(ids), results
        for job_id, result in zip(ids, results, strict=True):
            check_job_result(result, intermediate)
            assert result["id"] == job_id, (job_id, result)
        return list(results)

    async def result(self, job_id: str, intermediate: bool = False) -> dict[str, Any]:
        return (await self.results(job_id, intermediate=intermediate))[0]

    async def finished(self, job_id: str, intermediate: bool = False) -> dict[str, Any]:
        """The job's JobResult once it is no longer running (polled, backing off)."""
        delay = POLL_FIRST_S
        async with asyncio.timeout(WAIT_S):
            while True:
                result = await self.result(job_id, intermediate)
                if result["status"] != "running":
                    return result
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)

    async def running(self, job_id: str) -> dict[str, Any]:
        result = await self.result(job_id)
        assert result["status"] == "running", result
        assert result["result"] is None, result
        return result


CallerFactory = Callable[..., Awaitable[Caller]]
"""`await callers(address=None, url=None)`: a Caller from `address`, of the node or of `url`."""


def prompt(label: str) -> dict[str, Any]:
    """A stage input no earlier run sent: the suite never assumes a fresh node."""
    return {"prompt": f"infernet conformance {label} {uuid.uuid4().hex}"}


async def stream_served(target: Target, caller: Caller) -> bool:
    """Whether the node serves POST /api/jobs/stream (a body that is no JSON: 400 when it
    does, and nothing created)."""
    if target.stream_served is None:
        status, _answer = await caller.post("/api/jobs/stream", raw=b"{")
        target.stream_served = status not in (404, 405)
    return target.stream_served


# Shapes of the API document


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def check_container(container: Any, exact: bool) -> None:
    """A Container: {id, external, image, description (optional)}; all four on a node of
    this project (`exact`)."""
    assert isinstance(container, dict), container
    keys = set(container)
    assert {"id", "external", "image"} <= keys <= CONTAINER_KEYS, container
    if exact:
        assert keys == CONTAINER_KEYS, container
    assert isinstance(container["id"], str) and container["id"], container
    assert type(container["external"]) is bool, container
    assert isinstance(container["image"], str), container
    assert isinstance(container.get("description", ""), str), container


def check_info(info: Any, exact: bool = False) -> None:
    """GET /info: {containers: Container[], pending: {offchain, onchain}}."""
    assert isinstance(info, dict) and set(info) == {"containers", "pending"}, info
    assert isinstance(info["containers"], list), info
    for container in info["containers"]:
        check_container(container, exact)
    ids = [c["id"] for c in info["containers"]]
    assert len(ids) == len(set(ids)), f"container ids repeat: {ids}"
    pending = info["pending"]
    assert isinstance(pending, dict) and set(pending) == {"offchain", "onchain"}, pending
    assert is_count(pending["offchain"]) and is_count(pending["onchain"]), pending


def check_created(answer: Any) -> str:
    """POST /api/jobs answered 200: exactly {id}, a UUID."""
    assert isinstance(answer, dict) and set(answer) == {"id"}, answer
    assert is_uuid(answer["id"]), answer
    return str(answer["id"])


def check_error(answer: Any, *, params: bool | None = None) -> dict[str, Any]:
    """{error: string[, params: object]}; `params` True or False demands it or forbids it."""
    assert isinstance(answer, dict), answer
    assert "error" in answer and set(answer) <= {"error", "params"}, answer
    assert isinstance(answer["error"], str) and answer["error"], answer
    if "params" in answer:
        assert isinstance(answer["params"], dict), answer
    if params is not None:
        assert ("params" in answer) is params, answer
    return answer


def check_plain_error(answer: Any) -> str:
    """The GET /api/jobs failure: exactly {error: string}."""
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert isinstance(answer["error"], str) and answer["error"], answer
    return str(answer["error"])


def check_container_result(result: Any) -> None:
    """A ContainerResult: a ContainerOutput {container, output: object} or a ContainerError
    {container, error: string}."""
    assert isinstance(result, dict), result
    assert set(result) in ({"container", "output"}, {"container", "error"}), result
    assert isinstance(result["container"], str) and result["container"], result
    if "output" in result:
        assert isinstance(result["output"], dict), result
    else:
        assert isinstance(result["error"], str) and result["error"], result


def check_job_result(result: Any, intermediate: bool) -> None:
    """A JobResult: {id, status, result, intermediate_results}; `result` is null while the
    job runs; `intermediate_results` is empty unless they were asked for."""
    assert isinstance(result, dict) and set(result) == JOB_RESULT_KEYS, result
    assert is_uuid(result["id"]), result
    assert result["status"] in JOB_STATUSES, result
    if result["status"] == "running":
        assert result["result"] is None, result
    else:
        check_container_result(result["result"])
        if result["status"] == "success":
            assert "output" in result["result"], result
        else:
            assert "error" in result["result"], result
    steps = result["intermediate_results"]
    assert isinstance(steps, list), result
    if not intermediate:
        assert steps == [], result
    for step in steps:
        check_container_result(step)


def check_stage_output(output: Any) -> None:
    """What a container of this project answers: {output: text, model, seed, usage}."""
    assert isinstance(output, dict) and set(output) == STAGE_OUTPUT_KEYS, output
    assert isinstance(output["output"], str), output
    assert output["model"] is None or isinstance(output["model"], str), output
    assert is_count(output["seed"]), output
    assert output["usage"] is None or isinstance(output["usage"], dict), output
