"""Prometheus metrics (`GET /metrics`), per process, with prometheus_client.

Each app has its own registry (tests run several apps in one process). With several
workers each answers for itself; scrape each instance's port, or aggregate.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge("quartchat_connections", "Open WebSocket connections", registry=self.registry)
        self.messages_stored = Counter(
            "quartchat_messages_stored", "Chat messages committed by this process", registry=self.registry
        )
        self.fanout_backlog = Gauge(
            "quartchat_fanout_backlog",
            "Frames queued for delivery here and not yet written (backed-up sockets not counted)",
            registry=self.registry,
        )
        self.intake_pauses = Gauge(
            "quartchat_intake_pauses",
            "Times the fan-out backlog passed its bound and senders' frames were left unread (since start)",
            registry=self.registry,
        )
        self.broadcasts = Counter(
            "quartchat_broadcasts", "Chat messages queued for delivery to a connection", registry=self.registry
        )
        self.send_queue_drops = Counter(
            "quartchat_send_queue_drops",
            "Connections closed with 1013: their own socket stayed backed up (or the database was down at opening)",
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "quartchat_commit_seconds",
            "Time to commit one batch of messages",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.errors = Counter("quartchat_errors", "Error frames sent, by code", ["code"], registry=self.registry)
        self.closes = Counter(
            "quartchat_websocket_closes",
            "WebSockets closed by the server, by close code",
            ["code"],
            registry=self.registry,
        )
        # The process's memory and CPU, and Python's garbage collections by generation:
        # a full (generation 2) collection stops every delivery while it runs.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
