"""Storage behind a small interface: `KeyValueStore` (get, iterate, atomic write, snapshot),
LevelDB through plyvel for every node and test, and `MemoryStore`, its in-memory twin, for
reference models in property tests only.

A data directory is the node's own once it carries the marker `INFERCHAIN` (written when the
directory is created). `LevelDBStore` creates a LevelDB only in a missing or empty directory;
it opens anything else only after checking it on a hard-linked copy (`trial_open`), so a
damaged or foreign directory is refused with every file as it was (PROTOCOL 6.11).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, Self

import orjson
import plyvel

from chain.protocol import wire
from chain.protocol.errors import StorageError

# LevelDB: a bloom filter per table, so a read of a missing key (every new task's duplicate
# check) skips the tables that cannot hold it; a larger block cache and write buffer than the
# 8 MiB and 4 MiB defaults for ledgers of millions of tasks.
BLOOM_FILTER_BITS = 10


BLOCK_CACHE_BYTES = 64 * 1024 * 1024


WRITE_BUFFER_BYTES = 16 * 1024 * 1024

# Every block read from a table file is checked against its CRC32C: a damaged table is an
# error, never a wrong value (the cost is measured in PERFORMANCE.md).
VERIFY_READS = True

# The marker of a data directory this node made, and the format it describes.
MARKER = "INFERCHAIN"
MARKER_FORMAT = 1
MARKER_KIND = "inferchain data directory"

# The hard-linked copy a directory is checked on before it is opened: `<dir>/<prefix><pid>`.
CHECK_PREFIX = ".ledger-check-"

# Names LevelDB gives its own files: these, and only these, are the ledger.
_LEVELDB_FILE = re.compile(r"(CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(ldb|sst|log|dbtmp))")
_CURRENT = re.compile(r"(MANIFEST-\d+)\n")


class DataDirState(Enum):
    """What a data directory holds before a node opens it."""

    NEW = "new"  # missing or empty: a new ledger is created there
    MARKED = "marked"  # the node's own (its marker is there)
    UNMARKED = "unmarked"  # files, no marker: adopted only if its LevelDB is this chain's


def repair_command(path: Path) -> str:
    return f"python -m rpc --data-dir {path} --repair"


class DamagedLedger(StorageError):
    """The one refusal of a damaged ledger: the directory, what is wrong (`what`), what to
    do. A StorageError like any other to its callers; `--repair` reports `what` alone."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"the ledger in {path} is damaged ({what}): nothing was changed; run "
            f"`{repair_command(path)}` (with your --genesis) to let LevelDB repair it, "
            "or move the directory away to start a new chain"
        )
        self.what = what


def damaged(path: Path, what: str) -> DamagedLedger:
    return DamagedLedger(path, what)


def foreign(path: Path, what: str) -> StorageError:
    """The refusal of a directory that is not a ledger of this node."""
    return StorageError(
        f"{path} is not an inferchain data directory ({what}): nothing was changed; "
        "choose a new or empty --data-dir, or move its files away"
    )


def data_dir_state(path: Path) -> DataDirState:
    """What `path` holds (nothing is written); StorageError if it cannot be a data directory:
    a file, unreadable, or a marker this version does not read."""
    try:
        entries = [entry.name for entry in os.scandir(path)]
    except FileNotFoundError:
        return DataDirState.NEW
    except NotADirectoryError:
        raise foreign(path, "it is a file, not a directory") from None
    except OSError as exc:
        raise StorageError(f"cannot use {path} as the data directory: {exc.strerror}") from exc
    if not entries:
        return DataDirState.NEW
    if MARKER not in entries:
        return DataDirState.UNMARKED
    marker = path / MARKER
    try:
        content = json.loads(marker.read_bytes())
        found = f"format {content['format']!r}"
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        content, found = None, f"unreadable: {exc}"
    if not isinstance(content, dict) or content.get("format") != MARKER_FORMAT:
        raise StorageError(
            f"the marker {marker} is not one this version reads ({found}; this version "
            f"writes format {MARKER_FORMAT}): nothing was changed; start the version that "
            "wrote it, or move the directory away"
        )
    return DataDirState.MARKED


def mark_data_dir(path: Path) -> None:
    """Write the marker, durably: a temporary file synced, renamed, the directory synced."""
    content = json.dumps({"kind": MARKER_KIND, "format": MARKER_FORMAT}).encode() + b"\n"
    tmp = path / f"{MARKER}.tmp"
    with tmp.open("wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path / MARKER)
    _sync_dir(path)


def leveldb_files(path: Path) -> list[str]:
    """The names in `path` that are LevelDB's own files, sorted."""
    try:
        return sorted(e.name for e in os.scandir(path) if _LEVELDB_FILE.fullmatch(e.name))
    except OSError:
        return []


def check_leveldb_files(path: Path) -> None:
    """The file-level checks LevelDB's own open would fail on, with their names: CURRENT is
    there and names a MANIFEST that is there. Reads only."""
    current = path / "CURRENT"
    try:
        text = current.read_text(errors="replace")
    except FileNotFoundError:
        raise damaged(path, "CURRENT missing") from None
    except OSError as exc:
        raise damaged(path, f"CURRENT cannot be read: {exc.strerror}") from exc
    match = _CURRENT.fullmatch(text)
    if match is None:
        raise damaged(path, f"CURRENT does not name a MANIFEST: {text[:40]!r}")
    if not (path / match.group(1)).is_file():
        raise damaged(path, f"{match.group(1)} missing, which CURRENT names")


def in_use_error(path: Path) -> StorageError:
    return StorageError(
        f"the data directory {path} is in use by another process "
        "(LevelDB holds its LOCK); stop that node or choose another --data-dir"
    )


# The directories LevelDBStore holds open in this process. LevelDB's LOCK is a POSIX lock,
# which any close() of that file in this process would release: the lock probe skips them.
_OPEN_HERE: set[Path] = set()
_OPEN_HERE_LOCK = threading.Lock()


def refuse_if_in_use(path: Path) -> None:
    """StorageError if a process (this one included) holds the LevelDB in `path`."""
    key = path.resolve()
    with _OPEN_HERE_LOCK:
        if key in _OPEN_HERE:
            raise in_use_error(path)
    try:
        fd = os.open(path / "LOCK", os.O_RDWR)
    except OSError:
        return  # no LOCK file: nobody holds it
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise in_use_error(path) from None
    finally:
        os.close(fd)  # also releases the probe's lock


@contextlib.contextmanager
def trial_open(path: Path) -> Iterator[KeyValueReader]:
    """Open a copy of the LevelDB in `path` that shares its table files (hard links; LevelDB
    never rewrites a table in place), check every block of every table against its checksum,
    and yield a reader of it. Whatever LevelDB's recovery rewrites, it rewrites in the copy;
    the copy is removed after. StorageError (`damaged`) if the copy does not open or a table
    does not read back."""
    check_leveldb_files(path)
    _remove_stale_checks(path)
    copy = path / f"{CHECK_PREFIX}{os.getpid()}"
    try:
        try:
            _link_copy(path, copy)
        except OSError as exc:  # a read-only directory, a full disk
            raise StorageError(
                f"cannot check the ledger in {path}: {exc.strerror} ({exc.filename}); "
                "nothing was changed"
            ) from exc
        try:
            db = plyvel.DB(str(copy), create_if_missing=False, paranoid_checks=True)
        except plyvel.Error as exc:
            raise damaged(path, f"LevelDB: {_leveldb_message(exc, copy, path)}") from exc
        try:
            try:
                scan = db.raw_iterator(verify_checksums=True, fill_cache=False)
                scan.seek_to_first()
                while scan.valid():  # raises on a block that fails its checksum
                    scan.next()
                scan.close()
            except plyvel.Error as exc:
                raise damaged(path, f"LevelDB: {_leveldb_message(exc, copy, path)}") from exc
            yield LevelDBReader(db, _Guard(path, copy=copy))
        finally:
            db.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _link_copy(path: Path, copy: Path) -> None:
    copy.mkdir()
    for name in leveldb_files(path):
        if name == "LOCK" or name.startswith("LOG"):
            continue
        source, target = path / name, copy / name
        if name.endswith((".ldb", ".sst")):
            try:
                os.link(source, target)
                continue
            except OSError:  # a file system without hard links: copy
                pass
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise damaged(path, f"{name} cannot be read: {exc.strerror}") from exc


def _remove_stale_checks(path: Path) -> None:
    """Remove the check copies left by processes that were killed while checking."""
    for entry in os.scandir(path):
        if not entry.name.startswith(CHECK_PREFIX):
            continue
        pid = entry.name.removeprefix(CHECK_PREFIX)
        if wire.ascii_digits(pid) and (int(pid) == os.getpid() or not process_alive(int(pid))):
            shutil.rmtree(entry.path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leveldb_message(exc: BaseException, copy: Path | None = None, path: Path | None = None) -> str:
    """LevelDB's message (plyvel gives bytes), naming the data directory, not a check copy."""
    raw = exc.args[0] if exc.args else exc
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text if copy is None or path is None else text.replace(str(copy), str(path))


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair(path: Path) -> tuple[list[str], list[str]]:
    """Run LevelDB's repair on `path` (the caller checked it may): it rebuilds the MANIFEST
    from the table and log files it can read, and moves what it cannot into `lost/`. The
    LevelDB files before and after."""
    before = leveldb_files(path)
    try:
        plyvel.repair_db(str(path), paranoid_checks=True)
    except plyvel.Error as exc:
        raise StorageError(
            f"LevelDB could not repair the ledger in {path}: {_leveldb_message(exc)}"
        ) from exc
    return before, leveldb_files(path)


# A check of a LevelDB before it is opened for good: a reader of the checked copy, and
# whether the directory carries the marker. It raises StorageError to refuse the directory.
Check = Callable[["KeyValueReader", bool], None]


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


class _Guard:
    """Turns a failed read or write of an open LevelDB into the one error of a damaged
    ledger, and tells `on_damage` (the validator stops on it) the first time."""

    def __init__(self, path: Path, *, copy: Path | None = None) -> None:
        self.path = path
        self.copy = copy  # the check copy this guards (before an open, which changes nothing)
        self.on_damage: Callable[[StorageError], None] | None = None
        self.error: StorageError | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> StorageError:
        with self._lock:
            first = self.error is None
            if first and self.copy is not None:
                shown = _leveldb_message(exc, self.copy, self.path)
                self.error = damaged(self.path, f"LevelDB: {shown}")
            elif first:
                found = _leveldb_message(exc)
                self.error = StorageError(
                    f"the ledger in {self.path} is damaged (found while running: LevelDB: "
                    f"{found}): the validator stops; run `{repair_command(self.path)}` (with "
                    "your --genesis) to let LevelDB repair it, or move the directory away"
                )
            error = self.error
        assert error is not None
        if first and self.on_damage is not None:
            self.on_damage(error)
        return error


class LevelDBReader:
    """Reads of a plyvel DB, or of one of its snapshots (the DB as it was when taken)."""

    def __init__(self, source: Any, guard: _Guard) -> None:
        self._source = source
        self._guard = guard

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._source.get(key, verify_checksums=VERIFY_READS)
        except plyvel.Error as exc:
            raise self._guard.failed(exc) from exc
        return value

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from _iterate(self._source, prefix, start, reverse)
        except plyvel.Error as exc:
            raise self._guard.failed(exc) from exc


class LevelDBStore(LevelDBReader):
    """A LevelDB data directory; one process at a time (LevelDB's LOCK file).

    A missing or empty directory gets a new LevelDB and the marker. Any other directory is
    checked first on a hard-linked copy (`trial_open`, then `check` on a reader of that copy,
    told whether the directory is marked) and opened only if that passes: a directory with
    the marker whose LevelDB opens and reads back, or one without the marker whose LevelDB
    `check` accepts (adopted: the marker is written then). Without `check`, a directory
    without the marker is refused. Every refusal is a StorageError that names the directory
    and leaves every file in it as it was.
    """

    def __init__(self, path: str | Path, *, check: Check | None = None) -> None:
        self.path = Path(path)
        state = data_dir_state(self.path)
        self.adopted = False
        if state is DataDirState.NEW:
            self._db = self._create()
        else:
            if state is DataDirState.UNMARKED and not {
                name for name in leveldb_files(self.path) if not name.startswith(("LOCK", "LOG"))
            }:
                raise foreign(self.path, f"it holds files but no {MARKER} marker and no LevelDB")
            refuse_if_in_use(self.path)
            with trial_open(self.path) as reader:
                if check is not None:
                    check(reader, state is DataDirState.MARKED)
                elif state is DataDirState.UNMARKED:
                    raise foreign(self.path, f"it has no {MARKER} marker")
            self._db = self._open(create=False)
            if state is DataDirState.UNMARKED:
                try:
                    mark_data_dir(self.path)
                except OSError as exc:
                    self._db.close()
                    raise StorageError(
                        f"cannot mark {self.path} as a data directory: {exc.strerror}"
                    ) from exc
                self.adopted = True
        self._guard = _Guard(self.path)
        with _OPEN_HERE_LOCK:
            _OPEN_HERE.add(self.path.resolve())
        super().__init__(self._db, self._guard)

    def _create(self) -> Any:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot use {self.path} as the data directory: {exc.strerror}"
            ) from exc
        db = self._open(create=True)
        try:
            mark_data_dir(self.path)
        except OSError as exc:
            db.close()
            raise StorageError(
                f"cannot mark {self.path} as a data directory: {exc.strerror}"
            ) from exc
        return db

    def _open(self, *, create: bool) -> Any:
        try:
            return plyvel.DB(
                str(self.path),
                create_if_missing=create,
                error_if_exists=create,
                paranoid_checks=True,
                bloom_filter_bits=BLOOM_FILTER_BITS,
                lru_cache_size=BLOCK_CACHE_BYTES,
                write_buffer_size=WRITE_BUFFER_BYTES,
            )
        except plyvel.IOError as exc:
            if "LOCK" in str(exc):
                raise in_use_error(self.path) from exc
            raise StorageError(
                f"cannot open the ledger in {self.path}: {_leveldb_message(exc)}"
            ) from exc
        except plyvel.Error as exc:
            raise damaged(self.path, f"LevelDB: {_leveldb_message(exc)}") from exc

    @property
    def on_damage(self) -> Callable[[StorageError], None] | None:
        return self._guard.on_damage

    @on_damage.setter
    def on_damage(self, callback: Callable[[StorageError], None] | None) -> None:
        """Called once, with the error, when a read or write finds the ledger damaged."""
        self._guard.on_damage = callback

    def snapshot(self) -> LevelDBReader:
        return LevelDBReader(self._db.snapshot(), self._guard)

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        try:
            with self._db.write_batch(transaction=True, sync=True) as batch:
                for key, value in changes.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        except plyvel.Error as exc:
            raise self._guard.failed(exc) from exc

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
            with _OPEN_HERE_LOCK:
                _OPEN_HERE.discard(self.path.resolve())


def _iterate(
    source: Any, prefix: bytes, start: bytes | None, reverse: bool
) -> Iterator[tuple[bytes, bytes]]:
    """The keys under `prefix` of a plyvel DB or snapshot, from `start` on, in order.

    On plyvel's raw iterator: its plain iterator ends quietly at a block that fails its
    checksum (the keys after it are simply missing), the raw one raises."""
    end = _prefix_end(prefix)
    scan = source.raw_iterator(verify_checksums=VERIFY_READS)
    try:
        if not reverse:
            scan.seek(prefix if start is None or start < prefix else start)
            while scan.valid():
                key = scan.key()
                if end is not None and key >= end:
                    return
                yield key, scan.value()
                scan.next()
            return
        upper = end if start is None else start + b"\x00"
        if end is not None and upper is not None and end < upper:
            upper = end
        if upper is None:
            scan.seek_to_last()
        else:
            scan.seek(upper)  # the first key at or after the bound: step back from it
            if scan.valid():
                scan.prev()
            else:
                scan.seek_to_last()
        while scan.valid():
            key = scan.key()
            if not key.startswith(prefix):
                return
            yield key, scan.value()
            scan.prev()
    finally:
        scan.close()


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


class JsonStore:
    """JSON records by key on a LevelDB of their own, each write one synced batch: the
    durable store of the units beside the chain (a resource node's jobs, an AO unit's
    results). `temporary` removes the directory's parent at `close` (a store for one run)."""

    def __init__(self, path: Path, *, temporary: bool = False) -> None:
        self.path = path
        self.temporary = temporary
        self._db = LevelDBStore(path)

    @classmethod
    def in_temporary_dir(cls, prefix: str) -> Self:
        root = Path(tempfile.mkdtemp(prefix=prefix))
        return cls(root / "store", temporary=True)

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


def _prefix_end(prefix: bytes) -> bytes | None:
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None
