"""The default matrix: populations mixing 0 to 33% of each bad behaviour with honest nodes,
each run with the same seed, and the summary figure of net per task by behaviour and share.

A behaviour's share is of the nodes (a sybil pair counts as two); a whale's is of the stake
(one node staking that share of all the nodes' stake).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.engine import simulate
from sim.population import BAD_BEHAVIOURS, DEFAULT_STAKE, Group, Population
from sim.report import _pyplot, behaviour_rows, colour, save_figure

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
