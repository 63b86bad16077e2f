"""A dApp backend on inferchain, with the project's client library (`rpc.client`): submit a
task, follow it over the validator's WebSocket as the chain makes it, then show how it was
settled, who was paid and who was slashed.

    .venv/bin/python examples/python/dapp.py [--rpc http://127.0.0.1:8545]

It signs as dev account 0 of the dev mnemonic, or with the key in `--key FILE`. Each event of
the task is printed as it comes (`submitted`, `result`, `verdict`, `decided`, `settled`:
PROTOCOL 5.6), then the settlement (PROTOCOL 4.8), in words and as one JSON line. The task is
then read back with queryTask: the exit status is 0 when the settlement the subscription told
is the chain's, 1 when it is not, 2 for a bad option, 3 when the validator cannot be reached,
refuses the task or does not settle it in `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rpc.client import InferchainClient, RpcError, TransportError, Wallet

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_PROMPT = "Translate to French: Hello, world!"
# executionInfo[].status (PROTOCOL 4): what a decided result is
RESULT_STATUSES = {0: "pending", 1: "verifying", 2: "verified", 3: "rejected", 4: "unverified"}
MATCHED, MISMATCHED, BAD_OPTION, UNREACHABLE = 0, 1, 2, 3

log = logging.getLogger("dapp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Submit a task and follow it to its settlement")
    parser.add_argument("--rpc", default=DEFAULT_RPC, metavar="URL", help="a validator's URL")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="what to ask")
    parser.add_argument("--model", default="demo", help="the model to ask (default demo)")
    parser.add_argument(
        "--target-count", type=int, default=1, metavar="N", help="results wanted (default 1)"
    )
    parser.add_argument(
        "--key", metavar="FILE", help="a file holding the private key (default: dev account 0)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for it"
    )
    return parser.parse_args(argv)


def wallet_of(args: argparse.Namespace) -> Wallet:
    """The signer: `--key FILE`, or dev account 0; ValueError naming the option."""
    if args.key is None:
        return Wallet.dev(0)
    try:
        return Wallet.from_key(Path(args.key).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"--key {args.key}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise ValueError(f"--key {args.key}: {exc}") from exc


def describe(event: dict[str, Any]) -> str:
    """One event of the task, in words."""
    kind = event["event"]
    where = f"block {event['height']}: {kind}"
    if kind == "submitted":
        return f"{where} (model {event.get('model')})"
    if kind == "result":
        return f"{where} from {event['resourceNode']} (rank {event['rank']}): {event['result']!r}"
    if kind == "verdict":
        judged = "valid" if event["valid"] else "invalid"
        return f"{where} of {event['verifier']} on {event['resourceNode']}'s result: {judged}"
    if kind == "decided":
        status = RESULT_STATUSES.get(event["status"], str(event["status"]))
        return f"{where}: {event['resourceNode']}'s result is {status}"
    if kind == "settled":
        return f"{where}: the task is {event['status']}, response {event['response']!r}"
    return f"{where} {json.dumps(event)}"


def settlement_lines(settlement: dict[str, Any]) -> list[str]:
    """Who was paid and who was slashed, and where the rest of the fee went (PROTOCOL 4.8)."""
    lines = [
        f"settlement at block {settlement['height']}: fee {settlement['fee']}, network reward "
        f"{settlement['networkReward']}, refund {settlement['refund']}, burned "
        f"{settlement['burned']}"
    ]
    for payout in settlement["payouts"]:
        lines.append(
            f"  paid {payout['address']} {payout['amount']} ({payout['role']}, rank "
            f"{payout['rank']})"
        )
    for slash in settlement["slashed"]:
        lines.append(f"  slashed {slash['address']} {slash['amount']} ({slash['reason']})")
    if not settlement["payouts"]:
        lines.append("  nobody was paid")
    if not settlement["slashed"]:
        lines.append("  nobody was slashed")
    return lines


async def follow(client: InferchainClient, args: argparse.Namespace, wallet: Wallet) -> int:
    # The height before the task: the subscription replays from there, so that no event of
    # the task is missed however soon it comes.
    height = await client.block_number()
    receipt = await client.submit_task(
        wallet,
        prompts=json.dumps({"prompt": args.prompt}),
        model_options=json.dumps({"model": args.model}),
        target_count=args.target_count,
    )
    print(f"task {receipt.task_hash} submitted by {wallet.address}", flush=True)
    settled: dict[str, Any] | None = None
    events = client.subscribe("task", taskHash=receipt.task_hash, fromHeight=height)
    try:
        async with asyncio.timeout(args.timeout):
            async for event in events:
                print(describe(event), flush=True)
                if event["event"] == "settled":
                    settled = event
                    break
    finally:
        await events.aclose()
    assert settled is not None
    for line in settlement_lines(settled["settlement"]):
        print(line)
    print("settlement " + json.dumps(settled["settlement"], sort_keys=True), flush=True)

    task = await client.query_task(receipt.task_hash)
    if task["settlement"] != settled["settlement"] or task["status"] != settled["status"]:
        print(f"queryTask answers another settlement: {json.dumps(task['settlement'])}")
        return MISMATCHED
    print(f"verified: queryTask shows the same settlement (task {task['status']})", flush=True)
    return MATCHED


async def main_async(args: argparse.Namespace) -> int:
    try:
        wallet = wallet_of(args)
    except ValueError as exc:
        log.error("%s", exc)
        return BAD_OPTION
    async with InferchainClient(args.rpc) as client:
        try:
            return await follow(client, args, wallet)
        except (RpcError, TransportError) as exc:
            log.error("%s: %s", args.rpc, exc)
        except TimeoutError:
            log.error("the task was not settled in %g s", args.timeout)
    return UNREACHABLE


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
