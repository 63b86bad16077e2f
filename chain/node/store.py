"""Storage behind a small interface: `KeyValueStore` (get, iterate, atomic write, snapshot),
LevelDB through plyvel for every node and test, and `MemoryStore`, its in-memory twin, for
reference models in property tests only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import plyvel

from chain.protocol.errors import StorageError

# LevelDB: a bloom filter per table, so a read of a missing key (every new task's duplicate
# check) skips the tables that cannot hold it; a larger block cache and write buffer than the
# 8 MiB and 4 MiB defaults for ledgers of millions of tasks.
BLOOM_FILTER_BITS = 10


BLOCK_CACHE_BYTES = 64 * 1024 * 1024


WRITE_BUFFER_BYTES = 16 * 1024 * 1024


class KeyValueReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class KeyValueStore(KeyValueReader, Protocol):
    def write(self, changes: Mapping[bytes, bytes | None]) -> None: ...

    def snapshot(self) -> KeyValueReader:
        """A reader of the store as it is now, blind to later writes."""
        ...

    def close(self) -> None: ...


class LevelDBReader:
    """Reads of a plyvel DB, or of one of its snapshots (the DB as it was when taken)."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._source.get(key)
        return value

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return _iterate(self._source, prefix, start, reverse)


class LevelDBStore(LevelDBReader):
    """A LevelDB directory; one process at a time (LevelDB's LOCK file)."""

    def __init__(self, path: str | Path) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot use {path} as the data directory: {exc.strerror}") from exc
        try:
            self._db = plyvel.DB(
                str(path),
                create_if_missing=True,
                bloom_filter_bits=BLOOM_FILTER_BITS,
                lru_cache_size=BLOCK_CACHE_BYTES,
                write_buffer_size=WRITE_BUFFER_BYTES,
            )
        except plyvel.IOError as exc:
            if "LOCK" in str(exc):
                raise StorageError(
                    f"the data directory {path} is in use by another process "
                    "(LevelDB holds its LOCK); stop that node or choose another --data-dir"
                ) from exc
            raise StorageError(f"cannot open the ledger in {path}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise StorageError(f"the ledger in {path} is corrupted: {exc}") from exc
        super().__init__(self._db)

    def snapshot(self) -> LevelDBReader:
        return LevelDBReader(self._db.snapshot())

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


def _iterate(
    source: Any, prefix: bytes, start: bytes | None, reverse: bool
) -> Iterator[tuple[bytes, bytes]]:
    """The keys under `prefix` of a plyvel DB or snapshot, from `start` on, in order."""
    end = _prefix_end(prefix)
    if not reverse:
        lower = prefix if start is None or start < prefix else start
        yield from source.iterator(start=lower, stop=end)
        return
    # Reverse scans give plyvel only an upper bound: with a lower bound it skips a key
    # equal to that bound when it is the only one in range.
    upper = end if start is None else start + b"\x00"
    if end is not None and upper is not None and end < upper:
        upper = end
    scan = source.iterator(reverse=True, stop=upper) if upper else source.iterator(reverse=True)
    for key, value in scan:
        if not key.startswith(prefix):
            return
        yield key, value


class MemoryStore:
    """The in-memory twin of LevelDBStore, for reference models in property tests only."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(k for k in self._data if k.startswith(prefix))
        if start is not None:
            keys = [k for k in keys if (k <= start if reverse else k >= start)]
        for key in reversed(keys) if reverse else keys:
            yield key, self._data[key]

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def snapshot(self) -> MemoryStore:
        copy = MemoryStore()
        copy._data = dict(self._data)
        return copy

    def close(self) -> None:
        pass


def _prefix_end(prefix: bytes) -> bytes | None:
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None
