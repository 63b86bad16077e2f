"""A dev chain's whole state as a value (PROTOCOL 5.9): what `dev_snapshot` keeps, what
`dev_revert` and `dev_reset` restore, and what `--dump-state` / `--load-state` write and
read.

A state is every key of the ledger (blocks, transactions, indexes, the consensus state and
the dev clock's offset) and the mempool's transactions in admission order. Restoring one
gives back the same head, appHash, nonces and tasks, since those are all keys of the
ledger. The dump file is gzip'd JSON: `{format, chainId, genesisHash, height, appHash,
entries: [[keyHex, valueHex], ...], mempool: [tx, ...]}`, the transactions in their wire form
(each signature checked again when read).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chain.node.ledger import HEAD, Ledger
from chain.protocol import gossip, wire
from chain.protocol.errors import ChainError, InvalidPeerMessage
from chain.protocol.genesis import Genesis
from chain.protocol.types import SignedTx

FORMAT = "inferchain-state/1"


@dataclass(frozen=True, slots=True)
class ChainState:
    """Every key and value of a ledger, and the transactions its mempool held."""

    entries: tuple[tuple[bytes, bytes], ...]
    mempool: tuple[SignedTx, ...] = ()


def genesis_state(genesis: Genesis) -> ChainState:
    """The state of a new chain of `genesis`: its ledger written in a scratch LevelDB."""
    with tempfile.TemporaryDirectory(prefix="inferchain-genesis-") as scratch:
        ledger = Ledger.open(scratch, genesis)
        try:
            return ChainState(tuple(ledger.entries()))
        finally:
            ledger.close()


def encode(state: ChainState, genesis: Genesis) -> bytes:
    head = _head_of(state)
    document = {
        "format": FORMAT,
        "chainId": genesis.chain_id,
        "genesisHash": wire.hex0x(genesis.hash),
        "height": head["height"],
        "appHash": head["appHash"],
        "entries": [[key.hex(), value.hex()] for key, value in state.entries],
        "mempool": [wire.signed_tx_to_json(tx) for tx in state.mempool],
    }
    return gzip.compress(orjson.dumps(document), compresslevel=6, mtime=0)


def decode(data: bytes, genesis: Genesis, source: str = "the state") -> ChainState:
    """The state a dump holds; ChainError naming what is wrong when it is not a state dump
    of this chain."""
    try:
        document = orjson.loads(gzip.decompress(data))
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise ChainError(f"{source} is not a gzip'd JSON state dump: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ChainError(f"{source} is not a state dump of format {FORMAT}")
    if document.get("genesisHash") != wire.hex0x(genesis.hash):
        raise ChainError(
            f"{source} is a state of the chain with genesis {document.get('genesisHash')}, "
            f"not of this one ({wire.hex0x(genesis.hash)})"
        )
    try:
        entries = tuple(
            (bytes.fromhex(key), bytes.fromhex(value)) for key, value in document["entries"]
        )
        mempool = tuple(
            gossip.tx_from_wire(obj, genesis.chain_id) for obj in document.get("mempool", [])
        )
    except (KeyError, TypeError, ValueError, InvalidPeerMessage) as exc:
        raise ChainError(f"{source} has an unreadable entry or transaction: {exc}") from exc
    return ChainState(entries, mempool)


def write_file(path: str | Path, state: ChainState, genesis: Genesis) -> None:
    """Write the dump whole or not at all (a temporary file, synced, then renamed)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as out:
        out.write(encode(state, genesis))
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(target)


def read_file(path: str | Path, genesis: Genesis) -> ChainState:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ChainError(f"cannot read the state dump {path}: {exc.strerror}") from exc
    return decode(data, genesis, source=str(path))


def _head_of(state: ChainState) -> dict[str, Any]:
    for key, value in state.entries:
        if key == HEAD:
            head: dict[str, Any] = orjson.loads(value)
            return head
    raise ChainError("the state has no head")
