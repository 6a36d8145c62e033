"""Prometheus metrics of one gateway, exposed on the admin plane (``GET /-/metrics``).

Each gateway owns its registry (not prometheus-client's global one), so that two gateways in
one process (tests, the demo) count apart. Label values are backend names only: never a bucket,
key, tenant or object id.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: Blobs that failed verification (bad header, commitment, chunk tag or length) on a
        #: backend: exposed as ``blindstore_integrity_failures_total{backend=...}``.
        self.integrity_failures = Counter(
            "blindstore_integrity_failures",
            "Stored blobs that failed verification when read, by backend.",
            ["backend"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the text exposition format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
