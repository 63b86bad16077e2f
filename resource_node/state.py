"""What a resource node has submitted, kept in a small JSON file and a journal beside it, so
a restart never resubmits.

Results are unique per (taskHash, node) and verdicts per (taskHash, verifier, submitter)
(PROTOCOL 3); the validator would answer a repeat with -32006, but a node that remembers does
not send it at all. An entry is recorded once the validator has answered (true, false or
-32006), so a node killed between sending and recording sends once more and gets -32006.

Each change is one line appended to the journal (`resource-node-<address>.journal`, JSON
lines), so a record costs the same however many tasks are remembered. Once the journal holds
more lines than the log holds tasks (at least `COMPACT_MIN`), the whole log is written to the
JSON file (`resource-node-<address>.json`) atomically (a temporary file, then `os.replace`)
and the journal is emptied: a crash leaves either the old file or the new one, never a torn
one, and a journal replayed over the file that already holds it gives the same log. A last
journal line cut short by a crash is dropped when the log is read; any other unreadable line
is an error naming the file and the line. The log keeps the most recent `max_tasks` tasks;
older ones are past their deadlines. It also records the validator's genesis hash: when the
chain was reset, the same task hash can come back, and the node forgets what it did on the old
chain. And it records the epoch of the chain of secrets the node committed last
(`resource_node.secrets`, PROTOCOL 4.13), synced to the disk before the commitment is sent, and
the `createdHeight` of the tasks it gave a result in, so that a restarted node knows which of
its secrets it may reveal.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from chain.protocol import wire

log = logging.getLogger(__name__)

STATE_VERSION = 1
DEFAULT_MAX_TASKS = 4096
COMPACT_MIN = 256  # journal lines before the file is rewritten, at the least

RESULT_OUTCOMES = ("accepted", "closed", "duplicate")


class StateError(Exception):
    """The state file cannot be read or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    outcome: str


def state_path(state_dir: str | Path, address: str) -> Path:
    """One file per node address, so nodes may share a state directory."""
    return Path(state_dir) / f"resource-node-{address.lower()}.json"


def journal_path(path: Path) -> Path:
    """The journal of the changes since the file at `path` was written."""
    return path.with_suffix(".journal")


def write_atomically(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same directory and os.replace."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class SubmissionLog:
    """Results and verdicts of one node, per task hash, optionally persisted at `path` (the
    file) and its journal."""

    def __init__(
        self,
        address: str,
        path: Path | None = None,
        *,
        max_tasks: int = DEFAULT_MAX_TASKS,
        fsync: bool = False,
    ) -> None:
        self.address = address
        self.path = path
        self.max_tasks = max_tasks
        self.fsync = fsync
        self.genesis_hash: str | None = None
        self.secrets_epoch: int | None = None
        self._results: dict[str, str] = {}
        self._heights: dict[str, int] = {}  # createdHeight of the tasks with a result
        self._verdicts: dict[str, dict[str, Verdict]] = {}
        self._order: dict[str, None] = {}  # task hashes, least recently touched first
        self._journal: BinaryIO | None = None  # open for appending once written to
        self._journal_lines = 0  # lines in the journal since the file was written

    @classmethod
    def load(
        cls,
        address: str,
        path: Path | None,
        *,
        max_tasks: int = DEFAULT_MAX_TASKS,
        fsync: bool = False,
    ) -> SubmissionLog:
        """The log at `path` and its journal (a new one when there is neither); StateError if
        either is unreadable."""
        log_ = cls(address, path, max_tasks=max_tasks, fsync=fsync)
        if path is None:
            return log_
        if path.exists():
            try:
                document = wire.parse_json(path.read_bytes())  # depth-bounded, as every body
            except (OSError, ValueError) as exc:
                raise StateError(f"state file {path}: cannot read it as JSON ({exc})") from exc
            log_._restore(document)
        torn = log_._replay(journal_path(path))
        if torn:  # appending after a cut line would join the two: write the file afresh
            log_.save()
        return log_

    def _restore(self, document: Any) -> None:
        where = f"state file {self.path}"
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise StateError(f"{where}: not a version {STATE_VERSION} resource node state")
        owner = document.get("address")
        if not isinstance(owner, str) or owner.lower() != self.address.lower():
            raise StateError(f"{where}: belongs to {owner!r}, not to {self.address}")
        genesis = document.get("genesisHash")
        self.genesis_hash = genesis if isinstance(genesis, str) else None
        self.secrets_epoch = _epoch(document.get("secretsEpoch"), where)
        tasks = document.get("tasks")
        if not isinstance(tasks, dict):
            raise StateError(f"{where}: `tasks` is not an object")
        for task_hash, entry in tasks.items():
            if not isinstance(entry, dict):
                raise StateError(f"{where}: task {task_hash} is not an object")
            key = task_hash.lower()
            result = entry.get("result")
            if result is not None:
                self._results[key] = _outcome(result, f"{where}: task {task_hash}: bad result")
            height = entry.get("createdHeight")
            if height is not None:
                self._heights[key] = _height(height, f"{where}: task {task_hash}")
            verdicts = entry.get("verdicts") or {}
            if not isinstance(verdicts, dict):
                raise StateError(f"{where}: task {task_hash}: `verdicts` is not an object")
            for submitter, verdict in verdicts.items():
                if not isinstance(verdict, dict) or not isinstance(verdict.get("valid"), bool):
                    raise StateError(f"{where}: task {task_hash}: bad verdict for {submitter}")
                outcome = _outcome(
                    verdict.get("outcome", "accepted"), f"{where}: task {task_hash}: bad verdict"
                )
                self._verdicts.setdefault(key, {})[submitter.lower()] = Verdict(
                    verdict["valid"], outcome
                )
            self._order[key] = None

    def _replay(self, path: Path) -> bool:
        """Apply the journal at `path`, if any; whether its last line was cut short."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StateError(f"state journal {path}: cannot read it ({exc})") from exc
        lines = data.split(b"\n")
        torn = lines.pop() != b""  # what follows the last newline: a line cut short, or nothing
        for number, line in enumerate(lines, 1):
            where = f"state journal {path}, line {number}"
            try:
                entry = wire.parse_json(line)
            except ValueError as exc:
                raise StateError(f"{where}: cannot read it as JSON ({exc})") from exc
            self._apply(entry, where)
        self._journal_lines = len(lines)
        return torn

    def _apply(self, entry: Any, where: str) -> None:
        """One journal line: a result, a verdict or a secrets epoch."""
        if not isinstance(entry, dict):
            raise StateError(f"{where}: not an object")
        if "result" in entry:
            key = _task_hash(entry["result"], where)
            height = entry.get("createdHeight")
            self._set_result(
                key,
                _outcome(entry.get("outcome"), f"{where}: bad result"),
                None if height is None else _height(height, where),
            )
        elif "verdict" in entry:
            key = _task_hash(entry["verdict"], where)
            submitter, valid = entry.get("submitter"), entry.get("valid")
            if not isinstance(submitter, str) or not isinstance(valid, bool):
                raise StateError(f"{where}: a verdict needs `submitter` and `valid`")
            self._set_verdict(key, submitter, valid, _outcome(entry.get("outcome"), where))
        elif "secretsEpoch" in entry:
            self.secrets_epoch = _epoch(entry["secretsEpoch"], where)
        else:
            raise StateError(f"{where}: neither a result, a verdict nor a secrets epoch")

    # Queries

    def has_result(self, task_hash: str) -> bool:
        return task_hash.lower() in self._results

    def result_outcome(self, task_hash: str) -> str | None:
        return self._results.get(task_hash.lower())

    def created_height(self, task_hash: str) -> int | None:
        """The createdHeight recorded with the node's result in the task, if any."""
        return self._heights.get(task_hash.lower())

    def results_since(self, height: int) -> dict[str, int]:
        """The tasks with a result of the node (accepted or duplicate: it may be on chain)
        created above `height`: task hash -> createdHeight."""
        return {
            key: created
            for key, created in self._heights.items()
            if created > height and self._results.get(key) in ("accepted", "duplicate")
        }

    def has_verdict(self, task_hash: str, submitter: str) -> bool:
        return submitter.lower() in self._verdicts.get(task_hash.lower(), {})

    def verdict(self, task_hash: str, submitter: str) -> Verdict | None:
        return self._verdicts.get(task_hash.lower(), {}).get(submitter.lower())

    def __len__(self) -> int:
        return len(self._order)

    # Changes (each one is saved at once)

    def record_result(
        self, task_hash: str, outcome: str, created_height: int | None = None
    ) -> None:
        if outcome not in RESULT_OUTCOMES:
            raise ValueError(f"result outcome must be one of {RESULT_OUTCOMES}, got {outcome!r}")
        key = task_hash.lower()
        self._set_result(key, outcome, created_height)
        entry: dict[str, Any] = {"result": key, "outcome": outcome}
        if created_height is not None:
            entry["createdHeight"] = created_height
        self._append(entry)

    def record_verdict(self, task_hash: str, submitter: str, valid: bool, outcome: str) -> None:
        key = task_hash.lower()
        self._set_verdict(key, submitter, valid, outcome)
        self._append(
            {"verdict": key, "submitter": submitter.lower(), "valid": valid, "outcome": outcome}
        )

    def record_secrets_epoch(self, epoch: int) -> None:
        """The epoch of the chain of secrets the node commits, saved before it is sent."""
        self.secrets_epoch = epoch
        self._append({"secretsEpoch": epoch}, fsync=True)  # on disk before the commitment

    def record_genesis(self, genesis_hash: str) -> None:
        """The genesis hash of the validator's chain, the first time the node sees it."""
        self.genesis_hash = genesis_hash
        self.save()

    def reset(self, genesis_hash: str | None) -> None:
        """Forget every task (the chain was reset) and remember the new genesis hash. The
        secrets epoch is kept: a later epoch is never one revealed before."""
        self._results.clear()
        self._heights.clear()
        self._verdicts.clear()
        self._order.clear()
        self.genesis_hash = genesis_hash
        self.save()

    def close(self) -> None:
        """Close the journal (it is opened again by the next change)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _set_result(self, key: str, outcome: str, created_height: int | None) -> None:
        self._results[key] = outcome
        if created_height is not None:
            self._heights[key] = created_height
        self._touch(key)

    def _set_verdict(self, key: str, submitter: str, valid: bool, outcome: str) -> None:
        self._verdicts.setdefault(key, {})[submitter.lower()] = Verdict(valid, outcome)
        self._touch(key)

    def _touch(self, key: str) -> None:
        self._order.pop(key, None)
        self._order[key] = None
        while len(self._order) > self.max_tasks:
            oldest = next(iter(self._order))
            del self._order[oldest]
            self._results.pop(oldest, None)
            self._heights.pop(oldest, None)
            self._verdicts.pop(oldest, None)

    # Persistence

    def to_json(self) -> dict[str, Any]:
        tasks: dict[str, Any] = {}
        for key in self._order:
            entry: dict[str, Any] = {}
            if key in self._results:
                entry["result"] = self._results[key]
            if key in self._heights:
                entry["createdHeight"] = self._heights[key]
            if key in self._verdicts:
                entry["verdicts"] = {
                    submitter: {"valid": verdict.valid, "outcome": verdict.outcome}
                    for submitter, verdict in self._verdicts[key].items()
                }
            tasks[key] = entry
        return {
            "version": STATE_VERSION,
            "address": self.address,
            "genesisHash": self.genesis_hash,
            "secretsEpoch": self.secrets_epoch,
            "tasks": tasks,
        }

    def _append(self, entry: dict[str, Any], *, fsync: bool = False) -> None:
        """One change on a line of the journal, or the whole file once the journal is longer
        than the log (nothing to do without a path)."""
        if self.path is None:
            return
        if self._journal_lines >= max(COMPACT_MIN, len(self._order)):
            self.save(fsync=fsync)
            return
        journal = journal_path(self.path)
        try:
            if self._journal is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = journal.open("ab")
            self._journal.write(orjson.dumps(entry) + b"\n")
            self._journal.flush()
            if self.fsync or fsync:
                os.fsync(self._journal.fileno())
        except OSError as exc:
            raise StateError(f"state journal {journal}: cannot write it ({exc})") from exc
        self._journal_lines += 1

    def save(self, *, fsync: bool = False) -> None:
        """Write the file atomically and empty the journal (nothing to do without a path);
        synced to the disk when the log was opened with `fsync` or `fsync` is given."""
        if self.path is None:
            return
        data = orjson.dumps(self.to_json())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data, fsync=self.fsync or fsync)
            self.close()
            with journal_path(self.path).open("wb"):  # the file holds all of it now
                pass
        except OSError as exc:
            raise StateError(f"state file {self.path}: cannot write it ({exc})") from exc
        self._journal_lines = 0


def _outcome(value: Any, where: str) -> str:
    if value not in RESULT_OUTCOMES:
        raise StateError(f"{where} outcome {value!r}")
    return str(value)


def _height(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StateError(f"{where}: bad createdHeight {value!r}")
    return value


def _epoch(value: Any, where: str) -> int | None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64
    ):
        raise StateError(f"{where}: `secretsEpoch` is not an epoch (8 bytes): {value!r}")
    return value


def _task_hash(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise StateError(f"{where}: bad task hash {value!r}")
    return value.lower()
