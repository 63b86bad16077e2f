"""The AO unit's durable store (PROTOCOL 8.5): each slot's result and memory hash, the relays
of the messenger unit, the processes it monitors, the messages the API handed in. A LevelDB
of its own under the unit's data directory, opened with the ledger's checks, each write one
synced batch (`chain.node.store.JsonStore`)."""

from __future__ import annotations

from chain.node.store import JsonStore

__all__ = ["JsonStore"]
