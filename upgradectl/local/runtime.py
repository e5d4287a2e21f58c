"""The product wired together in one process: real handlers, real ASL on moto, a cluster, PostgreSQL.

Used by the end-to-end tests and by the local stack (`upgrade-local`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from upgrader.notifications.publisher import Channel, OutboxEvent

from upgradectl.local.engine import LocalStepFunctions
from upgradectl.local.events import LocalEventPublisher
from upgradectl.local.functions import ANALYSIS_FUNCTIONS, STATEMACHINE, WORKER_FUNCTIONS, FakeContext, load_function

SYNC_FUNCTION = "sync_customers"
EVENT_BUS = "customer-upgrades-events"

LOGGER = logging.getLogger(__name__)


class LocalRuntime:
    """Environment + Step Functions engine + state machine, for one database and one cluster URL."""

    def __init__(
        self,
        *,
        database_url: str,
        kube_api_url: str,
        kube_token_file: str | None = None,
        kube_reader_token_file: str | None = None,
        poll_seconds: int = 0,
        extra_env: Mapping[str, str] | None = None,
        state_machine_name: str = "customer-upgrades-upgrade",
        sweep_seconds: float | None = None,
        sweep_min_age_seconds: int = 30,
        sync_seconds: float | None = None,
        publish_seconds: float | None = None,
        event_channels: Sequence[Channel] = (),
        on_events_sent: Callable[[list[OutboxEvent]], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.kube_api_url = kube_api_url
        # The bearer token the cluster workers send (url mode): a file, like a projected token.
        self.kube_token_file = kube_token_file
        # The reader identity's token (sync, rollout checks): KUBE_READER_TOKEN_FILE; None: KUBE_TOKEN_FILE's.
        self.kube_reader_token_file = kube_reader_token_file
        self.poll_seconds = poll_seconds
        self.extra_env = dict(extra_env or {})
        self.state_machine_name = state_machine_name
        self.engine: LocalStepFunctions | None = None
        self.state_machine_arn = ""
        self._saved_env: dict[str, str | None] = {}
        # The reconciler's schedule (EventBridge Scheduler in AWS): None = only when `sweep()` is called.
        self.sweep_seconds = sweep_seconds
        self.sweep_min_age_seconds = sweep_min_age_seconds
        self._sweeper: threading.Thread | None = None
        self._stop_sweeping = threading.Event()
        # The inventory sync's schedule (EventBridge Scheduler in AWS): None = only `sync()` or the API.
        self.sync_seconds = sync_seconds
        self._syncer: threading.Thread | None = None
        # The outbox publisher (publish_events on a schedule in AWS): None = only when `publish()` is called.
        # It drains to the (moto) EventBridge bus and to these channels (webhook, Slack, metrics).
        self.publish_seconds = publish_seconds
        self.event_channels = list(event_channels)
        self.on_events_sent = on_events_sent
        self.publisher: LocalEventPublisher | None = None

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalRuntime:
        from upgrader import factory
        from upgrader.infra.settings import get_settings

        # The workers, and the sync function that POST /api/customers/sync invokes asynchronously.
        handlers = {
            name: load_function(name).lambda_handler for name in (*WORKER_FUNCTIONS, *ANALYSIS_FUNCTIONS, SYNC_FUNCTION)
        }
        self.engine = LocalStepFunctions(handlers)
        self.engine.start()
        try:
            self.state_machine_arn = self.engine.create_state_machine(
                self.state_machine_name, STATEMACHINE, self.engine.substitutions_for()
            )
            self._set_env(
                {
                    "DATABASE_URL": self.database_url,
                    "UPGRADE_STATE_MACHINE_ARN": self.state_machine_arn,
                    "MANIFEST_BUCKET": self.engine.bucket,
                    "CLUSTER_MODE": "url",
                    "KUBE_API_URL": self.kube_api_url,
                    **({"KUBE_TOKEN_FILE": self.kube_token_file} if self.kube_token_file else {}),
                    **({"KUBE_READER_TOKEN_FILE": self.kube_reader_token_file} if self.kube_reader_token_file else {}),
                    "JOB_POLL_SECONDS": str(self.poll_seconds),
                    "SYNC_FUNCTION_NAME": SYNC_FUNCTION,
                    "POWERTOOLS_SERVICE_NAME": "customer-upgrades",
                    "EVENT_BUS_NAME": EVENT_BUS,
                    # The simulated releases name the sample chart's registry.example.com images, which no
                    # registry here holds: the images' pre-flight is off unless a caller starts a local
                    # registry and says so (docs/images.md, "Locally").
                    "IMAGE_PREFLIGHT": "off",
                    **self.extra_env,
                }
            )
            factory.reset()
            factory.aws_client("events", get_settings()).create_event_bus(Name=EVENT_BUS)
            self.publisher = LocalEventPublisher(factory.outbox(), [factory.event_channel(), *self.event_channels],
                                                 interval=self.publish_seconds or 0.2, on_sent=self.on_events_sent,
                                                 before_each=lambda: factory.notices().upcoming(
                                                     get_settings().notice_lead_minutes * 60))  # fmt: skip
            if self.publish_seconds:
                self.publisher.start()
        except BaseException:
            self.stop()
            raise
        self._stop_sweeping.clear()
        if self.sweep_seconds:
            self._sweeper = threading.Thread(target=self._sweep_forever, name="reconciler-sweep", daemon=True)
            self._sweeper.start()
        if self.sync_seconds:
            self._syncer = threading.Thread(target=self._sync_forever, name="inventory-sync", daemon=True)
            self._syncer.start()
        return self

    def sync(self, source: str = "local.startup") -> dict[str, Any]:
        """One inventory sync, run here and now (what EventBridge Scheduler triggers in AWS)."""
        handler = load_function(SYNC_FUNCTION).lambda_handler
        return dict(handler({"source": source}, FakeContext(SYNC_FUNCTION)))

    def _sync_forever(self) -> None:
        assert self.sync_seconds
        while not self._stop_sweeping.wait(self.sync_seconds):
            try:
                self.sync("scheduler.sync")
            except Exception:  # noqa: BLE001 - the next one tries again, as the schedule would
                LOGGER.warning("inventory sync failed", exc_info=True)

    def publish(self) -> dict[str, Any]:
        """One drain of the event outbox, here and now (what the scheduled publish_events does in AWS)."""
        assert self.publisher is not None
        return self.publisher.publish()

    def sweep(self, min_age_seconds: int = 0) -> dict[str, Any]:
        """One run of the reconciler's sweep (what EventBridge Scheduler triggers in AWS)."""
        handler = load_function("reconcile_runs").lambda_handler
        return dict(handler({"source": "local.sweep", "minAgeSeconds": min_age_seconds}, FakeContext("reconcile_runs")))

    def _sweep_forever(self) -> None:
        assert self.sweep_seconds
        while not self._stop_sweeping.wait(self.sweep_seconds):
            try:
                self.sweep(self.sweep_min_age_seconds)
            except Exception:  # noqa: BLE001 - the next sweep tries again, as the schedule would
                LOGGER.warning("reconciler sweep failed", exc_info=True)

    def stop(self, *, process_exits: bool = False) -> None:
        """Stop the engine; `process_exits`: leave moto in place for threads still finishing (see engine)."""
        from upgrader import factory

        self._stop_sweeping.set()
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        for thread in (self._sweeper, self._syncer):
            if thread is not None:
                thread.join(timeout=30)
        self._sweeper = self._syncer = None
        if self.engine is not None:
            self.engine.stop(keep_mock=process_exits)
            self.engine = None
        factory.reset()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    @property
    def sfn(self) -> Any:
        assert self.engine is not None
        return self.engine.sfn

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def wait(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        assert self.engine is not None
        return self.engine.wait_for_execution(self.execution_arn(name), timeout=timeout)

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
