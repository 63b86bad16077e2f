"""`inferchain`: the project's command line. Each subcommand registers its parser in
`COMMANDS`; today `simulate` (the PoS+W simulator).

    inferchain simulate --nodes 9*honest 2*lazy 1*whale@20000 --tasks 500 --out sim-out
    inferchain simulate --population population.json --param verificationQuorum=1
    inferchain simulate --matrix --out docs/img
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sim import matrix, report
from sim.engine import simulate
from sim.population import (
    Population,
    PopulationError,
    checked,
    parse_group,
    population_from_json,
)

log = logging.getLogger("inferchain")


def add_simulate(sub: Any) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run the PoS+W rules over a population of behaviours",
        description="Run the chain's own rules (chain.protocol) over a population of resource "
        "nodes, block by block, in this process; print a table per behaviour and write the "
        "figures and their JSON into --out.",
    )
    parser.add_argument(
        "--nodes",
        nargs="+",
        metavar="COUNT*BEHAVIOUR[@STAKE]",
        help="groups of nodes, e.g. 8*honest 2*wrong:0.2 1*sybil-pair 1*whale@40000 (stake in "
        "AEGIS, default 2000); behaviours: honest, wrong:P, lazy, copying, silent, sybil-pair, "
        "whale",
    )
    parser.add_argument("--population", type=Path, help="a population as a JSON file")
    parser.add_argument("--tasks", type=int, help="how many tasks the senders send (400)")
    parser.add_argument("--seed", type=int, help="the seed of keys and draws (1)")
    parser.add_argument("--task-rate", type=int, help="tasks sent per block (4)")
    parser.add_argument("--target-count", type=int, help="slots per task (3)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a genesis param override, e.g. verificationQuorum=1 (repeat)",
    )
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="run the default matrix (each bad behaviour at 0, 10, 20, 33%%) instead",
    )
    parser.add_argument("--out", type=Path, default=Path("sim-out"), help="output directory")
    parser.set_defaults(run=run_simulate)


COMMANDS: list[Callable[[Any], None]] = [add_simulate]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inferchain", description="inferchain tools")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser.parse_args(argv)


def param_value(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise PopulationError(f"--param {text!r}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def population_of(args: argparse.Namespace) -> Population:
    if args.population is not None:
        base = population_from_json(json.loads(args.population.read_text()))
    else:
        groups = tuple(parse_group(t) for t in args.nodes or ["10*honest", "2*lazy"])
        base = Population(groups)
    params = dict(base.params)
    params.update(param_value(t) for t in args.param)
    return checked(
        Population(
            base.groups if not args.nodes else tuple(parse_group(t) for t in args.nodes),
            tasks=args.tasks or base.tasks,
            seed=base.seed if args.seed is None else args.seed,
            params=params,
            task_rate=args.task_rate or base.task_rate,
            target_count=args.target_count or base.target_count,
        )
    )


def run_simulate(args: argparse.Namespace, console: Console) -> int:
    if args.matrix:
        return run_matrix(args, console)
    population = population_of(args)
    started = time.perf_counter()
    outcome = simulate(population)
    seconds = time.perf_counter() - started
    report.print_table(outcome, console)
    paths = report.write_run(outcome, args.out)
    console.print(f"{seconds:.1f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def run_matrix(args: argparse.Namespace, console: Console) -> int:
    seed = 1 if args.seed is None else args.seed
    cells = matrix.default_cells(tasks=args.tasks or matrix.MATRIX_TASKS, seed=seed)
    started = time.perf_counter()

    def progress(result: matrix.CellResult) -> None:
        log.info("%s at %.0f%%: %.2f s", result.behaviour, 100 * result.share, result.seconds)

    results = matrix.run_matrix(cells, progress)
    seconds = time.perf_counter() - started
    out = Table(title=f"net per node per task (mAEGIS), {len(cells)} populations, seed {seed}")
    out.add_column("behaviour")
    out.add_column("share", justify="right")
    out.add_column("its nodes", justify="right")
    out.add_column("honest nodes", justify="right")
    for result in results:
        out.add_row(
            result.behaviour,
            f"{100 * result.share:.0f}%",
            f"{result.net_per_task[result.behaviour] / report.MILLI:,.3f}",
            f"{result.net_per_task['honest'] / report.MILLI:,.3f}",
        )
    console.print(out)
    paths = matrix.matrix_figure(results, args.out)
    console.print(f"{seconds:.1f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    console = Console()
    try:
        code: int = args.run(args, console)
    except PopulationError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
