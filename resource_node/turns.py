"""Whose turn it is to compute a task: a policy of inferchain's resource nodes, not a rule
of the chain.

Every eligible node that a validator lists a task to (`compute`) may submit a result, and the
first results to reach a block fill the task's slots (PROTOCOL 4.3). Left to race, every node
computes every task: with three nodes and one slot, two results in three are computed for
nothing, answered `false` (closed) or carried through consensus only to be late in the block,
and with a real model each of them costs the inference. So the nodes take turns:

- A node keeps the nodes it has seen compute each model lately: the submitters of the
  results its listings show (`saw`), for ACTIVE_S seconds after it last saw each one. It
  counts itself among them for every model it is listed.
- For a task, those nodes, less the ones with a result in it already, are ordered by
  keccak256(taskHash || address) (32 bytes and 20): the same order at every node that has seen the
  same nodes, and each node first for its share of the tasks.
- The first `free` of them (the task's open slots, at least one) compute at once; the k-th
  after them once k standby periods have passed since this node first saw the task. A node
  that is down, slow or byzantine holds a task up by a period at most, and one that stops
  computing drops out of the order ACTIVE_S after its last result.

The standby period is `--standby-blocks` block times (a node that takes longer than that
to compute and submit lets the next one in, as it would have without turns); 0 turns the
policy off and every node computes every task it is listed, as soon as it is listed.
"""

from __future__ import annotations

from collections.abc import Iterable

from chain.protocol import crypto

# The standby period of `--standby-blocks`, in block times, by default.
STANDBY_BLOCKS = 3
# How long a node counts as computing a model after the last result of it this node saw.
ACTIVE_S = 60.0
# Tasks whose first sighting is kept, and (node, model) pairs seen: the oldest forgotten first.
MAX_TASKS = 20_000
MAX_NODES = 4096


def order_key(task_hash: str, address: str) -> bytes:
    """Where `address` stands in the order of `task_hash` (lowest first)."""
    return crypto.keccak(bytes.fromhex(task_hash[2:]) + bytes.fromhex(address[2:]))


def order(task_hash: str, addresses: Iterable[str]) -> list[str]:
    """The nodes in the order they take the task (addresses as lowercase 0x hex)."""
    return sorted(set(addresses), key=lambda address: order_key(task_hash, address))


def periods(task_hash: str, address: str, others: Iterable[str], free: int) -> int:
    """How many standby periods `address` lets pass before it computes the task, after the
    other nodes `others` that compete for its `free` open slots: 0 is at once."""
    position = order(task_hash, [address, *others]).index(address)
    return max(0, position - max(1, free) + 1)


class Turns:
    """One node's view of who computes what, and when each task was first seen."""

    def __init__(self, address: str, standby_s: float, active_s: float = ACTIVE_S) -> None:
        if standby_s < 0:
            raise ValueError(f"the standby period cannot be negative, got {standby_s}")
        self.address = address.lower()
        self.standby_s = standby_s
        self.active_s = active_s
        self._seen: dict[tuple[str, str | None], float] = {}  # (node, model) -> last seen
        self._first: dict[str, float] = {}  # task hash -> when first seen

    def saw(self, submitter: str, model: str | None, now: float) -> None:
        """`submitter` computed a task of `model`: it takes turns on that model from now."""
        key = (submitter.lower(), model)
        self._seen.pop(key, None)
        while len(self._seen) >= MAX_NODES:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = now

    def active(self, model: str | None, now: float) -> set[str]:
        """The other nodes seen computing `model` within ACTIVE_S."""
        return {
            node
            for (node, seen_model), at in self._seen.items()
            if seen_model == model and now - at < self.active_s and node != self.address
        }

    def wait(
        self, task_hash: str, model: str | None, taken: Iterable[str], free: int, now: float
    ) -> float:
        """Seconds left before this node computes the task (0: now). `taken` are the nodes
        with a result in it already, `free` its open slots."""
        task_hash = task_hash.lower()
        first = self._first.get(task_hash)
        if first is None:
            while len(self._first) >= MAX_TASKS:
                del self._first[next(iter(self._first))]
            first = self._first[task_hash] = now
        if self.standby_s == 0:
            return 0.0
        others = self.active(model, now) - {node.lower() for node in taken}
        if not others:
            return 0.0
        count = periods(task_hash, self.address, others, free)
        return max(0.0, first + count * self.standby_s - now)
