"""What a resource node has submitted, kept in a small JSON file so a restart never resubmits.

Results are unique per (taskHash, node) and verdicts per (taskHash, verifier, submitter)
(PROTOCOL 3); the validator would answer a repeat with -32006, but a node that remembers does
not send it at all. An entry is recorded once the validator has answered (true, false or
-32006), so a node killed between sending and recording sends once more and gets -32006.

The file is rewritten whole on every change, atomically (a temporary file, then
`os.replace`), so a crash leaves either the old or the new file, never a torn one. It keeps
the most recent `max_tasks` tasks; older ones are past their deadlines. It also records the
validator's genesis hash: when the chain was reset, the same task hash can come back, and the
node forgets what it did on the old chain. And it records the epoch of the chain of secrets
the node committed last (`resource_node.secrets`, PROTOCOL 4.13), and the `createdHeight` of the
tasks it gave a result in, so that a restarted node knows which of its secrets it may reveal.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.protocol import wire

log = logging.getLogger(__name__)

STATE_VERSION = 1
DEFAULT_MAX_TASKS = 4096

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
    """Results and verdicts of one node, per task hash, optionally persisted at `path`."""

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

    @classmethod
    def load(
        cls,
        address: str,
        path: Path | None,
        *,
        max_tasks: int = DEFAULT_MAX_TASKS,
        fsync: bool = False,
    ) -> SubmissionLog:
        """The log at `path` (a new one when there is no file); StateError if unreadable."""
        log_ = cls(address, path, max_tasks=max_tasks, fsync=fsync)
        if path is None or not path.exists():
            return log_
        try:
            document = wire.parse_json(path.read_bytes())  # depth-bounded, as every body
        except (OSError, ValueError) as exc:
            raise StateError(f"state file {path}: cannot read it as JSON ({exc})") from exc
        log_._restore(document)
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
        epoch = document.get("secretsEpoch")
        if epoch is not None and (
            not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 1 << 64
        ):
            raise StateError(f"{where}: `secretsEpoch` is not an epoch (8 bytes): {epoch!r}")
        self.secrets_epoch = epoch
        tasks = document.get("tasks")
        if not isinstance(tasks, dict):
            raise StateError(f"{where}: `tasks` is not an object")
        for task_hash, entry in tasks.items():
            if not isinstance(entry, dict):
                raise StateError(f"{where}: task {task_hash} is not an object")
            key = task_hash.lower()
            result = entry.get("result")
            if result is not None:
                if result not in RESULT_OUTCOMES:
                    raise StateError(f"{where}: task {task_hash}: bad result outcome {result!r}")
                self._results[key] = result
            height = entry.get("createdHeight")
            if height is not None:
                if not isinstance(height, int) or isinstance(height, bool) or height < 0:
                    raise StateError(f"{where}: task {task_hash}: bad createdHeight {height!r}")
                self._heights[key] = height
            verdicts = entry.get("verdicts") or {}
            if not isinstance(verdicts, dict):
                raise StateError(f"{where}: task {task_hash}: `verdicts` is not an object")
            for submitter, verdict in verdicts.items():
                if not isinstance(verdict, dict) or not isinstance(verdict.get("valid"), bool):
                    raise StateError(f"{where}: task {task_hash}: bad verdict for {submitter}")
                outcome = verdict.get("outcome", "accepted")
                if outcome not in RESULT_OUTCOMES:
                    raise StateError(f"{where}: task {task_hash}: bad verdict outcome {outcome!r}")
                self._verdicts.setdefault(key, {})[submitter.lower()] = Verdict(
                    verdict["valid"], outcome
                )
            self._order[key] = None

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
        self._results[key] = outcome
        if created_height is not None:
            self._heights[key] = created_height
        self._touch(key)
        self.save()

    def record_verdict(self, task_hash: str, submitter: str, valid: bool, outcome: str) -> None:
        key = task_hash.lower()
        self._verdicts.setdefault(key, {})[submitter.lower()] = Verdict(valid, outcome)
        self._touch(key)
        self.save()

    def record_secrets_epoch(self, epoch: int) -> None:
        """The epoch of the chain of secrets the node commits, saved before it is sent."""
        self.secrets_epoch = epoch
        self.save(fsync=True)  # on disk before the commitment can be

    def reset(self, genesis_hash: str | None) -> None:
        """Forget every task (the chain was reset) and remember the new genesis hash. The
        secrets epoch is kept: a later epoch is never one revealed before."""
        self._results.clear()
        self._heights.clear()
        self._verdicts.clear()
        self._order.clear()
        self.genesis_hash = genesis_hash
        self.save()

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

    def save(self, *, fsync: bool = False) -> None:
        """Write the file atomically (nothing to do without a path); synced to the disk when
        the log was opened with `fsync` or `fsync` is given."""
        if self.path is None:
            return
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data, fsync=self.fsync or fsync)
        except OSError as exc:
            raise StateError(f"state file {self.path}: cannot write it ({exc})") from exc
