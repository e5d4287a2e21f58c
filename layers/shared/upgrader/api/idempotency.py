"""Idempotent requests: the first answer to (caller, Idempotency-Key), replayed for the same body.

A request with a key first claims it (a row in `idempotency_keys`, unique per caller and key). The
claimer runs the request and stores its answer; the same key with the same body then gets that
answer again (a retry after a timeout, a double click, ten concurrent copies: one upgrade), and with a
different body a 422 that says so. Copies that arrive while the first still runs wait for its answer.

A request that fails (a 4xx or 5xx) gives its claim back, so a retry runs it again. A claim whose
request died without an answer (its Lambda timed out) is taken over after `LOCK_SECONDS`. Keys are
remembered for IDEMPOTENCY_TTL_SECONDS (default 24 h), then forgotten.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from upgrader.infra.db import Database
from upgrader.infra.errors import IdempotencyInProgress, IdempotencyKeyReused

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$"
# Longer than a deploy can take (its Lambda times out at 30 s): a claim older than this was abandoned.
LOCK_SECONDS = 60
# How long a copy waits for the first request's answer before answering 409 (API Gateway gives 29 s).
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.05


def request_hash(payload: Any) -> str:
    """The request as a canonical JSON text, hashed: same meaning, same hash (key order, spacing)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


class IdempotencyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(self, caller: str, key: str, operation: str, digest: str, *, ttl_seconds: int) -> Answer | None:
        """None when this request now holds the key; the stored answer when it was answered already.

        Raises IdempotencyKeyReused (another body) or IdempotencyInProgress (the first still runs)."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                DELETE FROM idempotency_keys
                 WHERE (caller = %(caller)s AND key = %(key)s
                        AND (expires_at < NOW() OR (status = 'in_progress' AND locked_until < NOW())))
                    OR ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at < NOW() LIMIT 100)
                """,
                {"caller": caller, "key": key},
            )
            cur.execute(
                """
                INSERT INTO idempotency_keys (caller, key, operation, request_hash, locked_until, expires_at)
                VALUES (%s, %s, %s, %s, NOW() + make_interval(secs => %s), NOW() + make_interval(secs => %s))
                ON CONFLICT (caller, key) DO NOTHING RETURNING key
                """,
                (caller, key, operation, digest, LOCK_SECONDS, ttl_seconds),
            )
            if cur.fetchone() is not None:
                return None
            cur.execute("SELECT * FROM idempotency_keys WHERE caller = %s AND key = %s", (caller, key))
            row = cur.fetchone()
        if row is None:  # it expired between the two statements: try again
            return self.claim(caller, key, operation, digest, ttl_seconds=ttl_seconds)
        if row["operation"] != operation or row["request_hash"] != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was first used with a different request body; a different request "
                "needs a new key"
            )
        if row["status"] != "completed":
            raise IdempotencyInProgress(
                f"the first request with Idempotency-Key {key!r} is still running; retry in a few seconds"
            )
        return Answer(int(row["response_status"]), dict(row["response"]), replayed=True)

    def complete(self, caller: str, key: str, answer: Answer, upgrade_id: int | None) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE idempotency_keys SET status = 'completed', response_status = %s, response = %s, upgrade_id = %s
                 WHERE caller = %s AND key = %s
                """,
                (answer.status_code, Jsonb(answer.body), upgrade_id, caller, key),
            )

    def give_back(self, caller: str, key: str) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s AND status = 'in_progress'", (caller, key)
            )


def run_once(
    repo: IdempotencyRepository,
    *,
    caller: str,
    key: str,
    operation: str,
    payload: Any,
    ttl_seconds: int,
    run: Callable[[], tuple[Answer, int | None]],
    wait_seconds: float = WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Answer:
    """`run()` once per (caller, key); its answer for every request with the same key and body."""
    digest = request_hash(payload)
    deadline = clock() + wait_seconds
    while True:
        try:
            stored = repo.claim(caller, key, operation, digest, ttl_seconds=ttl_seconds)
        except IdempotencyInProgress:
            if clock() >= deadline:
                raise
            sleep(POLL_SECONDS)
            continue
        if stored is not None:
            return stored
        break
    try:
        answer, upgrade_id = run()
    except BaseException:  # a failed request leaves no answer: a retry runs it again
        repo.give_back(caller, key)
        raise
    repo.complete(caller, key, answer, upgrade_id)
    return answer
