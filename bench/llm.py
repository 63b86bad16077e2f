"""The real model's part of the benchmark: how well `scored` verifies it, what that costs a
verifier, and a task's submit-to-verified latency on a network of real-model nodes.

Two llama.cpp servers with SmolLM2-135M-Instruct (`testnet.llama`: one with the stock flags,
one with another thread count and batch size, whose outputs for a seed are not bit-exact with
the first's). First the rates (`bench.llm_rates`): honest and faulty results generated on one
server and judged on the other. Then a dev validator at 500 ms blocks and three dev resource
nodes with `--backend openai` (two on the first server, one on the second), verified by
`scored` (PROTOCOL 4.15). Tasks at temperature 0.7 and `max_tokens` 32 are submitted one at
a time, each awaited until it is decided: the latency is a task's whole path (submit, a
result generated, two assigned verifiers regenerating or scoring it, the block that settles
it), with nothing queued in front of it. The statuses say whether any honest result was
rejected.

`python -m bench.llm [--tasks N] [--results N] [--work-dir DIR]` prints the report as JSON;
`scripts/bench.py --only llm` puts it in the benchmark's table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import llm_rates
from bench.common import percentile, validator, write_json
from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from resource_node.scoring import Thresholds
from rpc.client import InferchainClient, Wallet
from testnet import llama
from testnet.commands import RESOURCE_NODE_READY, resource_node_args
from testnet.process import Process

DEFAULT_TASKS = 20
MAX_TOKENS = 32
TEMPERATURE = 0.7
BLOCK_TIME_MS = 500
TASK_TIMEOUT_S = 300.0
NODE_SERVERS = (0, 0, 1)  # the server each resource node uses
DUMP_FILE = "llm-rates-dump.json"
PROMPTS = (
    "Name a colour and say why you like it.",
    "Write one sentence about the sea.",
    "Give a tip for learning to cook.",
    "Why is the sky blue?",
    "Tell me a fact about the moon.",
)


def _genesis_file(path: Path) -> Path:
    params = Params(
        block_time_ms=BLOCK_TIME_MS,
        compute_deadline_blocks=240,
        verify_deadline_blocks=480,
        canary_rate_bps=0,
    )
    genesis = parse_genesis(dev_genesis(resource_nodes=len(NODE_SERVERS), params=params))
    path.write_text(json.dumps(genesis.raw, indent=2))
    return path


async def _submit_each(url: str, tasks: int) -> list[tuple[float, dict[str, Any]]]:
    user = Wallet.dev(0)
    out: list[tuple[float, dict[str, Any]]] = []
    options = {"model": llama.MODEL_ALIAS, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    async with InferchainClient(url) as client:
        for i in range(tasks):
            prompt = f"{PROMPTS[i % len(PROMPTS)]} ({i})"
            start = time.perf_counter()
            receipt = await client.submit_task(
                user,
                prompts=json.dumps({"prompt": prompt}),
                model_options=json.dumps(options),
                target_count=1,
            )
            task = await client.wait_for_task(receipt.task_hash, timeout=TASK_TIMEOUT_S)
            out.append((time.perf_counter() - start, task))
    return out


async def latency(work_dir: Path, urls: list[str], tasks: int = DEFAULT_TASKS) -> dict[str, Any]:
    """Submit-to-decided latency of `tasks` tasks, one at a time, on a network of real-model
    nodes over the servers at `urls` (NODE_SERVERS says which node uses which)."""
    genesis_path = _genesis_file(work_dir / "genesis.json")
    nodes: list[Process] = []
    chain = validator(genesis_path, work_dir / "validator")
    try:
        rpc = chain.start()
        for index, server in enumerate(NODE_SERVERS):
            extra = ["--backend", "openai", "--backend-opt", f"base_url={urls[server]}"]
            extra += ["--backend-opt", f"model={llama.MODEL_ALIAS}", "--concurrency", "1"]
            extra += ["--backend-opt", "timeout=300"]
            args = resource_node_args(
                rpc, index, genesis_path=genesis_path, log_level="WARNING", extra=extra
            )
            node = Process(
                f"resource node {index}",
                args,
                work_dir / f"node-{index}.log",
                ready_prefix=RESOURCE_NODE_READY,
            )
            nodes.append(node)
            node.spawn()
        for node in nodes:
            node.wait_ready()
        measured = await _submit_each(rpc, tasks)
    finally:
        for node in nodes:
            node.close()
        chain.stop()
    seconds = [s for s, _ in measured]
    statuses: dict[str, int] = {}
    rejected = 0
    for _, task in measured:
        statuses[task["status"]] = statuses.get(task["status"], 0) + 1
        rejected += sum(1 for e in task["executionInfo"] if e["status"] == 3)
    return {
        "tasks": tasks,
        "blockTimeMs": BLOCK_TIME_MS,
        "maxTokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "statuses": statuses,
        "honestRejected": rejected,
        "p50Ms": round(percentile(seconds, 0.5) * 1000, 1),
        "p95Ms": round(percentile(seconds, 0.95) * 1000, 1),
        "meanMs": round(sum(seconds) / len(seconds) * 1000, 1),
    }


async def real_model(
    work_dir: Path,
    tasks: int = DEFAULT_TASKS,
    results: int = llm_rates.DEFAULT_RESULTS,
    first: int = 0,
) -> dict[str, Any]:
    """The real model's part of the benchmark, on two servers (the stock flags and
    `llama.OTHER_FLAGS`): the rates and the verifier's cost of `scored` over `results` honest
    results and as many faulty ones (`bench.llm_rates`, every scored result kept in
    `work_dir`/llm-rates-dump.json for `--rejudge`), then the latency of `tasks` tasks."""
    reason = llama.unavailable()
    if reason is not None:
        return {"skipped": reason}
    work_dir.mkdir(parents=True, exist_ok=True)
    servers = [
        llama.LlamaServer(work_dir / "server-stock.log"),
        llama.LlamaServer(work_dir / "server-other.log", llama.OTHER_FLAGS),
    ]
    try:
        urls = [server.start() for server in servers]
        report: dict[str, Any] = {
            "model": llama.MODEL_ALIAS,
            "serverFlags": list(llama.OTHER_FLAGS),
        }
        if results > 0:
            measured = await llm_rates.measure(urls[0], urls[1], results, llama.MODEL_ALIAS, first)
            llm_rates.dump(measured["rows"], measured["cost"], str(work_dir / DUMP_FILE))
            report["rates"] = llm_rates.report(measured["rows"], Thresholds(), measured["cost"])
        if tasks > 0:
            report["latency"] = await latency(work_dir, urls, tasks)
        return report
    finally:
        for model_server in servers:
            model_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The real model: rates, cost and latency")
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="latency tasks")
    parser.add_argument(
        "--results", type=int, default=llm_rates.DEFAULT_RESULTS, help="honest results rated"
    )
    parser.add_argument("--first", type=int, default=0, help="the first rated task's index")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--work-dir", help="keep the logs and the dump here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inferchain-llm-") as work:
        where = Path(args.work_dir) if args.work_dir else Path(work)
        report = asyncio.run(real_model(where, args.tasks, args.results, args.first))
    if args.json:
        write_json(Path(args.json), report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
