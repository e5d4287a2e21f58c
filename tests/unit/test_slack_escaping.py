"""Slack messages: every interpolated value is escaped as Slack's mrkdwn requires (`&`, `<`, `>`), helm
text sits in a code span, and only the product's own links are live (issue 29, item 3)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from upgrader.notifications import events
from upgrader.notifications.publisher import OutboxEvent
from upgrader.notifications.slack import Links, code, escape, render_message, render_reply

HOSTILE = "<!channel> <https://evil.example|https://console.aws.amazon.com> & <@U123>"
LINKS = Links(api_base_url="https://api.example.com/v1",
              state_machine_arn="arn:aws:states:eu-west-1:123456789012:stateMachine:cu-upgrade", region="eu-west-1")  # fmt: skip


def live_markup(text: str) -> list[str]:
    """What Slack would treat as markup: every `<...>` sequence left in the text."""
    return re.findall(r"<[^>]*>", text)


def upgrade(**overrides: Any) -> dict[str, Any]:
    return {"upgradeId": "41", "status": "halted", "component": "api", "version": "v1.2.0", "strategy": "canary",
            "currentWave": 0, "totalWaves": 2, "completed": 1, "failed": 1, "total": 4, "executionName": "41",
            **overrides}  # fmt: skip


def event(kind: str, detail: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(id=1, key="k", detail_type=kind, severity="attention", component="api", upgrade_id=41,
                       customer_id="cust_1", detail=detail, created_at=datetime(2026, 1, 1))  # fmt: skip


def test_escape_replaces_exactly_slacks_three_control_characters() -> None:
    assert escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape("&lt;") == "&amp;lt;"  # an entity someone typed stays text


def test_a_hostile_halt_reason_and_requester_leave_only_the_products_links_live() -> None:
    """Breakage tried: render_message interpolating haltReason / requestedBy raw (as before the fix):
    `<!channel>` and the disguised link appear as live markup and this test fails."""
    text = render_message(upgrade(haltReason=HOSTILE, requestedBy=HOSTILE, continuedBy=HOSTILE), LINKS)

    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|https://console.aws.amazon.com&gt;" in text
    assert live_markup(text) == [
        "<https://api.example.com/v1/api/upgrades/41/status|status>",
        "<https://api.example.com/v1/api/upgrades/41/logs|logs>",
        "<https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/"
        "arn:aws:states:eu-west-1:123456789012:execution:cu-upgrade:41|execution>",
    ]


def test_a_hostile_version_or_component_in_the_headline_is_text() -> None:
    """Breakage tried: the headline's version interpolated raw: its `<!here>` stays live."""
    text = render_message(upgrade(version="v1<!here>", component="api&<x>", status="in_progress"), LINKS)
    assert "v1&lt;!here&gt;" in text and "api&amp;&lt;x&gt;" in text
    assert not [m for m in live_markup(text) if "here" in m or "x>" in m]


def test_an_execution_name_cannot_end_or_relabel_the_products_link() -> None:
    """Breakage tried: _link without the percent-encoding: a `|` in the execution name relabels the link."""
    text = render_message(upgrade(executionName="41|click me>"), LINKS)
    (execution,) = [m for m in live_markup(text) if "execution" in m and "console" in m]
    assert execution.endswith("41%7Cclick%20me%3E|execution>")
    assert execution.count("|") == 1


def test_a_customers_helm_error_is_escaped_and_in_a_code_span() -> None:
    """Breakage tried: the reply putting customer.error raw after the colon (as before the fix): the
    chart's `fail` message pages the channel and plants a disguised link."""
    error = f"Error: UPGRADE FAILED: execution error at (stack/templates/x.yaml:1): {HOSTILE}"
    reply = render_reply(event(events.CUSTOMER_FAILED, {"customer": {"customerId": "cust_1", "error": error},
                                                        "upgrade": upgrade()}))  # fmt: skip
    assert reply == (":warning: cust_1: customer upgrade failed: `Error: UPGRADE FAILED: execution error at "
                     "(stack/templates/x.yaml:1): &lt;!channel&gt; &lt;https://evil.example|https://console.aws."
                     "amazon.com&gt; &amp; &lt;@U123&gt;`")  # fmt: skip
    assert live_markup(reply) == []


def test_a_backtick_cannot_close_the_code_span_and_multiline_text_is_a_block() -> None:
    """Breakage tried: code() without replacing backticks: the text after "`" leaves the span."""
    assert code("a ` *b*") == "`a \u02cb *b*`"
    assert code("line 1\nline `2`") == "```line 1\nline \u02cb2\u02cb```"
    assert code("") == ""


def test_abort_drift_and_unknown_events_escape_their_values() -> None:
    """Breakage tried: each branch without escape(); every reply below then carries live markup."""
    replies = [
        render_reply(event(events.UPGRADE_ABORTED, {"abort": {"abortedBy": HOSTILE, "reason": HOSTILE}})),
        render_reply(event(events.UPGRADE_HALTED, {"halt": {"reason": HOSTILE}})),
        render_reply(event(events.RUN_RECONCILED, {"run": {"reason": HOSTILE}})),
        render_reply(
            event(
                events.DRIFT_FOUND,
                {
                    "customer": {"customerId": "c<!here>"},
                    "drift": {"component": "api", "release": "v2<!channel>", "recorded": "v1"},
                },
            )
        ),  # fmt: skip
        render_reply(event("Something New", {"x": HOSTILE})),
    ]
    for reply in replies:
        assert live_markup(reply) == [], reply
    assert "`v2&lt;!channel&gt;`" in replies[3]


def test_an_analysis_reply_carries_the_reason_and_the_p_value_as_text() -> None:
    analysis = {"wave": 0, "verdict": "fail", "reason": HOSTILE,
                "checks": [{"check": "error-ratio", "verdict": "fail", "reason": "worse", "pValue": 0.00012},
                           {"check": HOSTILE, "verdict": "pass", "reason": "ok", "pValue": None}]}  # fmt: skip
    text = render_reply(event(events.ANALYSIS_FAILED, {"upgrade": upgrade(), "analysis": analysis}))
    assert text.startswith(":bar_chart: Analysis of wave 1: fail (error-ratio fail (p = 0.00012); ")
    assert "&lt;!channel&gt;" in text and live_markup(text) == []


def test_a_wave_rollback_reply_names_the_wave_and_a_whole_one_does_not() -> None:
    wave = {"runName": "41-rollback", "wholeUpgrade": False, "completed": 2, "failed": 1, "scope": "wave", "wave": 1}
    whole = {
        "runName": "41-rollback",
        "wholeUpgrade": True,
        "completed": 4,
        "failed": 0,
        "scope": "abort",
        "wave": None,
    }
    assert render_reply(event(events.ROLLBACK_FINISHED, {"upgrade": upgrade(), "run": wave})) == (
        ":rewind: Rollback finished (wave 2): 2 rolled back, 1 not"
    )
    assert render_reply(event(events.ROLLBACK_FINISHED, {"upgrade": upgrade(), "run": whole})) == (
        ":rewind: Rollback finished: 4 rolled back, 0 not"
    )
