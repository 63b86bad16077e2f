"""`inferchain`: the project's command line. Its commands talk to a validator through the client
library (`rpc.client`), as any dApp does; `simulate` is the PoS+W simulator (sim/cli.py).

    inferchain task submit --prompt Hello --model demo --target 2 --wait
    inferchain task show 0x<taskHash>
    inferchain task watch [--sender 0x<address>]
    inferchain account show 0x<address>
    inferchain nodes
    inferchain blocks --count 5 --follow
    inferchain simulate --nodes 9*honest 2*lazy --tasks 100

Every chain command takes `--rpc URL` (default `$INFERCHAIN_RPC`, else the dev chain's,
http://127.0.0.1:8545). On a terminal it shows rich tables and live progress; with `--json`,
or whenever stdout is not a terminal, it prints one JSON object per line. Exit codes: 0 done
(a waited-for task verified), 1 a waited-for task failed, 2 bad input, no answer from `--rpc`,
or a refusal of the chain (its JSON-RPC message and `data` are printed); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from chain.protocol import wire
from chain.protocol.errors import InvalidParams
from cli import render
from cli.follow import block_line, follow_blocks, follow_task, watch_tasks
from rpc import api
from rpc.client import InferchainClient, RpcError, TransportError, Wallet
from sim import cli as sim_cli

log = logging.getLogger("inferchain")

DEFAULT_RPC = "http://127.0.0.1:8545"  # validator 0 of `make testnet`, and `make node`
RPC_VARIABLE = "INFERCHAIN_RPC"  # where --rpc is not given
EXIT_OK = 0
EXIT_FAILED = 1  # the task waited for failed
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
CALL_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 600.0
DEFAULT_BLOCKS = 10


class UsageError(Exception):
    """Bad input, found before anything is sent: the message names it."""


class Output:
    """Where a command's answers go: JSON lines, or rich renderings on a terminal."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr
        self.console = Console(file=stdout)

    def line(self, value: Any) -> None:
        """One JSON object on its own line, flushed at once (a reader may follow it)."""
        self.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.stdout.flush()

    def error(self, message: str) -> None:
        """One line on stderr (plain text: `data` may hold brackets rich would read)."""
        self.stderr.write("inferchain: error: " + " ".join(message.split()) + "\n")
        self.stderr.flush()


Command = Callable[[argparse.Namespace, InferchainClient, Output], Awaitable[int]]


# Input checked before it is sent


def checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--rpc {url!r}: expected an http:// or https:// URL")
    return url


def checked_hash(value: str, name: str) -> str:
    try:
        return wire.hex0x(wire.parse_hash(value, name))
    except InvalidParams:
        raise UsageError(f"{name} {value!r} is not a hash: expected 0x and 64 hex digits") from None


def checked_address(value: str, name: str) -> str:
    try:
        return wire.parse_address(value, name)
    except InvalidParams as exc:
        raise UsageError(f"{name} {value!r} is not an address: {exc.detail}") from None


def wallet_of(args: argparse.Namespace) -> Wallet:
    """The key `task submit` signs with: `--key FILE` (a hex private key), else dev account
    `--from K` (0)."""
    if args.key is not None:
        path = Path(args.key)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--key {path}: {exc.strerror or exc}") from None
        try:
            return Wallet.from_key(text)
        except ValueError as exc:
            raise UsageError(f"--key {path}: {exc}") from None
    index = 0 if args.dev_index is None else args.dev_index
    if index < 0:
        raise UsageError(f"--from {index}: a dev account's index is 0 or more")
    return Wallet.dev(index)


def model_options_of(args: argparse.Namespace) -> str:
    """The task's modelOptions JSON: the model, the sampling flags, then each `--option`."""
    options: dict[str, Any] = {"model": args.model}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    for text in args.option:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise UsageError(f"--option {text!r}: expected NAME=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return json.dumps(options, separators=(",", ":"))


# Commands


async def task_submit(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    wallet = wallet_of(args)
    model_options = model_options_of(args)
    from_height = await client.block_number() + 1 if args.wait else 0
    receipt = await client.submit_task(
        wallet,
        prompts=args.prompt,
        schema=args.schema,
        model_options=model_options,
        target_count=args.target,
    )
    tracker = render.TaskTracker(receipt.task_hash, args.target)
    submitted = tracker.submitted(receipt.tx_hash, wallet.address)
    if args.quiet:
        out.stdout.write(receipt.task_hash + "\n")
        out.stdout.flush()
    elif out.as_json:
        out.line(submitted)
    elif not args.wait:
        out.console.print(receipt.task_hash)
    if not args.wait:
        return EXIT_OK
    events = follow_task(client, receipt.task_hash, from_height)
    try:
        async with asyncio.timeout(args.wait_timeout):
            if out.as_json or args.quiet:
                await _follow_lines(events, tracker, out, quiet=args.quiet)
            else:
                await _follow_live(events, tracker, submitted, out)
    except TimeoutError:
        raise UsageError(
            f"task {receipt.task_hash} is not decided after {args.wait_timeout:g} s "
            f"(status {tracker.status}); `inferchain task show` it later"
        ) from None
    return EXIT_OK if tracker.status == "verified" else EXIT_FAILED


async def _follow_lines(
    events: AsyncGenerator[dict[str, Any], None],
    tracker: render.TaskTracker,
    out: Output,
    quiet: bool,
) -> None:
    async with aclosing(events) as stream:
        async for event in stream:
            for line in tracker.lines(event):
                if not quiet:
                    out.line(line)


async def _follow_live(
    events: AsyncGenerator[dict[str, Any], None],
    tracker: render.TaskTracker,
    submitted: dict[str, Any],
    out: Output,
) -> None:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("results"),
        TimeElapsedColumn(),
        console=out.console,
    )
    with progress:
        bar = progress.add_task("submitted", total=tracker.target_count)
        progress.console.print(render.describe(submitted))
        async with aclosing(events) as stream:
            async for event in stream:
                for line in tracker.lines(event):
                    progress.console.print(render.describe(line))
                progress.update(
                    bar,
                    completed=tracker.results,
                    description=f"{tracker.status}, {tracker.verdicts} verdicts",
                )


async def task_show(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    task = await client.query_task(checked_hash(args.hash, "HASH"))
    if out.as_json:
        out.line(task)
        return EXIT_OK
    show_task(out.console, task)
    return EXIT_OK


def show_task(console: Console, task: dict[str, Any]) -> None:
    """`task show` on a terminal: the task, its results and its settlement."""
    console.print(render.task_table(task))
    if task["executionInfo"]:
        console.print(render.results_table(task))
    console.print(render.settlement_table(task))


async def task_watch(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    sender = None if args.sender is None else checked_address(args.sender, "--sender")
    if args.from_height is not None and args.from_height < 0:
        raise UsageError(f"--from-height {args.from_height}: expected 0 or more")
    async with aclosing(watch_tasks(client, sender, args.from_height)) as changes:
        async for change in changes:
            if out.as_json:
                out.line(change.line())
            else:
                out.console.print(render.describe_change(change.line()))
    return EXIT_OK


async def account_show(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    address = checked_address(args.address, "ADDRESS")
    account = await client.get_account(address)
    if out.as_json:
        out.line(account)
        return EXIT_OK
    node = None
    if account["resourceNode"] is not None:
        nodes = await client.get_resource_nodes()
        node = next((n for n in nodes if n["address"] == account["address"]), None)
    out.console.print(render.account_table(account, node))
    return EXIT_OK


async def nodes(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    listed = await client.get_resource_nodes()
    if out.as_json:
        for node in listed:
            out.line(node)
    else:
        out.console.print(render.nodes_table(listed))
    return EXIT_OK


async def blocks(args: argparse.Namespace, client: InferchainClient, out: Output) -> int:
    if args.count < 0:
        raise UsageError(f"--count {args.count}: expected 0 or more")
    head = await client.block_number()
    heights = list(range(max(0, head - args.count + 1), head + 1)) if args.count else []
    answers = await client.batch([(api.GET_BLOCK, {"height": h}) for h in heights])
    last = []
    for answer in answers:
        if isinstance(answer, RpcError):
            raise answer
        last.append(block_line(answer))
    if out.as_json:
        for line in last:
            out.line(line)
    elif last:
        out.console.print(render.blocks_table(last))
    if not args.follow:
        return EXIT_OK
    async with aclosing(follow_blocks(client, head + 1)) as stream:
        async for line in stream:
            if out.as_json:
                out.line(line)
            else:
                out.console.print("  ".join(render.block_cells(line)))
    return EXIT_OK


# The parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferchain", description="inferchain: a client of the chain, and the PoS+W simulator"
    )
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    sim_cli.add_simulate(sub)

    chain = argparse.ArgumentParser(add_help=False)
    chain.add_argument(
        "--rpc",
        default=os.environ.get(RPC_VARIABLE, DEFAULT_RPC),
        metavar="URL",
        help=f"the validator (default ${RPC_VARIABLE}, else {DEFAULT_RPC})",
    )
    chain.add_argument(
        "--json", action="store_true", help="JSON lines (the default when stdout is no terminal)"
    )
    chain.add_argument(
        "--call-timeout",
        type=float,
        default=CALL_TIMEOUT_S,
        metavar="S",
        help=f"seconds for one call ({CALL_TIMEOUT_S:g})",
    )

    task = sub.add_parser("task", help="submit, show and watch tasks")
    task_sub = task.add_subparsers(dest="task_command", required=True)

    submit = task_sub.add_parser(
        "submit",
        parents=[chain],
        help="sign and submit a task",
        description="Sign a SubmitTask (dev account K, or the key in FILE), submit it and print "
        "its task hash; with --wait, follow it until it is verified (exit 0) or failed (1).",
    )
    submit.add_argument("--prompt", required=True, metavar="TEXT", help="the task's prompts")
    submit.add_argument("--model", required=True, metavar="NAME", help="modelOptions.model")
    submit.add_argument(
        "--target", type=int, default=1, metavar="N", help="targetCount: results wanted (1)"
    )
    signer = submit.add_mutually_exclusive_group()
    signer.add_argument(
        "--from", dest="dev_index", type=int, metavar="K", help="dev account K signs (0)"
    )
    signer.add_argument("--key", metavar="FILE", help="a file holding the hex private key")
    submit.add_argument("--schema", default="text", help="the result's schema (text)")
    submit.add_argument("--max-tokens", type=int, metavar="N", help="modelOptions.max_tokens")
    submit.add_argument("--temperature", type=float, help="modelOptions.temperature")
    submit.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another modelOptions member, VALUE as JSON or else text (repeat)",
    )
    submit.add_argument("--wait", action="store_true", help="follow the task until decided")
    submit.add_argument(
        "--wait-timeout",
        type=float,
        default=WAIT_TIMEOUT_S,
        metavar="S",
        help=f"give up waiting after S seconds, exit 2 ({WAIT_TIMEOUT_S:g})",
    )
    submit.add_argument(
        "-q", "--quiet", action="store_true", help="print the task hash only (for scripts)"
    )
    submit.set_defaults(run=task_submit)

    show = task_sub.add_parser(
        "show", parents=[chain], help="a task, its results and its settlement"
    )
    show.add_argument("hash", metavar="HASH", help="the task hash")
    show.set_defaults(run=task_show)

    watch = task_sub.add_parser(
        "watch", parents=[chain], help="every task status change as it happens"
    )
    watch.add_argument("--sender", metavar="ADDRESS", help="only this sender's tasks")
    watch.add_argument(
        "--from-height", type=int, metavar="H", help="from block H on (default: the next block)"
    )
    watch.set_defaults(run=task_watch)

    account = sub.add_parser("account", help="show an account")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    account_show_parser = account_sub.add_parser(
        "show", parents=[chain], help="balance, stake, nonces, resource node record"
    )
    account_show_parser.add_argument("address", metavar="ADDRESS")
    account_show_parser.set_defaults(run=account_show)

    nodes_parser = sub.add_parser("nodes", parents=[chain], help="the registered resource nodes")
    nodes_parser.set_defaults(run=nodes)

    blocks_parser = sub.add_parser("blocks", parents=[chain], help="the last blocks, and new ones")
    blocks_parser.add_argument(
        "--count", type=int, default=DEFAULT_BLOCKS, metavar="N", help="the last N blocks (10)"
    )
    blocks_parser.add_argument("--follow", action="store_true", help="then each new block")
    blocks_parser.set_defaults(run=blocks)
    return parser


async def run_command(args: argparse.Namespace, out: Output) -> int:
    """Run a chain command; every error it meets is one line on stderr and exit code 2."""
    url = args.rpc
    command: Command = args.run
    try:
        checked_url(url)
        async with InferchainClient(url, timeout=args.call_timeout) as client:
            return await command(args, client, out)
    except UsageError as exc:
        out.error(str(exc))
    except RpcError as exc:
        data = "" if exc.data is None else " " + json.dumps(exc.data, ensure_ascii=False)
        out.error(f"the chain refused: {exc.message} ({exc.code}){data}")
    except TransportError as exc:
        reason = str(exc.__cause__) if exc.__cause__ is not None else exc.text
        where = "" if exc.status is None else f" (HTTP {exc.status})"
        out.error(f"no answer from the chain at {url}{where}: {reason}")
    except ValueError as exc:  # an answer the client library found wrong
        out.error(str(exc))
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "simulate":
        return sim_cli.run(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    out = Output(args.json or not sys.stdout.isatty(), sys.stdout, sys.stderr)
    try:
        return asyncio.run(run_command(args, out))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
