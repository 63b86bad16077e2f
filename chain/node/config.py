"""Reading the genesis file: the node's configuration from disk, parsed by
`chain.protocol.genesis`."""

from __future__ import annotations

import json
from pathlib import Path

from chain.protocol.errors import GenesisError
from chain.protocol.genesis import Genesis, parse_genesis


def load_genesis(path: str | Path) -> Genesis:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GenesisError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise GenesisError("(file)", f"{path} is not UTF-8 text: {exc.reason}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError("(file)", f"{path} is not valid JSON: {exc}") from exc
    return parse_genesis(raw)
