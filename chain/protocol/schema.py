"""What a task's `schema` says about its output: the `postprocessed` form of a result.

The schema is a bytes field (PROTOCOL 1). This module reads the common forms: a name such as
`text`, `text-generation-v1`, `json` or `json-v1`, a JSON object with a `type` member
(`{"type": "json"}`), or a JSON Schema document (type object or array, or `properties`).
Anything else is treated as text. A result that does not parse as its schema says is
reported with an error, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from chain.protocol import wire

TEXT = "text"
JSON = "json"


@dataclass(frozen=True, slots=True)
class Postprocessed:
    kind: str
    value: Any
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "error": self.error}


def schema_kind(schema: str) -> str:
    """`json` or `text`, from a schema name or a JSON object with a `type` member."""
    try:
        raw = wire.decode_bytes_field(schema).decode("utf-8")
    except UnicodeDecodeError:
        return TEXT
    name = raw.strip().lower()
    if name.startswith("{"):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return TEXT
        if not isinstance(obj, dict):
            return TEXT
        declared = obj.get("type")
        name = declared.lower() if isinstance(declared, str) else ""
        if name in ("object", "array") or "properties" in obj or "$schema" in obj:
            return JSON  # a JSON Schema document
    if name == JSON or name.startswith(("json-", "json_")) or name == "application/json":
        return JSON
    return TEXT


def postprocess(schema: str, result: str) -> Postprocessed:
    """The result as the schema reads it; a JSON schema with unparsable output has an error."""
    kind = schema_kind(schema)
    try:
        text = wire.decode_bytes_field(result).decode("utf-8")
    except UnicodeDecodeError:
        return Postprocessed(kind, None, "the result is not UTF-8 text")
    if kind == TEXT:
        return Postprocessed(kind, text)
    try:
        orjson.loads(text)  # RFC 8259 and a bounded depth, before the exact parse below
    except orjson.JSONDecodeError as exc:
        return Postprocessed(kind, None, f"the result is not valid JSON: {exc}")
    # wire's reader keeps integers of any size exact (orjson would make them floats), with
    # room for every level orjson let through whatever the interpreter's recursion limit.
    return Postprocessed(kind, wire.parse_json(text.encode("utf-8")))
