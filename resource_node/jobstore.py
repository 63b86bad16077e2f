"""A resource node's durable store of off-chain work: Infernet jobs, Ocean assets, jobs and
nonces (PROTOCOL 7.4). A LevelDB of its own through plyvel, opened with the checks the
validator's ledger gets (`chain.node.store.LevelDBStore`), every write one synced batch, so a
killed node restarts with every job it had answered for.

Values are JSON (orjson); keys are bytes under a prefix per kind of record. Without a state
directory the store lives in a temporary directory that is removed when the node stops: the
same "memory only" the submission log has then.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from chain.node.store import LevelDBStore
from chain.protocol import wire
from chain.protocol.errors import StorageError


class JobStore:
    """JSON records by key, written atomically and durably."""

    def __init__(self, path: Path, *, temporary: bool = False) -> None:
        self.path = path
        self.temporary = temporary
        self._db = LevelDBStore(path)

    @classmethod
    def open(cls, state_dir: Path | None, address: str) -> JobStore:
        """The store of node `address` under `state_dir` (`jobs-<address>`), or a temporary
        one without a state directory; StorageError naming the directory."""
        if state_dir is None:
            root = Path(tempfile.mkdtemp(prefix="inferchain-jobs-"))
            return cls(root / "jobs", temporary=True)
        return cls(Path(state_dir) / f"jobs-{address.lower()}")

    def get(self, key: bytes) -> Any:
        raw = self._db.get(key)
        return None if raw is None else wire.parse_json(raw)

    def write(self, changes: Mapping[bytes, Any]) -> None:
        """Put each value (None deletes the key), all or none, synced."""
        self._db.write(
            {key: None if value is None else orjson.dumps(value) for key, value in changes.items()}
        )

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, Any]]:
        for key, raw in self._db.iterate(prefix, start=start, reverse=reverse):
            yield key, wire.parse_json(raw)

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        for key, _raw in self._db.iterate(prefix):
            yield key

    def close(self) -> None:
        self._db.close()
        if self.temporary:
            shutil.rmtree(self.path.parent, ignore_errors=True)


__all__ = ["JobStore", "StorageError"]
