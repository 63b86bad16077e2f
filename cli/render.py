"""How the command line shows what it read: rich tables and sentences on a terminal, and the
lines of a followed task (`TaskTracker`), which are also its JSON lines.

Amounts travel as decimal strings of base units (PROTOCOL 1); they are shown in AEGIS, exact
(18 decimals, trailing zeros dropped).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.table import Table

from chain.protocol.types import ResultStatus

BASE_UNITS_PER_AEGIS = 10**18
RESULT_STATUS = {int(status): status.name.lower() for status in ResultStatus}


def aegis(amount: Any) -> str:
    """Base units (an int or a decimal string) in AEGIS, exact: `1500000000000000` -> `0.0015`."""
    value = Decimal(int(amount)) / BASE_UNITS_PER_AEGIS
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def short(text: Any, keep: int = 10) -> str:
    """A long hash or address cut to its head and tail."""
    value = str(text)
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-4:]}"


def clip(text: Any, width: int = 60) -> str:
    value = repr(text) if not isinstance(text, str) else text
    value = value.replace("\n", " ")
    return value if len(value) <= width else value[: width - 1] + "…"


def fields_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, "" if value is None else str(value))
    return table


def task_table(task: dict[str, Any]) -> Table:
    return fields_table(
        f"task {task['taskHash']}",
        [
            ("status", task["status"]),
            ("sender", task["sender"]),
            ("nonce", task["nonce"]),
            ("model", task.get("model")),
            ("targetCount", task["targetCount"]),
            ("fee", f"{aegis(task['fee'])} AEGIS"),
            ("created", _at(task["createdHeight"])),
            ("finished", _at(task["finishedHeight"])),
            ("verifications", task["verificationCount"]),
            ("response", None if task["response"] is None else clip(task["response"], 200)),
        ],
    )


def _at(height: Any) -> str:
    return "pending (mempool)" if height is None else f"block {height}"


def results_table(task: dict[str, Any]) -> Table:
    table = Table(title="results", title_justify="left")
    for column in ("rank", "resource node", "status", "valid", "invalid", "result"):
        numeric = column in ("rank", "valid", "invalid")
        table.add_column(column, justify="right" if numeric else "left")
    for entry in task["executionInfo"]:
        valid = sum(1 for v in entry["verifications"] if v["valid"])
        table.add_row(
            str(entry["rank"]),
            entry["resourceNode"],
            RESULT_STATUS.get(entry["status"], str(entry["status"])),
            str(valid),
            str(len(entry["verifications"]) - valid),
            clip(entry["result"], 40),
        )
    return table


def settlement_rows(task: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The settlement of a decided task, one row per movement: (who, what, rank, AEGIS): the
    payouts, the slashes (negative), the refund to the sender and what was burned."""
    settlement = task["settlement"]
    if settlement is None:
        return []
    rows = [
        (p["address"], f"paid: {p['role']}", str(p["rank"]), aegis(p["amount"]))
        for p in settlement["payouts"]
    ]
    rows += [
        (s["address"], f"slashed: {s['reason']}", "", "-" + aegis(s["amount"]))
        for s in settlement["slashed"]
    ]
    rows.append((task["sender"], "refund", "", aegis(settlement["refund"])))
    rows.append(("", "burned", "", aegis(settlement["burned"])))
    return rows


def settlement_table(task: dict[str, Any]) -> Table:
    settlement = task["settlement"]
    title = (
        "settlement: not decided yet"
        if settlement is None
        else (
            f"settlement at block {settlement['height']}: fee {aegis(settlement['fee'])} AEGIS, "
            f"network reward {aegis(settlement['networkReward'])} AEGIS"
        )
    )
    table = Table(title=title, title_justify="left")
    table.add_column("address")
    table.add_column("what")
    table.add_column("rank", justify="right")
    table.add_column("AEGIS", justify="right")
    for row in settlement_rows(task):
        table.add_row(*row)
    return table


def account_table(account: dict[str, Any], node: dict[str, Any] | None) -> Table:
    rows: list[tuple[str, Any]] = [
        ("balance", f"{aegis(account['balance'])} AEGIS"),
        ("stake", f"{aegis(account['stake'])} AEGIS"),
        ("nonce", account["nonce"]),
        ("pending nonce", account.get("pendingNonce")),
        ("jailed", "yes" if account["jailed"] else "no"),
        ("at block", account.get("blockHeight")),
    ]
    record = account["resourceNode"]
    if record is None:
        rows.append(("resource node", "no"))
    else:
        rows += [("models", record["models"]), ("endpoint", record["endpoint"])]
        if node is not None and node.get("secrets") is not None:
            secrets = node["secrets"]
            rows.append(("secrets", _secrets(secrets)))
    return fields_table(f"account {account['address']}", rows)


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(nodes)} resource nodes", title_justify="left")
    for column in ("address", "stake (AEGIS)", "models", "endpoint", "jailed", "secrets"):
        table.add_column(column, justify="right" if column.startswith("stake") else "left")
    for node in nodes:
        secrets = node.get("secrets")
        table.add_row(
            node["address"],
            aegis(node["stake"]),
            node["models"],
            node["endpoint"],
            "yes" if node["jailed"] else "no",
            "none" if secrets is None else _secrets(secrets),
        )
    return table


def _secrets(secrets: dict[str, Any]) -> str:
    """A node's chain of secrets (PROTOCOL 4.13): where it starts and its last reveal."""
    height = secrets.get("revealedHeight")
    revealed = "none revealed" if height is None else f"revealed at block {height}"
    return f"from block {secrets['base']}, {revealed}"


def blocks_table(blocks: list[dict[str, Any]]) -> Table:
    table = Table(title="blocks", title_justify="left")
    for column in ("height", "hash", "time", "proposer", "txs"):
        table.add_column(column, justify="right" if column in ("height", "txs") else "left")
    for block in blocks:
        table.add_row(*block_cells(block))
    return table


def block_cells(block: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        str(block["height"]),
        short(block["hash"]),
        str(block["time"]),
        short(block["proposer"]),
        str(block["txCount"]),
    )


class TaskTracker:
    """A submitted task's life as lines: `submitted` (accepted), `included` (in a block), each
    `result`, `verdict` and `decided`, the task's status as it moves (`processing` while a slot
    is open, `completed` once every slot is taken), then `verified` or `failed`. Every line has
    `event`, `taskHash` and `height`."""

    def __init__(self, task_hash: str, target_count: int) -> None:
        self.task_hash = task_hash
        self.target_count = target_count
        self.results = 0
        self.verdicts = 0
        self.status = "submitted"

    def submitted(self, tx_hash: str, sender: str) -> dict[str, Any]:
        return {
            "event": "submitted",
            "taskHash": self.task_hash,
            "height": None,
            "txHash": tx_hash,
            "sender": sender,
        }

    def lines(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The lines one task event (PROTOCOL 5.6) makes."""
        kind = event["event"]
        base = {"taskHash": self.task_hash, "height": event["height"]}
        if kind == "submitted":
            return [{"event": "included", **base, "model": event.get("model")}]
        if kind == "result":
            self.results += 1
            out = [
                {
                    "event": "result",
                    **base,
                    "resourceNode": event["resourceNode"],
                    "rank": event["rank"],
                    "result": event["result"],
                }
            ]
            status = "completed" if self.results >= self.target_count else "processing"
            if status != self.status:
                self.status = status
                out.append({"event": status, **base})
            return out
        if kind == "verdict":
            self.verdicts += 1
            return [
                {
                    "event": "verdict",
                    **base,
                    "resourceNode": event["resourceNode"],
                    "verifier": event["verifier"],
                    "valid": event["valid"],
                    "seq": event["seq"],
                }
            ]
        if kind == "decided":
            status = RESULT_STATUS.get(event["status"], str(event["status"]))
            return [
                {
                    "event": "decided",
                    **base,
                    "resourceNode": event["resourceNode"],
                    "status": status,
                }
            ]
        if kind == "settled":
            self.status = event["status"]
            return [
                {
                    "event": event["status"],
                    **base,
                    "response": event["response"],
                    "verificationCount": event["verificationCount"],
                    "settlement": event["settlement"],
                }
            ]
        return []


def describe(line: dict[str, Any]) -> str:
    """One line of a followed task as a sentence for a terminal (rich markup)."""
    kind = line["event"]
    at = "" if line.get("height") is None else f"[dim]block {line['height']}[/dim]  "
    if kind == "submitted":
        return f"submitted {line['taskHash']} (tx {short(line['txHash'])})"
    if kind == "included":
        return f"{at}included, model {line['model']}"
    if kind == "result":
        node = short(line["resourceNode"])
        return f"{at}result #{line['rank']} from {node}: {clip(line['result'])}"
    if kind == "verdict":
        word = "[green]valid[/green]" if line["valid"] else "[red]invalid[/red]"
        return f"{at}verdict {word} on {short(line['resourceNode'])} by {short(line['verifier'])}"
    if kind == "decided":
        return f"{at}result of {short(line['resourceNode'])} decided: {line['status']}"
    if kind in ("processing", "completed"):
        return f"{at}[bold]{kind}[/bold]"
    if kind == "verified":
        return f"{at}[bold green]verified[/bold green]: {clip(line['response'], 120)}"
    if kind == "failed":
        return f"{at}[bold red]failed[/bold red]"
    return f"{at}{kind}"


def describe_change(line: dict[str, Any]) -> str:
    """A status change of `task watch` as a sentence."""
    moved = "new" if line["previous"] is None else line["previous"]
    return (
        f"[dim]block {line['height']}[/dim]  {line['taskHash']}  {moved} -> "
        f"[bold]{line['status']}[/bold]  (sender {short(line['sender'])})"
    )
