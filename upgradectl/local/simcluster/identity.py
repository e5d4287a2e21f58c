"""What the simulated API server gives every new object: a uid and a creation timestamp."""

from __future__ import annotations

import datetime as dt
import random
import uuid

_IDS = random.Random()  # noqa: S311 - object ids, not secrets


def new_uid() -> str:
    """A random (version 4) UUID without a getrandom syscall: with many threads waiting for the GIL,
    every syscall that releases it costs a switch."""
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


def now_stamp() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
