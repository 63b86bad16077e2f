"""A resource node's metrics, served by its HTTP server at GET /metrics in the Prometheus text
format (PROTOCOL 7): the results and verdicts the node had answered by the chain, as GET
/status counts them, the verdicts by what they said, the time of each inference, and the
slashes in the settlements of the blocks it read.

Each node has a registry of its own (never prometheus_client's global one: several nodes may
run in one process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# The deterministic model answers in microseconds, a real model in tenths of a second to
# tens of seconds.
INFERENCE_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


class NodeMetrics:
    """The registry of one resource node and what it counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.tasks_computed = Counter(
            "inferchain_node_tasks_computed",
            "Results this node computed and the chain answered (accepted, closed or duplicate).",
            registry=self.registry,
        )
        self.tasks_verified = Counter(
            "inferchain_node_tasks_verified",
            "Verdicts this node submitted and the chain answered (accepted, closed or duplicate).",
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "inferchain_node_inference_seconds",
            "The time of each inference that gave an output, to compute or to verify a result.",
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        verdicts = Counter(
            "inferchain_node_verdicts",
            "The verdicts counted in inferchain_node_tasks_verified, by what they said.",
            ["verdict"],
            registry=self.registry,
        )
        self.slashes_seen = Counter(
            "inferchain_node_slashes_seen",
            "Slashes in the settlements of the blocks this node read (any node's), one per "
            "slashed account of a settlement.",
            registry=self.registry,
        )
        self.slashed = Counter(
            "inferchain_node_slashed",
            "Settlements that slashed this node.",
            registry=self.registry,
        )
        self._valid = verdicts.labels("valid")
        self._invalid = verdicts.labels("invalid")

    def verdict(self, valid: bool) -> None:
        """A verdict this node gave, answered by the chain."""
        self.tasks_verified.inc()
        (self._valid if valid else self._invalid).inc()
