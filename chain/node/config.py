"""Reading the genesis file: the node's configuration from disk, parsed by
`chain.protocol.genesis`."""

from __future__ import annotations

from pathlib import Path

from chain.protocol.errors import GenesisError
from chain.protocol.genesis import Genesis, parse_genesis_file


def load_genesis(path: str | Path) -> Genesis:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    return parse_genesis_file(data, str(path))
