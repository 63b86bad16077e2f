"""The network's capacity: the default testnet's verified tasks per second as the offered load
steps up, its knee, and graceful overload past it.

`capacity` runs `bench.e2e.end_to_end` once per step of the offered load (STEPS tasks per
second, each step on a fresh testnet at `block_time_ms`), with the validators' overload guard
off, so that each step measures what the network does with all it is offered. The knee is
the highest step the network kept up with: at least KEPT_UP of the offered rate verified, no
task failed, and the p50 within the e2e bound (`target.boundMs`: TARGET_BLOCKS observed block
intervals plus the inference). The capacity is the highest verified rate of any step.

Then the overload run: OVERLOAD_FACTOR times the capacity offered, with the guard on (PROTOCOL
5.11). Its load backs off as each refusal's `retryAfterMs` says; the figure is the share of
the accepted tasks that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import e2e
from bench.common import REPO

STEPS = (25.0, 50.0, 100.0, 150.0, 200.0, 300.0)
BLOCK_TIME_MS = 200
DURATION_S = 20.0
KEPT_UP = 0.9  # of the offered rate, verified, for a step to be under the knee
OVERLOAD_FACTOR = 4.0
CAPACITY_TARGET = 150.0  # verified per second at 200 ms blocks (the scale issue's target 2)
P50_TARGET_BLOCKS = 3  # ... with p50 at most this many block intervals at that load
OVERLOAD_FAILED_TARGET = 0.01  # at most this share of the accepted tasks fail at 4x


def kept_up(run: dict[str, Any]) -> bool:
    """Whether a step's network verified what it was offered, in time and without failures."""
    offered = float(run["offeredPerS"])
    p50 = run.get("latency", {}).get("p50_ms")
    bound = run.get("target", {}).get("boundMs")
    return (
        float(run.get("verifiedPerS") or 0) >= KEPT_UP * offered
        and run.get("failed", 0) == 0
        and run.get("undecided", 0) == 0
        and p50 is not None
        and bound is not None
        and p50 <= bound
    )


def knee(runs: Sequence[dict[str, Any]]) -> float | None:
    """The highest offered rate of a step that kept up, every lower step keeping up too; None
    when the first did not."""
    best = None
    for run in sorted(runs, key=lambda r: float(r["offeredPerS"])):
        if not kept_up(run):
            break
        best = float(run["offeredPerS"])
    return best


def step_row(run: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of a step."""
    latency = run.get("latency", {})
    interval = run.get("blockIntervalMs")
    p50 = latency.get("p50_ms")
    return {
        "offeredPerS": run["offeredPerS"],
        "verifiedPerS": run.get("verifiedPerS"),
        "p50Ms": p50,
        "p99Ms": latency.get("p99_ms"),
        "p50Blocks": None if p50 is None or not interval else round(p50 / interval, 2),
        "blockIntervalMs": interval,
        "accepted": run.get("accepted"),
        "failed": run.get("failed"),
        "undecided": run.get("undecided"),
        "cpuPercent": run.get("cpuPercent"),
        "keptUp": kept_up(run),
    }


def failed_share(run: dict[str, Any]) -> float | None:
    accepted = run.get("accepted") or 0
    return None if not accepted else float(run.get("failed", 0)) / accepted


def summary(steps: Sequence[dict[str, Any]], overload: dict[str, Any] | None) -> dict[str, Any]:
    """The figures of the capacity part from its runs: the steps' rows, the knee, the
    capacity, the p50 at the capacity target's load, and the overload run's failed share."""
    rows = [step_row(run) for run in steps]
    capacity_ = max((float(r["verifiedPerS"] or 0) for r in rows), default=0.0)
    at_target = next((r for r in rows if float(r["offeredPerS"]) == CAPACITY_TARGET), None)
    out: dict[str, Any] = {
        "steps": rows,
        "kneePerS": knee(steps),
        "capacityPerS": round(capacity_, 2),
        "p50BlocksAtTarget": None if at_target is None else at_target["p50Blocks"],
    }
    if overload is not None:
        out["overload"] = {
            "offeredPerS": overload["offeredPerS"],
            "accepted": overload.get("accepted"),
            "failed": overload.get("failed"),
            "failedShare": failed_share(overload),
            "refusals": overload.get("refusals"),
            "refusedThenAccepted": overload.get("refusedThenAccepted"),
            "verifiedPerS": overload.get("verifiedPerS"),
            "p50Ms": overload.get("latency", {}).get("p50_ms"),
        }
    return out


async def capacity(
    work_dir: Path,
    *,
    block_time_ms: int = BLOCK_TIME_MS,
    steps: Sequence[float] = STEPS,
    duration_s: float = DURATION_S,
    overload: bool = True,
    log_level: str = "WARNING",
) -> dict[str, Any]:
    """The steps, then (with `overload`) the overload run at OVERLOAD_FACTOR x the capacity;
    the JSON report: `summary` plus every run's own report under `runs`."""
    runs = []
    for rate in steps:
        runs.append(
            await e2e.end_to_end(
                work_dir / f"capacity-{rate:g}",
                block_time_ms,
                offered_per_s=rate,
                duration_s=duration_s,
                log_level=log_level,
                guard=False,
            )
        )
    over = None
    if overload:
        measured = max((float(r.get("verifiedPerS") or 0) for r in runs), default=0.0)
        over = await e2e.end_to_end(
            work_dir / "overload",
            block_time_ms,
            offered_per_s=max(OVERLOAD_FACTOR * measured, 1.0),
            duration_s=duration_s,
            log_level=log_level,
            guard=True,
        )
    return {
        "blockTimeMs": block_time_ms,
        **summary(runs, over),
        "runs": [*runs, *([over] if over else [])],
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.capacity [--steps 25,50,...] [--no-overload]`: JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--block-time", type=int, default=BLOCK_TIME_MS, metavar="MS")
    parser.add_argument(
        "--steps",
        default=",".join(f"{s:g}" for s in STEPS),
        help="offered tasks per second, comma-separated",
    )
    parser.add_argument("--duration", type=float, default=DURATION_S, metavar="S")
    parser.add_argument("--no-overload", action="store_true", help="skip the overload run")
    parser.add_argument("--work-dir", default=str(REPO / ".data" / "bench" / "capacity"))
    parser.add_argument("--log-level", default="WARNING", type=str.upper)
    args = parser.parse_args(argv)
    try:
        steps = [float(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--steps: not a list of numbers: {args.steps!r}")
    if not steps or min(steps) <= 0:
        parser.error("--steps: give at least one positive rate")
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(
        capacity(
            Path(args.work_dir),
            block_time_ms=args.block_time,
            steps=steps,
            duration_s=args.duration,
            overload=not args.no_overload,
        )
    )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
