"""Counters the benchmarks install around the real product: SQL statements and database round trips
(psycopg), Lambda invocations (the local engine's dispatcher) and Step Functions history events (moto).

Counted, not estimated. psycopg 3 sends a transaction's BEGIN and COMMIT as their own exchanges
(`_exec_command`, outside pipeline mode) and every `Cursor.execute` as one more; `executemany` runs in
one pipeline (one exchange for all its statements). In pipeline mode (`Database.transaction(pipeline=True)`)
statements and BEGIN/COMMIT are queued and sent without waiting: a round trip there is each time the
client waits for results (a fetch, a sync, the pipeline's end) while some are outstanding. Connection
set-up is not counted (a warm Lambda keeps its connection). The psycopg objects themselves are
untouched: the wrappers call them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
    distributed_item_processor_worker as dist_worker,
)
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from psycopg import _connection_base, _pipeline_base

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class SqlCounts:
    """What went to PostgreSQL while counting: statements (transaction control apart) and round trips."""

    statements: int = 0
    control: int = 0  # BEGIN / COMMIT / ROLLBACK / SAVEPOINT
    round_trips: int = 0
    queries: list[tuple[str, Any]] = field(default_factory=list)  # (query, params), when kept

    def __sub__(self, other: SqlCounts) -> SqlCounts:
        return SqlCounts(self.statements - other.statements, self.control - other.control,
                         self.round_trips - other.round_trips)  # fmt: skip


class SqlCounter:
    """Counts every statement and round trip of every psycopg connection of the process while installed."""

    def __init__(self, *, keep_queries: bool = False) -> None:
        self.counts = SqlCounts()
        self.keep_queries = keep_queries
        self._lock = threading.Lock()

    def snapshot(self) -> SqlCounts:
        with self._lock:
            return SqlCounts(self.counts.statements, self.counts.control, self.counts.round_trips)

    def take_queries(self) -> list[tuple[str, Any]]:
        with self._lock:
            queries, self.counts.queries = self.counts.queries, []
            return queries

    def _add(self, statements: int, control: int, round_trips: int, query: Any = None, params: Any = None) -> None:
        with self._lock:
            self.counts.statements += statements
            self.counts.control += control
            self.counts.round_trips += round_trips
            if self.keep_queries and query is not None:
                self.counts.queries.append((query, params))

    @contextmanager
    def installed(self) -> Iterator[SqlCounter]:
        base = _connection_base.BaseConnection
        pipeline = _pipeline_base.BasePipeline
        original_command = base._exec_command
        original_execute, original_many = psycopg.Cursor.execute, psycopg.Cursor.executemany
        waits = {name: getattr(pipeline, name) for name in ("_sync_gen", "_exit_gen", "_fetch_gen")}
        local = threading.local()  # depth: a wait inside another (a sync fetches) is the same round trip
        counter = self

        def waiting(original: Any) -> Any:
            def wait(pipe: Any, *args: Any, **kwargs: Any) -> Any:
                depth = getattr(local, "depth", 0)
                if depth == 0 and not getattr(local, "many", False) and (pipe.command_queue or pipe.result_queue):
                    counter._add(0, 0, 1)
                local.depth = depth + 1
                try:
                    return (yield from original(pipe, *args, **kwargs))
                finally:
                    local.depth = depth

            return wait

        def exec_command(conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            text = bytes(command).decode(errors="replace") if isinstance(command, bytes | bytearray) else str(command)
            is_control = text.lstrip().upper().startswith(TRANSACTION_CONTROL)
            counter._add(0 if is_control else 1, 1 if is_control else 0, 0 if conn._pipeline else 1)
            return (yield from original_command(conn, command, *args, **kwargs))

        def execute(cur: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            control = isinstance(query, str) and query.lstrip().upper().startswith(TRANSACTION_CONTROL)
            counter._add(0 if control else 1, 1 if control else 0, 0 if cur.connection._pipeline else 1, query, params)
            return original_execute(cur, query, params, **kwargs)

        def executemany(cur: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            params = list(params_seq)
            own = not cur.connection._pipeline  # its own pipeline: one exchange, counted here
            counter._add(len(params), 0, 1 if own else 0)
            local.many = own
            try:
                return original_many(cur, query, params, **kwargs)
            finally:
                local.many = False

        base._exec_command = exec_command  # type: ignore[method-assign,assignment]
        psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign,assignment]
        for name, original in waits.items():
            setattr(pipeline, name, waiting(original))
        try:
            yield self
        finally:
            for name, original in waits.items():
                setattr(pipeline, name, original)
            base._exec_command = original_command  # type: ignore[method-assign,assignment]
            psycopg.Cursor.execute = original_execute  # type: ignore[method-assign,assignment]
            psycopg.Cursor.executemany = original_many  # type: ignore[method-assign,assignment]


class LambdaCounter:
    """Invocations and handler seconds per function, counted at the local engine's Lambda dispatcher."""

    def __init__(self) -> None:
        self.invocations: Counter[str] = Counter()
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[LambdaCounter]:
        dispatcher = LambdaSimpleBackend.invoke
        counter = self

        def invoke(backend: Any, function_name: str, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return dispatcher(backend, function_name, *args, **kwargs)
            finally:
                name = function_name.split(":function:")[-1].split(":")[0]
                with counter._lock:
                    counter.invocations[name] += 1
                    counter.seconds[name] += time.perf_counter() - began

        invoke._local_engine_dispatcher = True  # type: ignore[attr-defined]
        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            LambdaSimpleBackend.invoke = dispatcher  # type: ignore[method-assign,assignment]


class HistoryEvents:
    """Step Functions history events by type: the parent's (read back) and each customer's child execution's.

    moto (5.2.x) does not register a Distributed Map's child executions as executions and writes their
    events into a throwaway EventManager per map run, so each child event is attributed to the item
    (customer) whose evaluation started the thread that writes it: moto evaluates an item on a map
    worker thread, and each state of it on threads started from there.
    """

    def __init__(self) -> None:
        self.by_customer: Counter[str] = Counter()
        self.child_types: Counter[str] = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[HistoryEvents]:
        worker = dist_worker.DistributedItemProcessorWorker
        original_add, original_eval = EventManager.add_event, worker._eval_job
        original_start, original_run = threading.Thread.start, threading.Thread.run
        tracker = self

        def add_event(manager: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> Any:
            item = getattr(tracker._local, "item", None)
            if item is not None:
                with tracker._lock:
                    tracker.by_customer[item] += 1
                    tracker.child_types[str(getattr(event_type, "value", event_type))] += 1
            return original_add(manager, context, event_type, *args, **kwargs)

        def eval_job(worker_self: Any, env: Any, job: Any) -> Any:
            tracker._local.item = str((job.job_input or {}).get("logId", "?"))
            try:
                return original_eval(worker_self, env, job)
            finally:
                tracker._local.item = None

        def start(thread: threading.Thread) -> None:
            thread._bench_item = getattr(tracker._local, "item", None)  # type: ignore[attr-defined]
            original_start(thread)

        def run(thread: threading.Thread) -> None:
            tracker._local.item = getattr(thread, "_bench_item", None)
            original_run(thread)

        EventManager.add_event = add_event  # type: ignore[method-assign,assignment]
        worker._eval_job = eval_job  # type: ignore[method-assign,assignment]
        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        threading.Thread.run = run  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            EventManager.add_event = original_add  # type: ignore[method-assign,assignment]
            worker._eval_job = original_eval  # type: ignore[method-assign,assignment]
            threading.Thread.start = original_start  # type: ignore[method-assign,assignment]
            threading.Thread.run = original_run  # type: ignore[method-assign,assignment]


def parent_history(sfn: Any, execution_arn: str) -> Counter[str]:
    """The parent execution's history events, by type."""
    types: Counter[str] = Counter()
    token = None
    while True:
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        types.update(event["type"] for event in page["events"])
        token = page.get("nextToken")
        if not token:
            return types


def transitions(types: Counter[str]) -> int:
    """State transitions as Step Functions bills them: one per state entered."""
    return sum(count for kind, count in types.items() if kind.endswith("StateEntered"))
