"""Faults the simulated API server serves, each counting how often it was served.

- `Fault`: answer matching requests (method, path substring) with an HTTP error: the next `times`
  of them, or every one for `seconds` (a window), or both (whichever ends first). Every attempt a
  client makes is a request, so retries meet the fault too. 429 and 503 carry ``Retry-After``.
- `Outage`: the API server unreachable for `seconds`: ``refuse`` closes the listening socket
  (new connections are refused by the kernel; open ones are cut) and listens again on the same port
  afterwards; ``reset`` keeps listening but resets every connection that sends a request.
  ``served`` counts the requests cut or reset (with ``refuse``, attempts the kernel refused cannot be
  seen: ``served`` counts only connections that were open when it began).

Faults come before authentication: they play what stands in front of the API server or its
failures (overload, a restart, the network), and they only affect HTTP requests, not the simulated
cluster's own controllers and helm (which keep running while the API is unreachable to clients).
One exception: `SimulatedCluster.kubelet_unreachable` keeps its `Fault`s (matching pod names) in a
book of their own, which the API server consults itself, after authentication and RBAC, for a
`pods/log` read of a pod that exists: kube-apiserver could not reach that node's kubelet.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           410: "Expired", 429: "TooManyRequests", 500: "InternalError", 502: "BadGateway",
           503: "ServiceUnavailable", 504: "Timeout"}  # fmt: skip


@dataclass(eq=False)
class Fault:
    """An HTTP error answered to matching requests. Thread-safe counters; see the module docstring."""

    status: int
    times: int | None = None  # None: no count limit (a window)
    until: float | None = None  # time.monotonic() deadline; None: no window
    method: str | None = None  # "POST", ...; None: any
    path_contains: str | None = None
    retry_after: int | None = None
    served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def lasting(cls, status: int, times: int | None, seconds: float | None, method: str | None = None,
                path_contains: str | None = None, retry_after: int | None = None) -> Fault:  # fmt: skip
        """A fault for the next `times` matching requests, or every one for `seconds` from now, or both."""
        if times is None and seconds is None:
            raise ValueError("a fault needs times (a count of requests) or seconds (a time window)")
        until = time.monotonic() + seconds if seconds is not None else None
        return cls(status, times, until, method, path_contains, retry_after)

    @property
    def active(self) -> bool:
        """Would it still serve a matching request?"""
        if self.times is not None and self.served >= self.times:
            return False
        return self.until is None or time.monotonic() < self.until

    @property
    def remaining(self) -> int | None:
        """Requests it will still answer (None: until its window ends)."""
        return None if self.times is None else max(0, self.times - self.served)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def take(self, method: str, path: str) -> bool:
        """Serve this request if it matches and the fault is active (counted)."""
        if not self.matches(method, path):
            return False
        with self._lock:
            if not self.active:
                return False
            self.served += 1
            return True

    @property
    def reason(self) -> str:
        return REASONS.get(self.status, "InternalError")


@dataclass(eq=False)
class Outage:
    """The API server unreachable from `started` for `seconds` (``refuse`` or ``reset``)."""

    seconds: float
    mode: str
    started: float = field(default_factory=time.monotonic)
    served: int = 0
    ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def active(self) -> bool:
        return not self.ended and time.monotonic() < self.started + self.seconds

    def count(self, n: int = 1) -> None:
        with self._lock:
            self.served += n


class FaultBook:
    """Every fault ever added, in order; the first active matching one serves a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.outages: list[Outage] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            candidates = [f for f in self.faults if f.active]
        return next((f for f in candidates if f.take(method, path)), None)

    def outage(self) -> Outage | None:
        with self._lock:
            return next((o for o in self.outages if o.active), None)

    def unserved(self) -> list[Fault]:
        """Count-limited faults not served as often as they were meant to be."""
        with self._lock:
            return [f for f in self.faults if f.times is not None and f.served < f.times]
