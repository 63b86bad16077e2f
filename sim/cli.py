"""`inferchain simulate`: the PoS+W simulator's subcommand of the project's command line
(cli/main.py adds it beside the chain's commands; `main` here runs it alone).

    inferchain simulate --nodes 9*honest 2*lazy 1*whale@20000 --tasks 500 --out sim-out
    inferchain simulate --population population.json --param verificationQuorum=1
    inferchain simulate --matrix --out docs/img
    inferchain simulate --imperfect --false-reject 0.01 --false-accept 0.02 --out docs/img
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
    false_accept_rates,
    parse_group,
    population_from_json,
    rate,
    temperature,
)
from sim.verification import ANY_FAULT, FAULT_KINDS, ErrorRates

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
        "AEGIS, default 2000); behaviours: honest, wrong:P, lazy, copying, late-copying, silent, "
        "sybil-pair, whale, other-prompt, truncated, other-model",
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
        "--false-reject",
        type=float,
        metavar="R",
        help="how often an honest verifier judges a right result invalid (0)",
    )
    parser.add_argument(
        "--false-accept",
        action="append",
        default=[],
        metavar="[KIND=]R",
        help="how often an honest verifier judges a wrong result valid: R for every fault, "
        f"KIND=R for one ({', '.join(FAULT_KINDS)}); repeat (0)",
    )
    parser.add_argument(
        "--temperature", type=float, help="the tasks' modelOptions.temperature (not named)"
    )
    parser.add_argument(
        "--min-temperature",
        type=float,
        help="the nodes run tasks with targetCount > 1 at least this hot (0)",
    )
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="run the default matrix (each bad behaviour at 0, 10, 20, 33%%) instead",
    )
    parser.add_argument(
        "--imperfect",
        action="store_true",
        help="run the imperfect-verification matrix instead: every behaviour at 20%% under no "
        "errors, the rates given by --false-reject and --false-accept (without them FR 0.01 "
        "and FA 0.02, placeholders) and 5 times them",
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


def error_rates(args: argparse.Namespace, base: ErrorRates) -> ErrorRates:
    """`base` with the rates the flags give over it."""
    false_reject = base.false_reject
    if args.false_reject is not None:
        false_reject = rate(args.false_reject, "--false-reject")
    accept = dict(base.false_accept)
    for text in args.false_accept:
        kind, _, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise PopulationError(f"--false-accept {text!r}: expected R or KIND=R") from None
        accept.update(false_accept_rates({kind or ANY_FAULT: number}, "--false-accept"))
    return ErrorRates.of(false_reject, accept)


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
            errors=error_rates(args, base.errors),
            temperature=(
                base.temperature
                if args.temperature is None
                else temperature(args.temperature, "--temperature")
            ),
            min_temperature=(
                base.min_temperature
                if args.min_temperature is None
                else temperature(args.min_temperature, "--min-temperature")
            ),
        )
    )


def run_simulate(args: argparse.Namespace, console: Console) -> int:
    if args.matrix:
        return run_matrix(args, console)
    if args.imperfect:
        return run_imperfect(args, console)
    population = population_of(args)
    started = time.perf_counter()
    outcome = simulate(population)
    seconds = time.perf_counter() - started
    report.print_table(outcome, console)
    if not population.errors.exact:
        console.print(
            f"{population.errors.label()}: {outcome.false_rejects} false rejects, "
            f"{outcome.false_accepts} false accepts"
        )
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


def run_imperfect(args: argparse.Namespace, console: Console) -> int:
    seed = 1 if args.seed is None else args.seed
    given = args.false_reject is not None or args.false_accept
    measured = error_rates(args, ErrorRates()) if given else matrix.PLACEHOLDER_RATES
    started = time.perf_counter()

    def progress(result: matrix.ImperfectResult) -> None:
        log.info("%s at %s", result.row, result.level)

    params = dict(param_value(t) for t in args.param) if args.param else None
    if params is not None and "canaryRateBps" not in params:
        params["canaryRateBps"] = matrix.canary_rate_bps(measured)
    results = matrix.run_imperfect(
        measured,
        tasks=args.tasks or matrix.MATRIX_TASKS,
        seed=seed,
        params=params,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    canary = results[0].population.chain_params().canary_rate_bps
    title = (
        f"net per node per task (mAEGIS) under imperfect verification, canaryRateBps {canary},"
        f" seed {seed}"
    )
    out = Table(title=title)
    out.add_column("behaviour")
    for level, _ in matrix.RATE_FACTORS:
        rates = next(r.rates for r in results if r.level == level)
        out.add_column(f"{level}\n{rates.label()}\nits nodes / honest", justify="right")
    rows = list(dict.fromkeys(r.row for r in results))
    by = {(r.row, r.level): r for r in results}
    for row in rows:
        cells = []
        for level, _ in matrix.RATE_FACTORS:
            result = by[(row, level)]
            mark = "" if result.honest_wins else " !"
            if row in matrix.FREE_RIDERS:
                mark = " (free rider)" if mark else ""
            cells.append(
                f"{result.bad / report.MILLI:,.1f} / {result.honest / report.MILLI:,.1f}{mark}"
            )
        out.add_row(row, *cells)
    console.print(out)
    console.print(
        "! : the behaviour earns at least what the honest nodes beside it earn; (free rider): "
        "so does a copier at temperature 0, whose copies are right results"
    )
    paths = matrix.imperfect_figure(results, args.out)
    console.print(f"{seconds:.1f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments: of `parse_args`, or of the `inferchain` parser (cli/main.py), to
    which `add_simulate` adds the same subcommand."""
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
