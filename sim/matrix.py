"""The default matrix: populations mixing 0 to 33% of each bad behaviour with honest nodes,
each run with the same seed, and the summary figure of net per task by behaviour and share;
and the imperfect matrix: each behaviour, fault of a real-model network and copier at
temperature 0 at 20%, under no verification errors, the measured rates and five times them.

A behaviour's share is of the nodes (a sybil pair counts as two); a whale's is of the stake
(one node staking that share of all the nodes' stake).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sim.engine import simulate
from sim.population import BAD_BEHAVIOURS, DEFAULT_STAKE, OUTPUT_FAULTS, Group, Population
from sim.report import _pyplot, behaviour_rows, colour, save_figure
from sim.verification import ANY_FAULT, ErrorRates

NODES = 12
SHARES = (0.10, 0.20, 0.33)
MATRIX_TASKS = 240
WRONG_P = 0.2


@dataclass(frozen=True, slots=True)
class Cell:
    """One population of the matrix: `behaviour` at `share` with honest nodes."""

    behaviour: str
    share: float
    population: Population


def cell_population(
    behaviour: str, share: float, *, tasks: int, seed: int, nodes: int = NODES
) -> Population:
    if behaviour == "whale":
        honest = nodes - 1
        stake = round(share / (1 - share) * honest * DEFAULT_STAKE)
        groups = [Group("honest", honest), Group("whale", 1, stake)]
    else:
        bad = max(1, round(share * nodes))
        if behaviour == "sybil-pair":
            pairs = max(1, bad // 2)
            groups = [Group("honest", nodes - 2 * pairs), Group("sybil-pair", pairs)]
        elif behaviour == "wrong":
            groups = [Group("honest", nodes - bad), Group("wrong", bad, p=WRONG_P)]
        else:
            groups = [Group("honest", nodes - bad), Group(behaviour, bad)]
    return Population(tuple(groups), tasks=tasks, seed=seed)


def default_cells(
    *,
    tasks: int = MATRIX_TASKS,
    seed: int = 1,
    shares: Sequence[float] = SHARES,
    behaviours: Sequence[str] = BAD_BEHAVIOURS,
) -> list[Cell]:
    cells = [Cell("honest", 0.0, Population((Group("honest", NODES),), tasks=tasks, seed=seed))]
    for behaviour in behaviours:
        for share in shares:
            cells.append(
                Cell(behaviour, share, cell_population(behaviour, share, tasks=tasks, seed=seed))
            )
    return cells


@dataclass(frozen=True, slots=True)
class CellResult:
    behaviour: str
    share: float
    net_per_task: dict[str, float]  # behaviour label -> mean net per node per task
    seconds: float
    population: Population

    def to_json(self) -> dict[str, Any]:
        return {
            "behaviour": self.behaviour,
            "share": self.share,
            "population": self.population.to_json(),
            "netPerTask": self.net_per_task,
            "seconds": round(self.seconds, 3),
        }


def run_cell(cell: Cell) -> CellResult:
    started = time.perf_counter()
    outcome = simulate(cell.population)
    net = {row.behaviour.split(":")[0]: row.net_per_task for row in behaviour_rows(outcome)}
    return CellResult(
        cell.behaviour, cell.share, net, time.perf_counter() - started, cell.population
    )


def run_matrix(
    cells: Sequence[Cell], progress: Callable[[CellResult], None] | None = None
) -> list[CellResult]:
    results = []
    for cell in cells:
        result = run_cell(cell)
        if progress is not None:
            progress(result)
        results.append(result)
    return results


def matrix_figure(results: Sequence[CellResult], out: Path, name: str = "sim-matrix") -> list[Path]:
    """Net per task by behaviour and share (left: the bad behaviour's nodes; right: the honest
    nodes of the same populations), in mAEGIS per node per task."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    baseline = next((r for r in results if r.behaviour == "honest"), None)
    behaviours = list(dict.fromkeys(r.behaviour for r in results if r.behaviour != "honest"))
    for behaviour in behaviours:
        cells = sorted((r for r in results if r.behaviour == behaviour), key=lambda r: r.share)
        shares = [100 * r.share for r in cells]
        left.plot(
            shares,
            [r.net_per_task[behaviour] / 10**15 for r in cells],
            marker="o",
            color=colour(behaviour),
            label=behaviour,
        )
        right.plot(
            shares,
            [r.net_per_task["honest"] / 10**15 for r in cells],
            marker="o",
            color=colour(behaviour),
            label=f"with {behaviour}",
        )
    if baseline is not None:
        honest = baseline.net_per_task["honest"] / 10**15
        for axis in (left, right):
            axis.axhline(honest, color="tab:green", ls="--", lw=1, label="all honest")
    for axis in (left, right):
        axis.set_yscale("symlog", linthresh=1)
    left.set_title("the bad behaviour's nodes")
    right.set_title("the honest nodes beside them")
    for axis in (left, right):
        axis.set_xlabel("share of the bad behaviour (%)")
        axis.legend(fontsize="small")
    left.set_ylabel("net per node per task (mAEGIS)")
    fig.tight_layout()
    data = {"cells": [r.to_json() for r in results], "unit": "base units per node per task"}
    paths = save_figure(fig, out, name, data)
    plt.close(fig)
    return paths


# Imperfect verification (sim.verification): the behaviours, the faults of real-model networks
# and the copier at temperature 0, each at IMPERFECT_SHARE of the nodes, at three levels of
# error rates: none, the measured rates, and five times them.
IMPERFECT_SHARE = 0.20
# Placeholders until the verification's measured rates are passed (--false-reject,
# --false-accept): FR 0.01 and FA 0.02 for every fault.
PLACEHOLDER_RATES = ErrorRates.of(0.01, {ANY_FAULT: 0.02})
# A lazy verifier loses canaryRateBps of its verdicts to forced errors, an honest one about FR
# of them to false rejects, each at the same verifierSlashBps: at canaryRateBps = FR the two
# break even (over 5 seeds at FR 0.01 and 100 bps, lazy came out ahead in 2). The matrix's
# network runs forced errors at CANARY_MARGIN times the measured FR, at least the default.
CANARY_MARGIN = 3
RATE_FACTORS = (("exact", 0.0), ("measured", 1.0), ("5x measured", 5.0))
# Rows at temperature 0 (every task's modelOptions.temperature 0), and with the nodes
# raising tasks of more than one slot to at least RAISED_TEMPERATURE.
T0 = ", t=0"
RAISED = ", t=0, nodes >= 0.5"
RAISED_TEMPERATURE = 0.5
IMPERFECT_ROWS = (
    "honest",
    *BAD_BEHAVIOURS,
    *OUTPUT_FAULTS,
    "copying" + T0,
    "late-copying" + T0,
    "late-copying" + RAISED,
)
# A copier of tasks run at temperature 0 copies right results: a free rider the rules cannot
# see. One that copies only results already verified (never another node's forced error) and
# makes its own forced errors earns as an honest node without computing. Raising the
# temperature of tasks with more than one slot makes its copies wrong results again.
FREE_RIDERS = ("copying" + T0, "late-copying" + T0)


def canary_rate_bps(measured: ErrorRates) -> int:
    """The forced-error rate a network verified at `measured` needs (CANARY_MARGIN)."""
    default = Population((Group("honest", 2),)).chain_params().canary_rate_bps
    return max(default, math.ceil(round(CANARY_MARGIN * measured.false_reject * 10_000, 6)))


def row_population(
    row: str, *, tasks: int, seed: int, params: dict[str, Any] | None = None
) -> Population:
    if row == "honest":
        base = Population((Group("honest", NODES),), tasks=tasks, seed=seed)
    else:
        base = cell_population(row_behaviour(row), IMPERFECT_SHARE, tasks=tasks, seed=seed)
    base = replace(base, params=dict(params or {}))
    if row.endswith(RAISED):
        return replace(base, temperature=0.0, min_temperature=RAISED_TEMPERATURE)
    if row.endswith(T0):
        return replace(base, temperature=0.0)
    return base


def row_behaviour(row: str) -> str:
    """The behaviour label a row's bad nodes carry in its outcome."""
    return row.split(",")[0]


@dataclass(frozen=True, slots=True)
class ImperfectResult:
    """One row of the imperfect matrix at one level of error rates."""

    row: str
    level: str
    rates: ErrorRates
    net_per_task: dict[str, float]
    false_rejects: int
    false_accepts: int
    population: Population

    @property
    def bad(self) -> float:
        return self.net_per_task[row_behaviour(self.row)]

    @property
    def honest(self) -> float:
        return self.net_per_task["honest"]

    @property
    def honest_wins(self) -> bool:
        """Whether the honest nodes out-earn the row's behaviour (the all-honest row: trivially)."""
        return self.row == "honest" or self.bad < self.honest

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "level": self.level,
            **self.rates.to_json(),
            "population": self.population.to_json(),
            "netPerTask": self.net_per_task,
            "falseRejects": self.false_rejects,
            "falseAccepts": self.false_accepts,
        }


def run_imperfect_row(
    row: str,
    level: str,
    rates: ErrorRates,
    *,
    tasks: int = MATRIX_TASKS,
    seed: int = 1,
    params: dict[str, Any] | None = None,
) -> ImperfectResult:
    population = row_population(row, tasks=tasks, seed=seed, params=params).with_errors(rates)
    outcome = simulate(population)
    net = {r.behaviour.split(":")[0]: r.net_per_task for r in behaviour_rows(outcome)}
    return ImperfectResult(
        row, level, rates, net, outcome.false_rejects, outcome.false_accepts, population
    )


def run_imperfect(
    measured: ErrorRates = PLACEHOLDER_RATES,
    *,
    tasks: int = MATRIX_TASKS,
    seed: int = 1,
    rows: Sequence[str] = IMPERFECT_ROWS,
    params: dict[str, Any] | None = None,
    progress: Callable[[ImperfectResult], None] | None = None,
) -> list[ImperfectResult]:
    """Every row at no errors, at the `measured` rates and at five times them, on one network:
    genesis `params`, by default forced errors at `canary_rate_bps(measured)`."""
    if params is None:
        params = {"canaryRateBps": canary_rate_bps(measured)}
    results = []
    for level, factor in RATE_FACTORS:
        for row in rows:
            result = run_imperfect_row(
                row, level, measured.scaled(factor), tasks=tasks, seed=seed, params=params
            )
            if progress is not None:
                progress(result)
            results.append(result)
    return results


def imperfect_figure(
    results: Sequence[ImperfectResult], out: Path, name: str = "sim-imperfect"
) -> list[Path]:
    """Net per task by behaviour at each level of error rates (left: the behaviour's nodes;
    right: the honest nodes of the same populations), in mAEGIS per node per task."""
    plt = _pyplot()
    rows = list(dict.fromkeys(r.row for r in results))
    levels = list(dict.fromkeys(r.level for r in results))
    by = {(r.row, r.level): r for r in results}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 2), sharey=True)
    height = 0.8 / len(levels)
    shades = ("tab:gray", "tab:blue", "tab:red")
    for i, level in enumerate(levels):
        label = f"{level}: {by[(rows[0], level)].rates.label()}"
        ys = [k + (i - (len(levels) - 1) / 2) * height for k in range(len(rows))]
        for axis, value in ((left, "bad"), (right, "honest")):
            axis.barh(
                ys,
                [getattr(by[(row, level)], value) / 10**15 for row in rows],
                height=height,
                color=shades[i % len(shades)],
                label=label,
            )
    for axis in (left, right):
        axis.set_xscale("symlog", linthresh=1)
        axis.axvline(0, color="black", lw=0.5)
        axis.set_xlabel("net per node per task (mAEGIS)")
    left.set_yticks(range(len(rows)), rows)
    left.invert_yaxis()
    left.set_title("the behaviour's nodes")
    right.set_title("the honest nodes beside them")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(levels), fontsize="small")
    canary = results[0].population.chain_params().canary_rate_bps if results else 0
    fig.suptitle(
        f"PoS+W under imperfect verification: each behaviour at {int(100 * IMPERFECT_SHARE)}%"
        f" of {NODES} nodes, canaryRateBps {canary}"
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    data = {"results": [r.to_json() for r in results], "unit": "base units per node per task"}
    paths = save_figure(fig, out, name, data)
    plt.close(fig)
    return paths
