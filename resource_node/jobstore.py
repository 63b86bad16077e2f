"""A resource node's durable store of off-chain work: Infernet jobs, Ocean assets, jobs and
nonces (PROTOCOL 7.4). A LevelDB of its own through plyvel, opened with the checks the
validator's ledger gets (`chain.node.store.JsonStore`), every write one synced batch, so a
killed node restarts with every job it had answered for.

Values are JSON; keys are bytes under a prefix per kind of record. Without a state directory
the store lives in a temporary directory that is removed when the node stops: the same
"memory only" the submission log has then.
"""

from __future__ import annotations

from pathlib import Path

from chain.node.store import JsonStore
from chain.protocol.errors import StorageError


class JobStore(JsonStore):
    """JSON records by key, written atomically and durably."""

    @classmethod
    def open(cls, state_dir: Path | None, address: str) -> JobStore:
        """The store of node `address` under `state_dir` (`jobs-<address>`), or a temporary
        one without a state directory; StorageError naming the directory."""
        if state_dir is None:
            return cls.in_temporary_dir("inferchain-jobs-")
        return cls(Path(state_dir) / f"jobs-{address.lower()}")


__all__ = ["JobStore", "StorageError"]
