"""The outbox publisher: every minute (EventBridge Scheduler), drain the event outbox to the custom bus.

Before each drain, the customer notices that are due (NOTICE_LEAD_MINUTES before a planned start) are written.

It keeps draining for PUBLISH_DRAIN_SECONDS (one invocation at a time: reserved concurrency 1), so an
event reaches the bus seconds after the change that caused it. Each published event also becomes
CloudWatch metrics (EMF), and each invocation reports the runs that make no progress.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.infra.settings import get_settings
from upgrader.notifications import metrics, publisher

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    service = settings.powertools_service_name
    remaining = context.get_remaining_time_in_millis() / 1000 - 10
    seconds = max(0.0, min(float(event.get("drainSeconds", settings.publish_drain_seconds)), remaining))

    def observe(sent: list[publisher.OutboxEvent]) -> None:
        metrics.emit_emf((o for e in sent for o in metrics.observations(e)), service=service)

    lead = settings.notice_lead_minutes * 60
    result = publisher.drain_for(factory.outbox(), [factory.event_channel()], seconds=seconds, on_sent=observe,
                                 before_each=lambda: factory.notices().upcoming(lead))  # fmt: skip
    factory.outbox().purge_sent()
    stuck = metrics.runs_without_progress(factory.database(), settings.no_progress_minutes)
    metrics.emit_emf(
        [metrics.Observation(metrics.RUNS_WITHOUT_PROGRESS, float(n), {"component": c}) for c, n in stuck.items()]
        + [metrics.Observation(metrics.RUNS_WITHOUT_PROGRESS, float(sum(stuck.values())), {})],
        service=service,
    )
    summary = {**result.as_dict(), "runsWithoutProgress": stuck}
    if result.failed:
        logger.error("events not published yet; the next drain retries them", extra=summary)
    elif result.sent:
        logger.info("events published", extra=summary)
    return summary
