"""What a run shows: a table per behaviour (printed with rich), the figures of cumulative net
earnings and stake per node over blocks (matplotlib, Agg, SVG and PNG) and the JSON of every
figure and of the summary, all into one directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sim.engine import Outcome

MILLI = 10**15  # amounts are shown in mAEGIS (1e-3 AEGIS)


@dataclass(frozen=True, slots=True)
class BehaviourRow:
    """One behaviour of a run: its nodes' totals, and their mean net per task (base units
    per node per task)."""

    behaviour: str
    nodes: int
    stake: int
    earned: int
    slashed: int
    canary: int
    jailed_at: tuple[int, ...]
    net_per_task: float

    def to_json(self) -> dict[str, Any]:
        return {
            "behaviour": self.behaviour,
            "nodes": self.nodes,
            "stake": str(self.stake),
            "earned": str(self.earned),
            "slashed": str(self.slashed),
            "canary": str(self.canary),
            "jailedAt": list(self.jailed_at),
            "netPerTask": self.net_per_task,
        }


def behaviour_rows(outcome: Outcome) -> list[BehaviourRow]:
    ledger = outcome.ledger
    task_count = max(1, len(outcome.tasks))
    labels = list(dict.fromkeys(m.label for m in outcome.members))
    rows = []
    for label in labels:
        members = [m for m in outcome.members if m.label == label]
        earned = sum(ledger.earned.get(m.address, 0) for m in members)
        slashed = sum(ledger.slashed.get(m.address, 0) for m in members)
        rows.append(
            BehaviourRow(
                behaviour=label,
                nodes=len(members),
                stake=sum(m.stake for m in members),
                earned=earned,
                slashed=slashed,
                canary=sum(ledger.canary.get(m.address, 0) for m in members),
                jailed_at=tuple(
                    sorted(
                        ledger.jailed_at[m.address]
                        for m in members
                        if m.address in ledger.jailed_at
                    )
                ),
                net_per_task=(earned - slashed) / len(members) / task_count,
            )
        )
    return rows


def summary_json(outcome: Outcome) -> dict[str, Any]:
    ledger = outcome.ledger
    return {
        "population": outcome.population.to_json(),
        "blocks": outcome.blocks,
        "tasks": len(outcome.tasks),
        "verified": sum(1 for t in outcome.tasks if t.status == "verified"),
        "behaviours": [row.to_json() for row in behaviour_rows(outcome)],
        "nodes": [
            {
                "address": m.address,
                "behaviour": m.label,
                "role": m.role,
                "stake": str(m.stake),
                "earned": str(ledger.earned.get(m.address, 0)),
                "slashed": str(ledger.slashed.get(m.address, 0)),
                "jailedAt": ledger.jailed_at.get(m.address),
            }
            for m in outcome.members
        ],
    }


def table(outcome: Outcome) -> Table:
    title = (
        f"{len(outcome.tasks)} tasks in {outcome.blocks} blocks, seed {outcome.population.seed}"
        " (amounts in mAEGIS)"
    )
    out = Table(title=title)
    for name in ("behaviour", "nodes", "earned", "slashed", "jailed at", "net per task"):
        out.add_column(name, justify="left" if name == "behaviour" else "right")
    for row in behaviour_rows(outcome):
        jailed = ", ".join(str(h) for h in row.jailed_at) or "-"
        out.add_row(
            row.behaviour,
            str(row.nodes),
            f"{row.earned / MILLI:,.1f}",
            f"{row.slashed / MILLI:,.1f}",
            jailed,
            f"{row.net_per_task / MILLI:,.3f}",
        )
    return out


def print_table(outcome: Outcome, console: Console | None = None) -> None:
    (console or Console()).print(table(outcome))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "inferchain"  # the same SVG for the same data
    return plt


COLOURS = {
    "honest": "tab:green",
    "lazy": "tab:orange",
    "copying": "tab:purple",
    "silent": "tab:gray",
    "sybil-pair": "tab:red",
    "whale": "tab:blue",
    "late-copying": "tab:pink",
    "other-prompt": "gold",
    "truncated": "tab:cyan",
    "other-model": "tab:olive",
}


def colour(label: str) -> str:
    return COLOURS.get(label.split(":")[0], "tab:brown")


def save_figure(fig: Any, out: Path, name: str, data: dict[str, Any]) -> list[Path]:
    """`name`.svg, `name`.png and `name`.json (the figure's data) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg", out / f"{name}.png", out / f"{name}.json"]
    fig.savefig(paths[0], metadata={"Date": None})
    fig.savefig(paths[1], dpi=110, metadata={"Software": None})
    paths[2].write_text(json.dumps(data, indent=1) + "\n")
    return paths


def earnings_figure(outcome: Outcome, out: Path) -> list[Path]:
    """Cumulative net earnings and stake per node over blocks, coloured by behaviour."""
    plt = _pyplot()
    ledger = outcome.ledger
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    seen: set[str] = set()
    for member in outcome.members:
        label = member.label if member.label not in seen else None
        seen.add(member.label)
        nets = [v / 10**18 for v in ledger.net_series[member.address]]
        stakes = [v / 10**18 for v in ledger.stake_series[member.address]]
        top.plot(ledger.heights, nets, color=colour(member.label), label=label, lw=1)
        bottom.plot(ledger.heights, stakes, color=colour(member.label), lw=1)
    top.set_ylabel("cumulative net earnings (AEGIS)")
    top.axhline(0, color="black", lw=0.5)
    top.legend(loc="best", fontsize="small")
    bottom.set_ylabel("stake (AEGIS)")
    bottom.set_xlabel("block")
    fig.suptitle(f"{len(outcome.tasks)} tasks, seed {outcome.population.seed}")
    fig.tight_layout()
    data = {
        "heights": ledger.heights,
        "nodes": [
            {
                "address": m.address,
                "behaviour": m.label,
                "net": [str(v) for v in ledger.net_series[m.address]],
                "stake": [str(v) for v in ledger.stake_series[m.address]],
            }
            for m in outcome.members
        ],
    }
    paths = save_figure(fig, out, "earnings", data)
    plt.close(fig)
    return paths


def write_run(outcome: Outcome, out: Path) -> list[Path]:
    """The summary JSON and the figures of one run, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    summary.write_text(json.dumps(summary_json(outcome), indent=1) + "\n")
    return [summary, *earnings_figure(outcome, out)]
