"""The mempool journal: every admitted transaction is on disk before its txHash is answered,
and a restarted validator admits them again (PROTOCOL 5.1, "The mempool journal").

The journal is one file in the data directory, next to the ledger's own files: one record a
line, each the canonical JSON of a signed transaction as validators gossip it
(`wire.signed_tx_to_json`). A record is written with one `write()` to the OS before admission
returns, so it survives a kill of the process (the OS page cache outlives the process); it is
not fsynced, so a power loss may lose the last records (the ledger's blocks are synced).

At start the records are read back (`read`): a record that does not parse, such as a torn last
line after a crash, is skipped and counted; the rest are verified and admitted again by the
node through the ordinary admission path. After blocks commit, the mempool rewrites the
journal with the transactions it still holds (`rewrite`) once the file holds many more
records than that, so the file stays within a small multiple of the mempool.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from chain.protocol import wire
from chain.protocol.errors import StorageError
from chain.protocol.types import SignedTx

log = logging.getLogger(__name__)

JOURNAL_FILE = "mempool.journal"


def encode_record(tx: SignedTx) -> bytes:
    """One record: the signed transaction's gossip form as canonical JSON, then a newline."""
    obj = wire.signed_tx_to_json(tx)
    try:
        body = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return body + b"\n"


def parse_records(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The records of a journal's bytes, in order, and how many lines were skipped as
    unreadable (a torn last line, a damaged one)."""
    records: list[dict[str, Any]] = []
    skipped = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a complete record
    elif lines:
        lines.pop()  # a last record without its newline: torn by a crash
        skipped += 1
    for line in lines:
        try:
            obj = wire.parse_json(line)
        except Exception:  # any damage: the record is skipped, the others are read
            skipped += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            skipped += 1
    return records, skipped


class Journal:
    """The journal file of one data directory. `read` it once, then `rewrite` it with what
    was admitted again, which also opens it for `append`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / JOURNAL_FILE
        self.records = 0  # records in the file, live or not
        self._file: BinaryIO | None = None

    def read(self) -> tuple[list[dict[str, Any]], int]:
        """The records on disk (none if there is no journal) and the count of skipped lines."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise StorageError(f"cannot read the mempool journal {self.path}: {exc}") from exc
        return parse_records(data)

    def append(self, tx: SignedTx) -> None:
        """Write `tx`'s record to the OS; raises StorageError if it cannot (nothing admitted)."""
        if self._file is None:
            raise StorageError("the mempool journal is not open")
        record = encode_record(tx)
        try:
            written = self._file.write(record)
        except OSError as exc:
            raise StorageError(f"cannot write the mempool journal {self.path}: {exc}") from exc
        if written != len(record):  # a short write: cut it off, so no later record is glued on
            self._truncate_to_last_record()
            raise StorageError(f"a short write to the mempool journal {self.path}")
        self.records += 1

    def rewrite(self, txs: Iterable[SignedTx]) -> None:
        """Replace the journal by the records of `txs` (written beside it, then renamed over
        it) and keep appending to the new file."""
        body = b"".join(encode_record(tx) for tx in txs)
        tmp = self.path.with_name(JOURNAL_FILE + ".tmp")
        try:
            with tmp.open("wb") as out:
                out.write(body)
            os.replace(tmp, self.path)
            self.close()
            self._file = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise StorageError(f"cannot rewrite the mempool journal {self.path}: {exc}") from exc
        self.records = body.count(b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _truncate_to_last_record(self) -> None:
        try:
            data = self.path.read_bytes()
            os.truncate(self.path, data.rfind(b"\n") + 1)
        except OSError:
            log.exception("cannot cut a short write off the mempool journal")
