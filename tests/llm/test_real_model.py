"""The `llm` set: a real model on real servers, verified by `scored` (PROTOCOL 4.15).

SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server, two servers at once: one with
the stock flags and one with another thread count and batch size, whose outputs for the same
seed are not bit-exact with the first's. A dev validator (500 ms blocks) and dev resource
nodes with `--backend openai`, each on one of the servers; tasks at temperature 0.7.

- Honest nodes, on both servers, are never rejected over 30 tasks.
- Nodes that answer another prompt's output, a truncated output, the deterministic backend's
  text, or a copy of another node's result in the same task are rejected every time.
- A copy of an honest node's result (open prompts, 48 tokens) is rejected as a copy.
- A node's Infernet API runs jobs on the model, and a streamed job's chunks join to the text
  the same seed gives unstreamed (PROTOCOL 7.2).

Forced errors are off (canaryRateBps 0): they are rejected on purpose, and are tested
without a real model (tests/e2e/test_forced_errors.py). The set skips, saying why, where the
`llm` extra (llama-cpp-python, compiled at install, and the model's package) is missing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient, Wallet
from testnet import llama
from tests.helpers import ResourceNodeProcess, ValidatorProcess, dev_node_wallet, write_genesis

REASON = llama.unavailable()

# Each test is collected and skipped, not the module: a run of this set alone then reports
# its skips (exit 0) instead of collecting nothing (exit 5).
pytestmark = [
    pytest.mark.llm,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]

USER = Wallet.dev(0)
VERIFIED, REJECTED = 2, 3
HONEST_TASKS = 30
FAULTY_TASKS = 4
COPY_TASKS = 3
COPY_MAX_TOKENS = 48
OPEN_PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Describe a market in a city you imagine.",
    "Write a poem about the wind in autumn.",
)
MAX_TOKENS = 24
TEMPERATURE = 0.7
TASK_TIMEOUT = 600.0
READY_TIMEOUT = 300.0
PROMPTS = (
    "Name a colour and say why you like it.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Give a tip for learning to cook.",
    "Describe a cat in a few words.",
    "Why is the sky blue?",
    "Suggest a name for a small boat.",
    "What do bees make?",
    "Tell me a fact about the moon.",
    "How do you make tea?",
)


@dataclass(frozen=True)
class NodeSpec:
    """A resource node of the network: which server it uses (0, 1, or None for the
    deterministic backend) and its faults."""

    server: int | None
    faults: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # more --backend-opt K=V


@dataclass(frozen=True)
class Run:
    tasks: list[dict[str, Any]]
    nodes: list[NodeSpec]
    logs: list[str]

    def address(self, index: int) -> str:
        return dev_node_wallet(index).address

    def results_of(self, index: int) -> list[dict[str, Any]]:
        return [
            entry
            for task in self.tasks
            for entry in task["executionInfo"]
            if entry["resourceNode"] == self.address(index)
        ]


def llm_genesis(nodes: int) -> Genesis:
    params = Params(
        block_time_ms=500,
        compute_deadline_blocks=240,
        verify_deadline_blocks=480,
        canary_rate_bps=0,
    )
    return parse_genesis(dev_genesis(resource_nodes=nodes, params=params))


def model_options(**extra: Any) -> str:
    options = {"model": llama.MODEL_ALIAS, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    options.update(extra)
    return json.dumps(options)


async def drive(
    url: str, count: int, target_count: int, prompts: tuple[str, ...], max_tokens: int
) -> list[dict[str, Any]]:
    async with InferchainClient(url) as client:
        receipts = [
            await client.submit_task(
                USER,
                prompts=f'{{"prompt": "{prompts[i % len(prompts)]} ({i})"}}',
                model_options=model_options(max_tokens=max_tokens),
                target_count=target_count,
            )
            for i in range(count)
        ]
        return list(
            await asyncio.gather(
                *(client.wait_for_task(r.task_hash, timeout=TASK_TIMEOUT) for r in receipts)
            )
        )


def run_network(
    root: Path,
    nodes: list[NodeSpec],
    count: int,
    target_count: int,
    prompts: tuple[str, ...] = PROMPTS,
    max_tokens: int = MAX_TOKENS,
) -> Run:
    genesis = llm_genesis(len(nodes))
    genesis_path = write_genesis(root / "genesis.json", genesis)
    servers = [
        llama.LlamaServer(root / "server-stock.log"),
        llama.LlamaServer(root / "server-other.log", llama.OTHER_FLAGS),
    ]
    validator = ValidatorProcess(genesis_path, root / "validator")
    processes: list[ValidatorProcess | ResourceNodeProcess] = [validator]
    try:
        urls = [server.start() for server in servers]
        rpc = validator.start()
        for index, spec in enumerate(nodes):
            extra = ["--genesis", str(genesis_path)]
            if spec.server is None:
                extra += ["--backend", "deterministic"]
            else:
                extra += ["--backend", "openai", "--backend-opt", f"base_url={urls[spec.server]}"]
                extra += ["--backend-opt", f"model={llama.MODEL_ALIAS}"]
                # one request at a time per node: the server answers one at a time
                extra += ["--backend-opt", "timeout=300", "--concurrency", "1"]
            for fault in spec.faults:
                extra += ["--fault", fault]
            for option in spec.options:
                extra += ["--backend-opt", option]
            node = ResourceNodeProcess(rpc, index, root / f"node-{index}", *extra)
            processes.append(node)
            node.spawn()
        for process in processes[1:]:
            # each real-model node probes its server at start (PROTOCOL 4.15), one at a time
            process.wait_ready(READY_TIMEOUT)
        tasks = asyncio.run(drive(rpc, count, target_count, prompts, max_tokens))
        logs = [p.log_path.read_text(errors="replace") for p in processes[1:]]
        return Run(tasks, nodes, logs)
    finally:
        for process in reversed(processes):
            process.close()
        for server in servers:
            server.stop()


def scored_verdicts(log: str) -> int:
    return len(re.findall(r"valid=\w+, accepted; scored:", log))


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    # node 1 always scores (no fast path): its verdicts are the two servers' disagreement
    nodes = [NodeSpec(0), NodeSpec(1, options=("fast_path=false",)), NodeSpec(0)]
    yield run_network(tmp_path_factory.mktemp("llm-honest"), nodes, HONEST_TASKS, 1)


FAULTY = {2: "otherprompt", 3: "truncate", 4: "deterministic", 5: "copy"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    nodes = [
        NodeSpec(0),
        NodeSpec(1),
        NodeSpec(0, ("otherprompt",)),
        NodeSpec(1, ("truncate",)),
        NodeSpec(None),  # the deterministic backend's text for a real model's task
        NodeSpec(0, ("copy",)),
    ]
    yield run_network(tmp_path_factory.mktemp("llm-faulty"), nodes, FAULTY_TASKS, len(nodes))


def test_honest_nodes_on_two_servers_are_never_rejected(honest: Run) -> None:
    statuses = [task["status"] for task in honest.tasks]
    assert statuses == ["verified"] * HONEST_TASKS, statuses
    for index in range(len(honest.nodes)):
        for entry in honest.results_of(index):
            assert entry["status"] == VERIFIED, entry
    for task in honest.tasks:
        assert task["settlement"]["slashed"] == [], task["settlement"]
    # Node 1 scored every verdict it gave (on the other server's flags), all valid.
    verdicts = len(re.findall(r"verdict on .* accepted", honest.logs[1]))
    assert verdicts > 0 and scored_verdicts(honest.logs[1]) == verdicts, honest.logs[1][-3000:]


def test_faulty_results_are_rejected_every_time(faulty: Run) -> None:
    for index, fault in FAULTY.items():
        results = faulty.results_of(index)
        assert results, f"the {fault} node submitted nothing"
        for entry in results:
            assert entry["status"] == REJECTED, (fault, entry)
    for index in (0, 1):
        results = faulty.results_of(index)
        assert len(results) == FAULTY_TASKS
        for entry in results:
            assert entry["status"] == VERIFIED, entry
    assert [task["status"] for task in faulty.tasks] == ["verified"] * FAULTY_TASKS


@pytest.fixture(scope="module")
def copying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    # Two honest nodes and a copier: in the faulty network the copier copies whichever result
    # is listed first, most often the deterministic node's (it answers at once), which is
    # rejected as far outside the support before a copy is looked for. Open prompts and 48
    # tokens: a copy of a short, likely answer ("Paris.") is no evidence (PROTOCOL 4.15).
    nodes = [NodeSpec(0), NodeSpec(1), NodeSpec(0, ("copy",))]
    root = tmp_path_factory.mktemp("llm-copy")
    yield run_network(root, nodes, COPY_TASKS, len(nodes), OPEN_PROMPTS, COPY_MAX_TOKENS)


def test_a_copy_of_an_honest_result_is_rejected_as_a_copy(copying: Run) -> None:
    copier = copying.address(2)
    log = copying.logs[0] + copying.logs[1]
    for task in copying.tasks:
        entries = {e["resourceNode"]: e for e in task["executionInfo"]}
        copied = entries[copier]
        assert copied["status"] == REJECTED, copied
        originals = [e for a, e in entries.items() if a != copier]
        assert any(e["result"] == copied["result"] for e in originals), task
        assert all(e["status"] == VERIFIED for e in originals), task
        verdict = rf"verdict on {copier}'s result for task {task['taskHash']}: valid=false"
        assert re.search(verdict + r".*a copy of", log), log[-3000:]


# Off-chain jobs on a real model (PROTOCOL 7.2): a node's Infernet API over the openai backend


def test_infernet_jobs_and_streams_on_a_real_model(tmp_path: Path) -> None:
    server = llama.LlamaServer(tmp_path / "server.log")
    node: ResourceNodeProcess | None = None
    try:
        url = server.start()
        # no validator needed for off-chain jobs: the node waits for one, and serves meanwhile
        node = ResourceNodeProcess(
            "http://127.0.0.1:9",
            0,
            tmp_path / "node",
            *("--backend", "openai", "--backend-opt", f"base_url={url}"),
            *("--backend-opt", f"model={llama.MODEL_ALIAS}", "--backend-opt", "timeout=300"),
        )
        node.spawn()
        node.wait_ready(READY_TIMEOUT)
        streamed, job = asyncio.run(infernet_jobs(node.url))
    finally:
        if node is not None:
            node.close()
        server.stop()
    chunks, stream_result = streamed
    assert "".join(chunks) == stream_result["result"]["output"]["output"]
    assert stream_result["status"] == "success"
    # the same seed, not streamed: the same text, with the server's token counts
    output = job["result"]["output"]
    assert output["output"] == "".join(chunks)
    assert output["model"] == llama.MODEL_ALIAS and output["seed"] == 11
    assert output["usage"]["completion_tokens"] >= 1


async def infernet_jobs(url: str) -> tuple[tuple[list[str], dict[str, Any]], dict[str, Any]]:
    import aiohttp

    data = {
        "prompt": "Write one sentence about the sea.",
        "seed": 11,
        "options": {"max_tokens": 24},
    }
    body = {"containers": ["openai"], "data": data}
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/jobs/stream", json=body) as resp:
            assert resp.status == 200, await resp.text()
            job_id = (await resp.content.readline()).decode().strip()
            chunks = [chunk.decode() async for chunk in resp.content.iter_any()]
        async with http.post(url + "/api/jobs", json=body) as resp:
            assert resp.status == 200, await resp.text()
            other = (await resp.json())["id"]

        async def finished(job: str) -> dict[str, Any]:
            async with asyncio.timeout(TASK_TIMEOUT):
                while True:
                    async with http.get(url + "/api/jobs", params={"id": job}) as resp:
                        (result,) = await resp.json()
                    if result["status"] != "running":
                        return dict(result)
                    await asyncio.sleep(0.1)

        return (chunks, await finished(job_id)), await finished(other)
