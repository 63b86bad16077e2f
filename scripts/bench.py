"""Measure inferchain on this machine (`make bench`): ingestion against two peers (anvil and
hardhat, `--peer`) and the machine's ceilings, reads at 10 thousand and 1 million tasks, the
default testnet end to end, its capacity as the offered load steps up and graceful overload past
it (`--only capacity`), an honest client under each flood (`--only floods`), memory over
finished tasks (`--only memory`), resource nodes on one validator (`--only nodes`: the block
interval with 30 of them and with none), the real model (`--only llm`, with the llm extra:
`scored`'s error rates and cost, and a task's latency on real-model nodes), and networks of 4,
8 and 16 validators on this machine (`--only validators`: the cost of each added validator).

Prints the figures as Markdown tables with the targets they are held to, and writes them as
JSON (`--json`). The method is in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import capacity, floods, llm, llm_rates, memory, nodes, run, subs, validators  # noqa: E402
from bench.common import write_json  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark inferchain on this machine")
    parser.add_argument(
        "--only", action="append", choices=run.SECTIONS, help="run only this part (repeat)"
    )
    parser.add_argument(
        "--peer",
        default=run.PEER_ALL,
        choices=run.PEER_CHOICES,
        help="the nodes to compare ingestion with: anvil, hardhat, all (both; the default) or "
        "none (each installed with npm on first use)",
    )
    parser.add_argument("--count", type=int, default=3000, help="transactions per ingestion run")
    parser.add_argument("--rounds", type=int, default=3, help="ingestion rounds (median)")
    parser.add_argument(
        "--read-sizes",
        default="10000,1000000",
        help="ledger sizes in tasks for the reads, comma-separated",
    )
    parser.add_argument(
        "--e2e-seconds", type=float, default=30.0, help="seconds of load per end-to-end run"
    )
    parser.add_argument(
        "--capacity-steps",
        default=",".join(f"{r:g}" for r in capacity.STEPS),
        help="capacity: the offered loads in tasks per second, comma-separated",
    )
    parser.add_argument(
        "--attack",
        action="append",
        choices=floods.ATTACKS,
        help="floods: run only this attack (repeat)",
    )
    parser.add_argument(
        "--flood-size",
        default="full",
        choices=("full", "tiny"),
        help="floods: the robustness table's sizes, or tiny ones (a smoke run)",
    )
    parser.add_argument(
        "--memory-tasks",
        type=int,
        default=memory.DEFAULT_TASKS,
        help="memory: finished tasks to reach (the recorded run: 200000)",
    )
    parser.add_argument(
        "--memory-step",
        type=int,
        default=memory.DEFAULT_STEP,
        help="memory: finished tasks between two RSS readings",
    )
    parser.add_argument(
        "--llm-tasks",
        type=int,
        default=llm.DEFAULT_TASKS,
        help="llm: tasks whose latency is measured",
    )
    parser.add_argument(
        "--llm-results",
        type=int,
        default=llm_rates.DEFAULT_RESULTS,
        help="llm: honest results rated by scored (and as many faulty ones)",
    )
    parser.add_argument(
        "--nodes", type=int, default=nodes.NODES, help="nodes: resource nodes on one validator"
    )
    parser.add_argument(
        "--nodes-seconds",
        type=float,
        default=nodes.DURATION_S,
        help="nodes: seconds of each run's window",
    )
    parser.add_argument(
        "--validator-counts",
        metavar="N,N,...",
        help="validators: the network sizes, comma-separated (default 4,8,16; --quick: 4)",
    )
    parser.add_argument(
        "--validators-seconds",
        type=float,
        default=validators.DURATION_S,
        help="validators: seconds of load per network size",
    )
    parser.add_argument(
        "--validators-rate",
        type=float,
        default=validators.OFFERED_PER_S,
        help="validators: submitTask per second offered (well under capacity)",
    )
    parser.add_argument(
        "--validators-rounds",
        type=int,
        default=1,
        help="validators: every network size this many times, in turn (4, 8, 16, 4, ...)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: small counts, one round, a 10k ledger, short end-to-end runs",
    )
    parser.add_argument(
        "--cache-dir",
        default=str(REPO / ".data" / "bench-cache"),
        help="the peers (hardhat, anvil) and the filled ledgers, kept between runs",
    )
    parser.add_argument(
        "--json", default=str(REPO / ".data" / "bench" / "latest.json"), help="report file"
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    sizes = tuple(int(s) for s in args.read_sizes.split(",") if s)
    try:
        counts = (
            validators.parse_counts(args.validator_counts)
            if args.validator_counts is not None
            else (4,)
            if args.quick
            else validators.VALIDATOR_COUNTS
        )
    except ValueError as exc:
        print(f"bench.py: --{exc}", file=sys.stderr)
        return 2
    if args.validators_rounds < 1:
        print(
            f"bench.py: --validators-rounds: at least 1, got {args.validators_rounds}",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="inferchain-bench-") as work:
        opts = run.Options(
            genesis_path=REPO / "genesis.json",
            work_dir=Path(work),
            cache_dir=Path(args.cache_dir),
            sections=tuple(args.only or run.SECTIONS),
            peer=args.peer,
            count=500 if args.quick else args.count,
            rounds=1 if args.quick else args.rounds,
            read_sizes=(10_000,) if args.quick else sizes,
            e2e_duration_s=8.0 if args.quick else args.e2e_seconds,
            capacity_steps=(25.0,)
            if args.quick
            else tuple(float(r) for r in args.capacity_steps.split(",") if r),
            capacity_duration_s=8.0 if args.quick else capacity.DURATION_S,
            flood_sizes=floods.TINY if args.flood_size == "tiny" else floods.Sizes(),
            flood_attacks=tuple(args.attack or floods.ATTACKS),
            memory_tasks=min(args.memory_tasks, 10_000) if args.quick else args.memory_tasks,
            memory_step=min(args.memory_step, 5_000) if args.quick else args.memory_step,
            llm_tasks=min(args.llm_tasks, 4) if args.quick else args.llm_tasks,
            llm_results=min(args.llm_results, 10) if args.quick else args.llm_results,
            subs_blocks=10 if args.quick else subs.BLOCKS,
            node_count=min(args.nodes, 5) if args.quick else args.nodes,
            nodes_block_times=(nodes.FAST_BLOCK_TIME_MS,) if args.quick else None,
            nodes_duration_s=5.0 if args.quick else args.nodes_seconds,
            validator_counts=counts,
            validators_duration_s=5.0 if args.quick else args.validators_seconds,
            validators_rate=args.validators_rate,
            validators_rounds=1 if args.quick else args.validators_rounds,
        )
        report = asyncio.run(run.run(opts))
    write_json(Path(args.json), report)
    print(run.table(report))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
