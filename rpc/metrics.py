"""A validator's metrics, served at GET /metrics in the Prometheus text format (PROTOCOL 5.7).

Each server has a registry of its own (never prometheus_client's global one: several
validators may run in one process). What the node holds (height, round, peers, the mempool,
tasks by status) is read when the metrics are scraped, by `NodeCollector`; what happens
(transactions admitted and refused, the time of each call and of each block's commit) is
counted as it happens. The label children of the counters and histograms are bound once per
method (and code) and kept in a dict: a call costs a lookup, a clock read and an observation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chain.node.node import Node
from rpc import api, errors
from rpc.methods import METHODS

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The method label of a call whose method the server does not have (the label set stays
# bounded whatever clients send).
UNKNOWN_METHOD = "unknown"
# Calls take from tens of microseconds (a read) to a few milliseconds (a batch's signed
# transaction waiting for its journal write); blocks from milliseconds (dev mode) to seconds
# (several validators, a block time apart).
RPC_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
COMMIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NodeCollector(Collector):
    """The gauges read from the node at each scrape."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no description ahead: the node may not be set up yet

    def collect(self) -> Iterator[Metric]:
        node = self.node
        status = node.consensus_status()
        yield _gauge(
            "inferchain_height", "The height of the last committed block.", node.head.height
        )
        yield _gauge(
            "inferchain_round",
            "The consensus round at the height being decided (0 on a one-validator chain).",
            status.get("round", 0),
        )
        yield _gauge(
            "inferchain_peers_up",
            "Peer validators that answered a status poll recently (0 on a one-validator chain).",
            status.get("peers", 0),
        )
        yield _gauge(
            "inferchain_mempool_txs",
            "Transactions held by the mempool (admitted, or in a block being written).",
            node.pending_count(),
        )
        yield _gauge(
            "inferchain_mempool_bytes",
            "The encoded size of the transactions the mempool holds.",
            node.pending_bytes(),
        )
        tasks = GaugeMetricFamily(
            "inferchain_tasks", "Tasks by status (taskStats).", labels=["status"]
        )
        for status_name, count in sorted(node.task_stats().items()):
            tasks.add_metric([status_name], count)
        yield tasks


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@dataclass(slots=True)
class _MethodMetrics:
    """The label children of one method, bound once."""

    method: str
    seconds: Histogram
    admitted: Counter | None  # None for a method that is no transaction


class ValidatorMetrics:
    """The registry of one validator's server and what it counts."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        self._admitted = Counter(
            "inferchain_txs_admitted",
            "Transactions admitted to the mempool through JSON-RPC, by method.",
            ["method"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "inferchain_txs_rejected",
            "Transaction calls refused, by method and JSON-RPC error code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._rpc_seconds = Histogram(
            "inferchain_rpc_seconds",
            "The time of each JSON-RPC call (each item of a batch), by method.",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self._commit_seconds = Histogram(
            "inferchain_block_commit_seconds",
            "From the start of a block's production (dev mode) or of its height (several "
            "validators) to its commit.",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._methods: dict[str, _MethodMetrics] = {}
        self._rejections: dict[tuple[str, int], Counter] = {}
        node.observe_commit = self._commit_seconds.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_call(self, name: str, outcome: Any, seconds: float) -> None:
        """Count a call of method `name` that took `seconds` and ended in `outcome` (its
        result, or the RpcFailure it is answered with). A transaction method's call is
        admitted unless it failed or answered false (its task took no more)."""
        entry = self._methods.get(name)
        if entry is None:
            entry = self._bind(name)
        entry.seconds.observe(seconds)
        if entry.admitted is None:
            return
        if isinstance(outcome, errors.RpcFailure):
            key = (entry.method, outcome.code)
            rejected = self._rejections.get(key)
            if rejected is None:
                rejected = self._rejected.labels(entry.method, str(outcome.code))
                self._rejections[key] = rejected
            rejected.inc()
        elif outcome is not False:
            entry.admitted.inc()

    def _bind(self, name: str) -> _MethodMetrics:
        spec = METHODS.get(name)
        method = UNKNOWN_METHOD if spec is None else api.ALIASES.get(name, name)
        entry = self._methods.get(method)
        if entry is None:
            is_tx = spec is not None and spec.message_type is not None
            entry = _MethodMetrics(
                method,
                self._rpc_seconds.labels(method),
                self._admitted.labels(method) if is_tx else None,
            )
            self._methods[method] = entry
        if spec is not None:  # an unknown name is not kept: clients choose those
            self._methods[name] = entry
        return entry
