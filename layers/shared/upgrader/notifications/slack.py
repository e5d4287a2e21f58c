"""Slack: one message per upgrade, updated in place; threaded replies only for what needs attention.

The message shows the upgrade as its latest event left it (status, wave, counts, who continued or why it
halted or was aborted), links to its status, logs and Step Functions execution, and the exact CLI command
to continue or abort while it is active. Events of one upgrade are coalesced (one update for a batch),
updates of one upgrade are at most one per `min_interval` seconds (Slack allows about one a second per
channel), and an update whose text would not change is not sent.

Every value from outside the product's own code (helm errors a customer's chart controls, versions read
from releases, abort and halt reasons, names) is escaped as Slack's mrkdwn requires (`&`, `<`, `>`), so
none can mention a channel (`<!channel>`) or plant a link (`<https://x|text>`); helm text is shown in
a code span. Only the product's own links (status, logs, execution) are live.

Never duplicated: the message's `ts` and each reply are recorded in PostgreSQL under a row lock, in the
transaction that posts them, so concurrent or retried deliveries post once. (A crash after Slack answered
and before the commit could repeat that one post; nothing else can.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from upgrader.infra.db import Database, Row
from upgrader.notifications import events
from upgrader.notifications.publisher import OutboxEvent

LOGGER = logging.getLogger(__name__)

_URL_SAFE = ":/?#[]@!$&'()*+,;=%~._-"  # RFC 3986 reserved and unreserved characters, nothing else
ACTIVE = ("pending", "in_progress", "awaiting_continue")
_HINTS = {
    "invalid_auth": "the bot token is wrong or revoked: check the token secret",
    "not_authed": "no bot token was sent: check the token secret",
    "channel_not_found": "the channel does not exist or the bot is not in it: invite the bot",
    "not_in_channel": "the bot is not in the channel: invite it",
}


def escape(value: Any) -> str:
    """A value as Slack mrkdwn text: `&`, `<` and `>` replaced by their entities (Slack's only control
    characters), so nothing in it becomes a mention, a link or a special command."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: Any) -> str:
    """Escaped text in a code span (helm output, errors): no formatting, no link. A backtick would end
    the span, so it becomes a prime; a multi-line text gets a code block."""
    text = escape(value).replace("`", "\u02cb")
    if "\n" in text.strip():
        return f"```{text.strip()}```"
    return f"`{text.strip()}`" if text.strip() else ""


def _link(url: str, label: str) -> str:
    """One of the product's own links (built from its configuration): the only live markup we send. The
    URL is percent-encoded past what a URL needs, so a `|`, `<`, `>` or space in a part of it (an execution
    name) can neither end the link nor relabel it."""
    return f"<{escape(quote(url, safe=_URL_SAFE))}|{escape(label)}>"


class SlackError(RuntimeError):
    """Slack refused a call (its `error` code, with what to do about it)."""


class SlackWebApi:
    """The few Web API methods we call, over HTTPS with the bot token; 429 answers wait Retry-After."""

    def __init__(self, base_url: str, token: Callable[[], str], *, timeout: float = 10.0,
                 pause: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Slack API URL must start with http:// or https://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._pause = pause

    def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload).encode("utf-8")
        for _ in range(3):
            request = urllib.request.Request(f"{self.base_url}/{method}", data=data, method="POST", headers={  # noqa: S310
                "Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {self._token()}",
            })  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - http(s) only
                    answer = json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                if exc.code == 429:
                    self._pause(min(30.0, float(exc.headers.get("Retry-After") or 1)))
                    continue
                raise SlackError(f"Slack {method} answered HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise SlackError(f"Slack {method} at {self.base_url} failed: {getattr(exc, 'reason', exc)}") from exc
            if not answer.get("ok"):
                code = str(answer.get("error") or "unknown_error")
                hint = _HINTS.get(code)
                raise SlackError(f"Slack refused {method}: {code}" + (f" ({hint})" if hint else ""))
            return dict(answer)
        raise SlackError(f"Slack {method}: still rate limited after 3 tries")


@dataclass(frozen=True)
class Links:
    """Where a message's links point: the API (status, logs) and the Step Functions console."""

    api_base_url: str | None = None
    state_machine_arn: str | None = None
    region: str | None = None

    def status(self, upgrade_id: str) -> str | None:
        return f"{self.api_base_url.rstrip('/')}/api/upgrades/{upgrade_id}/status" if self.api_base_url else None

    def logs(self, upgrade_id: str) -> str | None:
        return f"{self.api_base_url.rstrip('/')}/api/upgrades/{upgrade_id}/logs" if self.api_base_url else None

    def execution(self, execution_name: str | None) -> str | None:
        if not (self.state_machine_arn and execution_name and self.region):
            return None
        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_name}"
        return f"https://{self.region}.console.aws.amazon.com/states/home?region={self.region}#/v2/executions/details/{arn}"


def render_message(upgrade: dict[str, Any], links: Links) -> str:
    """The upgrade's one message, from the state an event carries (every value escaped)."""
    uid = str(upgrade["upgradeId"])
    status = str(upgrade["status"])
    icon = {"completed": ":white_check_mark:", "awaiting_continue": ":double_vertical_bar:", "halted": ":octagonal_sign:",
            "aborted": ":no_entry_sign:", "failed": ":x:", "completed_with_failures": ":warning:",
            "rolled_back": ":rewind:"}.get(status, ":arrows_counterclockwise:")  # fmt: skip
    wave = int(upgrade.get("currentWave") or 0)
    total_waves = escape(upgrade["totalWaves"])
    where = (f"Waiting before wave {wave + 1} of {total_waves}" if upgrade.get("gate")
             else f"Wave {wave + 1} of {total_waves}")  # fmt: skip
    lines = [
        f"{icon} *Upgrade {escape(uid)}*: {escape(upgrade['component'])} → {escape(upgrade['version'])} "
        f"({escape(upgrade['strategy'])}) · *{escape(status.replace('_', ' '))}*",
        f"{where} · {escape(upgrade['completed'])} completed · {escape(upgrade['failed'])} failed · "
        f"{escape(upgrade['total'])} customers",
    ]
    if upgrade.get("requestedBy"):
        lines.append(f"Requested by {escape(upgrade['requestedBy'])}")
    if upgrade.get("continuedBy"):
        lines.append(f"Continued by {escape(upgrade['continuedBy'])}")
    if upgrade.get("haltReason"):
        lines.append(f"Stopped: {escape(upgrade['haltReason'])}")
    found = [(name, url) for name, url in (("status", links.status(uid)), ("logs", links.logs(uid)),
             ("execution", links.execution(upgrade.get("executionName")))) if url]  # fmt: skip
    if found:
        lines.append(" · ".join(_link(url, name) for name, url in found))
    if status in ACTIVE:
        commands = [f"abort: {code(events.abort_command(uid))}"]
        if status == "awaiting_continue":
            commands.insert(0, f"continue: {code(events.continue_command(uid))}")
        lines.append(" · ".join(commands))
    return "\n".join(lines)


def render_reply(event: OutboxEvent) -> str:
    """A threaded reply for an event that needs attention (every value escaped, helm text in code)."""
    detail = event.detail
    customer = detail.get("customer") or {}
    upgrade = detail.get("upgrade") or {}
    uid = upgrade.get("upgradeId")
    kind = event.detail_type
    if kind == events.GATE_WAITING:
        return (f":raising_hand: The canary waits for your go-ahead. Check its customers, then "
                f"{code(events.continue_command(uid))} (or {code(events.abort_command(uid))})")  # fmt: skip
    if kind in (events.CUSTOMER_FAILED, events.CUSTOMER_ROLLED_BACK, events.CUSTOMER_ROLLBACK_FAILED):
        error = customer.get("error")
        head = f":warning: {escape(customer.get('customerId'))}: {escape(kind.lower())}"
        return f"{head}: {code(error)}" if error else head
    if kind == events.UPGRADE_HALTED:
        return f":octagonal_sign: Halted: {escape((detail.get('halt') or {}).get('reason'))}"
    if kind == events.UPGRADE_ABORTED:
        abort = detail.get("abort") or {}
        return f":no_entry_sign: Aborted by {escape(abort.get('abortedBy'))}: {escape(abort.get('reason'))}"
    if kind == events.WAVE_FINISHED:
        wave = detail.get("wave") or {}
        budget = wave.get("budget") or {}
        return (f":warning: Wave {int(wave.get('wave') or 0) + 1}: {escape(wave.get('failed'))} of "
                f"{escape(wave.get('size'))} failed; failure budget {100 * float(budget.get('consumed') or 0):.0f}% "
                f"used (tolerated: {escape(budget.get('tolerated'))})")  # fmt: skip
    if kind == events.UPGRADE_FINISHED:
        return (f":warning: Finished {escape(str(upgrade.get('status')).replace('_', ' '))}: "
                f"{escape(upgrade.get('completed'))} completed, {escape(upgrade.get('failed'))} failed")  # fmt: skip
    if kind == events.ROLLBACK_FINISHED:
        run = detail.get("run") or {}
        wave = f" (wave {int(run['wave']) + 1})" if run.get("scope") == "wave" and run.get("wave") is not None else ""
        return (f":rewind: Rollback finished{wave}: {escape(run.get('completed'))} rolled back, "
                f"{escape(run.get('failed'))} not")  # fmt: skip
    if kind == events.RUN_RECONCILED:
        return f":wrench: Run reconciled: {escape((detail.get('run') or {}).get('reason'))}"
    if kind in (events.ANALYSIS_FAILED, events.ANALYSIS_INCONCLUSIVE, events.ANALYSIS_PASSED):
        analysis = detail.get("analysis") or {}
        checks = "; ".join(f"{escape(c.get('check'))} {escape(c.get('verdict'))}"
                           + (f" (p = {float(c['pValue']):.2g})" if c.get("pValue") is not None else "")
                           for c in analysis.get("checks") or [])  # fmt: skip
        return (f":bar_chart: Analysis of wave {int(analysis.get('wave') or 0) + 1}: {escape(analysis.get('verdict'))}"
                f" ({checks}): {escape(analysis.get('reason'))}")  # fmt: skip
    if kind == events.DRIFT_FOUND:
        drift = detail.get("drift") or {}
        return (f":mag: Drift on {escape(customer.get('customerId'))}: {escape(drift.get('component'))} runs "
                f"{code(drift.get('release'))}, the inventory says {code(drift.get('recorded'))}")  # fmt: skip
    return f"{escape(kind)}: {code(json.dumps(detail)[:300])}"


@dataclass
class SlackChannel:
    """The Slack notification channel (a publisher `Channel` locally; the notify_slack function in AWS)."""

    api: SlackWebApi
    database: Callable[[], Database]
    channel: str
    links: Links = field(default_factory=Links)
    min_interval: float = 1.0
    components: Sequence[str] = ()
    severities: Sequence[str] = ("attention", "critical")
    pause: Callable[[float], None] = time.sleep
    name: str = "slack"
    batch_size: int = 100  # a batch's events of one upgrade make one update

    def wanted(self, event: OutboxEvent) -> bool:
        if event.detail_type in events.CUSTOMER_NOTICES:
            return False  # for the customers' communication system, not the team
        return not self.components or event.component in self.components

    def send(self, batch: Sequence[OutboxEvent]) -> list[str | None]:
        results: list[str | None] = []
        latest: dict[int, OutboxEvent] = {}
        try:
            for event in batch:
                if self.wanted(event):
                    self._handle(event)
                    if event.detail.get("upgrade") and event.upgrade_id is not None:
                        latest[int(event.upgrade_id)] = event
                results.append(None)
            for upgrade_id, event in latest.items():
                self._update(upgrade_id, event)
        except SlackError as exc:
            # this event and those after it are not taken (retried, in order); the earlier ones are
            return results + [str(exc)] * (len(batch) - len(results))
        return results

    def _lock(self, cur: Any, upgrade_id: int) -> Row:
        cur.execute("INSERT INTO slack_messages (upgrade_id, channel) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (upgrade_id, self.channel))  # fmt: skip
        cur.execute("SELECT * FROM slack_messages WHERE upgrade_id = %s AND channel = %s FOR UPDATE",
                    (upgrade_id, self.channel))  # fmt: skip
        row = cur.fetchone()
        assert row is not None
        return dict(row)

    def _handle(self, event: OutboxEvent) -> None:
        upgrade = event.detail.get("upgrade")
        attention = event.severity != "info" and event.severity in self.severities
        if upgrade is None or event.upgrade_id is None:  # drift: a message of its own, once
            if attention:
                self._reply_once(event, thread_ts=None)
            return
        with self.database().transaction() as cur:
            message = self._lock(cur, int(event.upgrade_id))
            if message["ts"] is None:
                text = render_message(upgrade, self.links)
                answer = self.api.call("chat.postMessage", {"channel": self.channel, "text": text, "mrkdwn": True})
                cur.execute(
                    "UPDATE slack_messages SET ts = %s, text_hash = %s, updated_at = clock_timestamp(), updates = 0"
                    " WHERE upgrade_id = %s AND channel = %s",
                    (str(answer.get("ts")), _hash(text), event.upgrade_id, self.channel),
                )
                message["ts"] = str(answer.get("ts"))
        if attention:
            self._reply_once(event, thread_ts=message["ts"])

    def _reply_once(self, event: OutboxEvent, thread_ts: str | None) -> None:
        with self.database().transaction() as cur:
            cur.execute("INSERT INTO slack_replies (event_id, channel) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                        " RETURNING event_id", (event.id, self.channel))  # fmt: skip
            if cur.fetchone() is None:
                return  # replied before
            payload: dict[str, Any] = {"channel": self.channel, "text": render_reply(event), "mrkdwn": True}
            if thread_ts:
                payload["thread_ts"] = thread_ts
            answer = self.api.call("chat.postMessage", payload)
            cur.execute("UPDATE slack_replies SET ts = %s WHERE event_id = %s AND channel = %s",
                        (str(answer.get("ts")), event.id, self.channel))  # fmt: skip

    def _update(self, upgrade_id: int, event: OutboxEvent) -> None:
        """Bring the upgrade's message to the state of its latest event: at most once per min_interval."""
        text = render_message(event.detail["upgrade"], self.links)
        with self.database().transaction() as cur:
            message = self._lock(cur, upgrade_id)
            if message["ts"] is None or message["text_hash"] == _hash(text):
                return
            if message["updated_at"] is not None:
                cur.execute("SELECT EXTRACT(EPOCH FROM (clock_timestamp()::timestamp - %s::timestamp)) AS ago",
                            (message["updated_at"],))  # fmt: skip
                ago = max(0.0, float((cur.fetchone() or {"ago": self.min_interval})["ago"]))
                if ago < self.min_interval:
                    self.pause(self.min_interval - ago)  # rate limit per upgrade (the row lock keeps others out)
            self.api.call("chat.update", {"channel": self.channel, "ts": message["ts"], "text": text})
            cur.execute(
                "UPDATE slack_messages SET text_hash = %s, updated_at = clock_timestamp(),"
                " updates = updates + 1 WHERE upgrade_id = %s AND channel = %s",
                (_hash(text), upgrade_id, self.channel),
            )


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_bot_token(client: Any, secret_arn: str) -> str:
    """The bot token from Secrets Manager: the secret's string, or its `token` / `botToken` key when JSON."""
    text = str(client.get_secret_value(SecretId=secret_arn)["SecretString"]).strip()
    if text.startswith("{"):
        data = json.loads(text)
        return str(data.get("token") or data.get("botToken") or "")
    return text


def event_from_envelope(envelope: dict[str, Any]) -> OutboxEvent:
    """An event as EventBridge delivers it to a target, back in the shape the channels take."""
    from datetime import datetime

    detail = dict(envelope.get("detail") or {})
    common = {key: detail.pop(key, None) for key in ("eventId", "eventKey", "severity", "component", "occurredAt")}
    upgrade = detail.get("upgrade") or {}
    customer = detail.get("customer") or {}
    stamp = str(common["occurredAt"] or envelope.get("time") or "1970-01-01T00:00:00Z").replace("Z", "")
    return OutboxEvent(
        id=int(common["eventId"] or 0), key=str(common["eventKey"] or ""), detail_type=str(envelope["detail-type"]),
        severity=str(common["severity"] or "info"), component=common["component"],
        upgrade_id=int(upgrade["upgradeId"]) if upgrade.get("upgradeId") else None,
        customer_id=customer.get("customerId"), detail=detail, created_at=datetime.fromisoformat(stamp),
    )  # fmt: skip
