"""Whether a host names this machine's loopback interface: the local stack's and the console's Host header
check (upgradectl.loopback), and the registries that may be reached over plain HTTP (upgrader.images)."""

from __future__ import annotations

import ipaddress


def host_name(host: str) -> str | None:
    """The name of a Host header value (`localhost:3100` -> `localhost`, `[::1]:3100` -> `::1`); None if malformed."""
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None
    return name


def is_loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback interface (a name no DNS answer can change)."""
    name = host_name((host or "").strip().lower())
    if not name:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
