"""Infernet's node API on a resource node's HTTP server, in this process: the job engine, its
store (LevelDB in a temporary directory) and the routes, with the built-in model's containers
(PROTOCOL 7.2)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from resource_node.backends.deterministic import DeterministicBackend
from resource_node.containers import Container, ContainerConfig, RateLimit, job_seed
from resource_node.infernet import InfernetApi
from resource_node.jobs import STOPPED_ERROR, JobEngine
from resource_node.jobstore import JobStore
from resource_node.server import NodeServer

WAIT_S = 10.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Gate:
    """A sleep for the built-in model that returns only once opened: jobs on it run until
    the test lets them end."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        await self.event.wait()


def container(
    cid: str, *, external: bool = True, gate: Gate | None = None, **extra: Any
) -> Container:
    config = ContainerConfig.parse({"id": cid, "external": external, "model": cid, **extra}, cid)
    backend = DeterministicBackend(
        tokens_per_second=1.0 if gate is not None else 0.0,
        sleep=gate.sleep if gate is not None else asyncio.sleep,
    )
    return Container(config, backend, owns_backend=True)


def failing_container(cid: str) -> Container:
    url = f"http://127.0.0.1:{closed_port()}"
    config = ContainerConfig.parse(
        {"id": cid, "backend": "openai", "backend_options": {"base_url": url, "timeout": 5}}, cid
    )
    from resource_node.backends.openai_compat import OpenAIBackend

    return Container(config, OpenAIBackend(url, timeout=5), owns_backend=True)


@dataclass
class Node:
    url: str
    engine: JobEngine
    store: JobStore
    http: aiohttp.ClientSession
    gate: Gate

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None
        json_body = None if isinstance(body, bytes) else body
        async with self.http.post(self.url + path, data=data, json=json_body, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.get(self.url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def my_ids(self) -> list[str]:
        status, ids = await self.get("/api/jobs")
        assert status == 200
        return list(ids)

    async def finished(self, job_id: str, intermediate: bool = False) -> dict[str, Any]:
        query = f"/api/jobs?id={job_id}" + ("&intermediate=true" if intermediate else "")
        async with asyncio.timeout(WAIT_S):
            while True:
                status, results = await self.get(query)
                assert status == 200, results
                if results[0]["status"] != "running":
                    return dict(results[0])
                await asyncio.sleep(0.01)


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    made: list[tuple[NodeServer, JobEngine, JobStore, aiohttp.ClientSession]] = []

    async def make(
        *,
        max_running: int = 8,
        rate_limit: RateLimit | None = None,
        store_dir: Path | None = None,
        extra: tuple[Container, ...] = (),
        local_addr: str | None = None,
    ) -> Node:
        gate = Gate()
        containers = [
            container("first"),
            container("second"),
            container("inner", external=False),
            container("held", gate=gate),
            container("local", allowed_ips=["10.0.0.0/8"]),
            failing_container("broken"),
            *extra,
        ]
        store = JobStore(store_dir or tmp_path / f"jobs-{len(made)}")
        engine = JobEngine({c.id: c for c in containers}, store, max_running=max_running)
        engine.recover()
        api = InfernetApi(engine, onchain=lambda: 2)
        server = NodeServer(lambda: {"address": "x"}, routes=api.routes(), rate_limit=rate_limit)
        await server.setup()
        connector = aiohttp.TCPConnector(local_addr=(local_addr, 0) if local_addr else None)
        http = aiohttp.ClientSession(connector=connector)
        made.append((server, engine, store, http))
        return Node(server.url, engine, store, http, gate)

    yield make
    for server, engine, store, http in made:
        await http.close()
        await server.cleanup()
        await engine.close(0)
        store.close()  # again, if the test closed it: a no-op


async def test_info_lists_the_containers_and_the_pending_counts(make_node: NodeFactory) -> None:
    node = await make_node()
    status, info = await node.get("/info")
    assert status == 200
    assert set(info) == {"containers", "pending"}
    assert info["containers"][0] == {
        "id": "first",
        "external": True,
        "image": "inferchain/deterministic:v1",
        "description": "",
    }
    assert {c["id"]: c["external"] for c in info["containers"]}["inner"] is False
    assert info["pending"] == {"offchain": 0, "onchain": 2}
    status, body = await node.post("/api/jobs", {"containers": ["held"], "data": {"prompt": "p"}})
    assert status == 200
    assert (await node.get("/info"))[1]["pending"]["offchain"] == 1
    node.gate.event.set()
    await node.finished(body["id"])
    assert (await node.get("/info"))[1]["pending"]["offchain"] == 0


async def test_a_single_job_runs_and_keeps_its_result(make_node: NodeFactory) -> None:
    node = await make_node()
    status, body = await node.post("/api/jobs", {"containers": ["first"], "data": {"prompt": "hi"}})
    assert status == 200
    job_id = body["id"]
    assert str(uuid.UUID(job_id)) == job_id
    result = await node.finished(job_id)
    assert result["status"] == "success"
    assert result["intermediate_results"] == []
    output = result["result"]
    assert output["container"] == "first"
    expected = await node.engine.containers["first"].run({"prompt": "hi"}, job_seed(job_id, 0))
    assert output["output"] == expected
    assert await node.my_ids() == [job_id]


async def test_a_chained_job_feeds_each_output_to_the_next(make_node: NodeFactory) -> None:
    node = await make_node()
    status, body = await node.post(
        "/api/jobs", {"containers": ["first", "inner", "second"], "data": {"prompt": "go"}}
    )
    assert status == 200
    job_id = body["id"]
    result = await node.finished(job_id, intermediate=True)
    assert result["status"] == "success"
    steps = result["intermediate_results"]
    assert [s["container"] for s in steps] == ["first", "inner"]
    engine = node.engine
    first = await engine.containers["first"].run({"prompt": "go"}, job_seed(job_id, 0))
    inner = await engine.containers["inner"].run({"prompt": first["output"]}, job_seed(job_id, 1))
    last = await engine.containers["second"].run({"prompt": inner["output"]}, job_seed(job_id, 2))
    assert steps[0]["output"] == first and steps[1]["output"] == inner
    assert result["result"] == {"container": "second", "output": last}
    without = (await node.get(f"/api/jobs?id={job_id}"))[1][0]
    assert without["intermediate_results"] == [] and without["result"] == result["result"]


async def test_a_batch_answers_each_request_in_order(make_node: NodeFactory) -> None:
    node = await make_node()
    status, answers = await node.post(
        "/api/jobs/batch",
        [
            {"containers": ["first"], "data": {"prompt": "a"}},
            {"containers": ["nope"], "data": {}},
            {"containers": ["inner"], "data": {}},
            {"containers": ["second"], "data": {"prompt": "b"}},
        ],
    )
    assert status == 200
    assert "id" in answers[0] and "id" in answers[3]
    assert answers[1] == {"error": "Container not supported", "params": {"container": "nope"}}
    assert answers[2] == {
        "error": "First container must be external",
        "params": {"first_container": "inner"},
    }
    assert await node.my_ids() == [answers[0]["id"], answers[3]["id"]]
    status, results = await node.get(f"/api/jobs?id={answers[3]['id']}&id={answers[0]['id']}")
    assert [r["id"] for r in results] == [answers[3]["id"], answers[0]["id"]]
    assert (await node.post("/api/jobs/batch", {"containers": []}))[0] == 400


async def test_pending_filters_and_ownership(make_node: NodeFactory) -> None:
    node = await make_node()
    _, done = await node.post("/api/jobs", {"containers": ["first"], "data": {"prompt": "a"}})
    await node.finished(done["id"])
    _, held = await node.post("/api/jobs", {"containers": ["held"], "data": {"prompt": "b"}})
    assert (await node.get("/api/jobs?pending=true"))[1] == [held["id"]]
    assert (await node.get("/api/jobs?pending=false"))[1] == [done["id"]]
    assert (await node.get("/api/jobs"))[1] == [done["id"], held["id"]]
    running = (await node.get(f"/api/jobs?id={held['id']}"))[1][0]
    assert running == {
        "id": held["id"],
        "status": "running",
        "result": None,
        "intermediate_results": [],
    }
    # another client (another loopback address) sees none of these jobs
    other = await make_node(store_dir=None, local_addr="127.0.0.2")
    other.url = node.url
    assert await other.my_ids() == []
    status, body = await other.get(f"/api/jobs?id={done['id']}")
    assert status == 404 and done["id"] in body["error"]
    node.gate.event.set()
    await node.finished(held["id"])
    assert (await node.get("/api/jobs?pending=true"))[1] == []


async def test_streaming_writes_the_id_then_the_output(make_node: NodeFactory) -> None:
    node = await make_node()
    async with node.http.post(
        node.url + "/api/jobs/stream",
        json={"containers": ["first", "second"], "data": {"prompt": "s"}},
    ) as resp:
        assert resp.status == 200
        first_line = (await resp.content.readline()).decode().strip()
        rest = (await resp.content.read()).decode()
    job_id = str(uuid.UUID(first_line))
    result = await node.finished(job_id)
    assert result["status"] == "success"
    assert result["result"]["output"]["output"] == rest
    assert rest  # the built-in model writes at least one word
    status, body = await node.post("/api/jobs/stream", {"containers": ["inner"], "data": {}})
    assert status == 400 and body["error"] == "First container must be external"


async def test_a_failing_container_fails_the_job_with_a_container_error(
    make_node: NodeFactory,
) -> None:
    node = await make_node()
    _, body = await node.post(
        "/api/jobs", {"containers": ["first", "broken", "second"], "data": {"prompt": "x"}}
    )
    result = await node.finished(body["id"], intermediate=True)
    assert result["status"] == "failed"
    assert result["result"]["container"] == "broken"
    assert "failed" in result["result"]["error"]
    assert set(result["result"]) == {"container", "error"}
    assert [r["container"] for r in result["intermediate_results"]] == ["first"]


async def test_jobs_survive_a_restart_and_a_running_one_ends_failed(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    store_dir = tmp_path / "kept"
    node = await make_node(store_dir=store_dir)
    _, done = await node.post("/api/jobs", {"containers": ["first"], "data": {"prompt": "a"}})
    before = await node.finished(done["id"])
    _, held = await node.post("/api/jobs", {"containers": ["held"], "data": {"prompt": "b"}})
    _, second = await node.post(
        "/api/jobs", {"containers": ["first", "held"], "data": {"prompt": "c"}}
    )

    async def first_stage_kept() -> None:
        async with asyncio.timeout(WAIT_S):
            while not (job := node.engine.job(second["id"])) or not job.results:
                await asyncio.sleep(0.01)

    await first_stage_kept()
    await node.engine.close(0)  # the node stops with the jobs running
    node.store.close()
    again = await make_node(store_dir=store_dir)
    assert await again.my_ids() == [done["id"], held["id"], second["id"]]
    assert (await again.get(f"/api/jobs?id={done['id']}"))[1][0] == before
    cut = (await again.get(f"/api/jobs?id={held['id']}"))[1][0]
    assert cut["status"] == "failed"
    assert cut["result"] == {"container": "held", "error": STOPPED_ERROR}
    # cut in its second stage: the first stage's output is kept
    cut = (await again.get(f"/api/jobs?id={second['id']}&intermediate=true"))[1][0]
    assert cut["result"] == {"container": "held", "error": STOPPED_ERROR}
    assert [r["container"] for r in cut["intermediate_results"]] == ["first"]
    assert "output" in cut["intermediate_results"][0]


async def test_the_rate_limit_answers_429_and_does_nothing(make_node: NodeFactory) -> None:
    node = await make_node(rate_limit=RateLimit(3, 600))
    for _ in range(2):
        assert (await node.post("/api/jobs", {"containers": ["first"], "data": {}}))[0] == 200
    assert len(await node.my_ids()) == 2
    async with node.http.post(node.url + "/api/jobs", json={"containers": ["first"]}) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert "at most 3 per 600 s" in (await resp.json())["error"]
    assert len(node.engine.ids("127.0.0.1", None)) == 2
    assert (await node.get("/info"))[0] == 200  # /info is not an /api/ route


async def test_a_container_rate_limit(make_node: NodeFactory) -> None:
    node = await make_node(
        extra=(container("rare", rate_limit={"num_requests": 1, "period": 600}),)
    )
    assert (await node.post("/api/jobs", {"containers": ["rare"], "data": {}}))[0] == 200
    status, body = await node.post("/api/jobs", {"containers": ["rare"], "data": {}})
    assert status == 429 and "container rare" in body["error"]
    assert (await node.post("/api/jobs", {"containers": ["first"], "data": {}}))[0] == 200
    assert len(await node.my_ids()) == 2


async def test_busy_is_503_with_retry_after(make_node: NodeFactory) -> None:
    node = await make_node(max_running=1)
    _, held = await node.post("/api/jobs", {"containers": ["held"], "data": {}})
    async with node.http.post(node.url + "/api/jobs", json={"containers": ["first"]}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
    assert await node.my_ids() == [held["id"]]
    node.gate.event.set()
    await node.finished(held["id"])
    assert (await node.post("/api/jobs", {"containers": ["first"]}))[0] == 200


BAD_REQUESTS: list[tuple[Any, str, dict[str, Any] | None]] = [
    (b"{not json", "Invalid JSON body", None),
    ([], "Invalid JobRequest: expected an object", {"got": "a list of 0 items"}),
    ({"containers": []}, "No containers specified", None),
    ({"containers": "first"}, "Invalid JobRequest: containers must be a list", None),
    ({"containers": ["nope"]}, "Container not supported", {"container": "nope"}),
    ({"containers": ["first", "nope"]}, "Container not supported", {"container": "nope"}),
    ({"containers": ["inner"]}, "First container must be external", {"first_container": "inner"}),
    (
        {"containers": ["local"]},
        "Container not allowed for address",
        {"container": "local", "address": "127.0.0.1"},
    ),
    ({"containers": ["first"], "requires_proof": True}, "Container does not generate proof", None),
    ({"containers": ["first"], "colour": 1}, "Invalid JobRequest: unknown field(s)", None),
    ({"containers": ["first"], "data": [1]}, "Invalid JobRequest: data: expected an object", None),
    ({"containers": ["first"], "data": {"prompt": 3}}, "Invalid JobRequest: data.prompt", None),
    ({"containers": ["first"] * 17}, "At most 16 containers", None),
]


@pytest.mark.parametrize(("body", "error", "params"), BAD_REQUESTS)
async def test_every_bad_request_is_400_and_creates_nothing(
    make_node: NodeFactory, body: Any, error: str, params: dict[str, Any] | None
) -> None:
    node = await make_node()
    for path in ("/api/jobs", "/api/jobs/stream"):
        status, answer = await node.post(path, body)
        assert status == 400, answer
        assert answer["error"].startswith(error)
        if params is not None:
            assert answer["params"] == params
    assert await node.my_ids() == []
    assert node.engine.running == 0


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("?intermediate=maybe", 400, "intermediate must be true or false"),
        ("?pending=1", 400, "pending must be true or false"),
        ("?id=5a0c6c36-1b8e-4c8e-9d1e-2f4a6b8c0d1e", 404, "no job with id"),
        ("?" + "&".join(f"id={i}" for i in range(101)), 400, "at most 100 ids"),
    ],
)
async def test_bad_reads(make_node: NodeFactory, query: str, status: int, error: str) -> None:
    node = await make_node()
    got, body = await node.get("/api/jobs" + query)
    assert got == status and error in body["error"]


async def test_unknown_routes_answer_json(make_node: NodeFactory) -> None:
    node = await make_node()
    status, body = await node.get("/api/nothing")
    assert status == 404 and "no route" in body["error"]
    status, body = await node.get("/api/jobs/batch")
    assert status == 405 and "POST" in body["error"]
