"""The API's request models on their own (upgrader/contract/models.py): the id and number grammars, what each
field accepts and refuses, and the words of each refusal (issue 27's mutation run; the document these models
make is checked by tests/test_openapi.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError
from upgrader.contract import base
from upgrader.contract.base import decimal_pattern
from upgrader.contract.models import DeployRequest, FailureThreshold, HealthCheck

DEPLOY = {"component": "api", "version": "v1.2.0", "strategy": "all"}


def _refusal(model: Any, data: Any) -> tuple[str, str]:
    """The first error's location and message."""
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    error = refused.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), str(error["msg"])


@pytest.mark.parametrize("maximum", [1, 5, 9, 10, 19, 42, 99, 100, 101, 300, 999, 1000, 2024, 65535])
def test_the_decimal_pattern_of_a_small_maximum_is_exactly_1_to_it(maximum: int) -> None:
    """Every number up to 20 past the maximum, written plainly, and the ways of writing it otherwise.
    mutants: models.py:32-44 (the shorter lengths' alternatives, `index == 0`, `int(digit) - 1`, `high >= low`,
    `low == high`, `rest < 2`, the repetition counts, the maximum itself)."""
    pattern = re.compile(decimal_pattern(maximum))
    for n in range(0, maximum + 21):
        assert bool(pattern.match(str(n))) == (1 <= n <= maximum), (maximum, n)
    for text in ("01", "+1", "-1", " 1", "1 ", "", "1.0", "00"):
        assert pattern.match(text) is None, (maximum, text)


def test_the_id_pattern_is_exactly_postgresqls_int() -> None:
    """mutants: models.py:22 `2**31 - 1` mutated; the long maximum's alternatives (models.py:34-42)."""
    pattern = re.compile(base.UPGRADE_ID_PATTERN)
    accepted = [1, 9, 10, 99, 1_000_000_000, 1_999_999_999, 2_099_999_999, 2_147_483_639, 2_147_483_646,
                2_147_483_647, 2_147_399_999, 2_146_999_999]  # fmt: skip
    refused = [0, 2_147_483_648, 2_147_483_650, 2_147_484_000, 2_148_000_000, 2_200_000_000, 3_000_000_000,
               9_999_999_999, 10_000_000_000]  # fmt: skip
    assert all(pattern.match(str(n)) for n in accepted)
    assert not any(pattern.match(str(n)) for n in refused)


@pytest.mark.parametrize(("value", "expected"), [(10.0, 10), (10.5, 10.5), ("10", "10"), (True, True), (7, 7)])
def test_a_whole_json_number_is_an_integer_and_nothing_else_becomes_one(value: Any, expected: Any) -> None:
    """mutants: models.py:80 `and` → `or`, `value.is_integer()` negated."""
    result = base._whole_number(value)  # noqa: SLF001 - the validator itself
    assert result == expected and type(result) is type(expected)


def test_integer_fields_take_10_0_and_refuse_10_5_a_string_and_a_boolean() -> None:
    assert DeployRequest.model_validate({**DEPLOY, "maxConcurrency": 10.0}).max_concurrency == 10
    for value in (10.5, "10", True):
        assert _refusal(DeployRequest, {**DEPLOY, "maxConcurrency": value})[0].startswith("maxConcurrency")


@pytest.mark.parametrize("text", ["+1", " 1", "1\n", "1_0", "1.0", "0x1", "1234567890123", ""])
def test_a_query_integer_is_plain_decimal_digits(text: str) -> None:
    """mutants: models.py:92 the pattern, `and not` → `and`; :93 the message."""
    with pytest.raises(ValueError, match=r"^must be a whole number written in decimal digits$"):
        base._digits_only(text)  # noqa: SLF001 - the validator itself


@pytest.mark.parametrize("value", ["0", "-3", "123456789012", 5])
def test_digits_pass_on_as_they_came(value: Any) -> None:
    assert base._digits_only(value) == value  # noqa: SLF001


def test_a_request_refuses_unknown_fields_and_strings_for_numbers() -> None:
    """mutants: models.py:114 `extra="forbid"` → `"XXforbidXX"`, `strict=True` → `False`."""
    assert _refusal(DeployRequest, {**DEPLOY, "canarypercent": 5})[0] == "canarypercent"
    assert _refusal(DeployRequest, {**DEPLOY, "bakeSeconds": "5"})[0] == "bakeSeconds"


def test_a_model_is_built_when_first_used_not_when_imported() -> None:
    """A function's cold start builds only the models it uses. mutants: models.py:108 `defer_build=True` →
    `False`."""

    class Later(base.Model):
        n: int

    assert Later.__pydantic_complete__ is False
    assert Later.model_validate({"n": 1}).n == 1


@pytest.mark.parametrize(("data", "message"), [
    ({}, "Value error, failureThreshold takes exactly one of 'percent' or 'count'"),
    ({"percent": 10, "count": 1}, "Value error, failureThreshold takes exactly one of 'percent' or 'count'"),
    ({"percent": None}, "Value error, must be a number, not null"),
    ({"count": None}, "Value error, must be a number, not null"),
])  # fmt: skip
def test_a_failure_threshold_is_exactly_one_number(data: dict[str, Any], message: str) -> None:
    """mutants: models.py:121 the message; :140 `len(data) != 1` mutated; :147 `value is None` negated; :148."""
    assert _refusal(FailureThreshold, data)[1] == message


@pytest.mark.parametrize(("data", "ok"), [({"percent": 0}, True), ({"percent": 100}, True), ({"percent": 12.5}, True),
                                          ({"percent": 100.1}, False), ({"percent": -1}, False),
                                          ({"count": 0}, True), ({"count": 10_000}, True), ({"count": 3.0}, True),
                                          ({"count": 10_001}, False), ({"count": 1.5}, False)])  # fmt: skip
def test_a_failure_thresholds_bounds(data: dict[str, Any], ok: bool) -> None:
    """mutants: models.py:130, :133 the bounds; :153 `==` → `!=` (every valid threshold refused)."""
    if ok:
        parsed = FailureThreshold.model_validate(data)
        assert parsed.model_dump(exclude_none=True) == {k: int(v) if k == "count" else v for k, v in data.items()}
    else:
        assert _refusal(FailureThreshold, data)[0].startswith(next(iter(data)))


def test_a_health_check_defaults_to_the_rollout_within_300_seconds_on_port_http() -> None:
    """mutants: models.py:161-173 the defaults."""
    check = HealthCheck()
    assert (check.enabled, check.timeout_seconds, check.http_path, check.service, check.port) == (
        True, 300, None, None, "http")  # fmt: skip
    assert DeployRequest.model_validate(DEPLOY).health_check == check


@pytest.mark.parametrize(("path", "ok"), [("/healthz", True), ("/", True), ("/a/.well-known/x", True), ("/a/..b", True),
                                          ("/a/../b", False), ("/..", False), ("/a/..", False), ("healthz", False),
                                          ("/a b", False), ("/" + "a" * 255, False)])  # fmt: skip
def test_a_probe_path_never_leaves_the_service(path: str, ok: bool) -> None:
    """mutants: models.py:61-63 the segment grammar and the length."""
    if ok:
        assert HealthCheck.model_validate({"httpPath": path}).http_path == path
    else:
        assert _refusal(HealthCheck, {"httpPath": path})[0] == "httpPath"


@pytest.mark.parametrize(("port", "ok"), [("http", True), ("metrics-2", True), ("a" * 15, True), ("1", True),
                                          ("65535", True), ("a" * 16, False), ("65536", False), ("0", False),
                                          ("-http", False), ("http-", False)])  # fmt: skip
def test_a_probe_port_is_a_name_or_a_number_of_a_real_port(port: str, ok: bool) -> None:
    """mutants: models.py:66 PORT_PATTERN."""
    if ok:
        assert HealthCheck.model_validate({"port": port}).port == port
    else:
        assert _refusal(HealthCheck, {"port": port})[0] == "port"


def test_customer_ids_are_each_named_once() -> None:
    """mutants: models.py:303 `!=` → `==`, `and` → `or`; :304 the message."""
    assert DeployRequest.model_validate({**DEPLOY, "customerIds": ["a", "b"]}).customer_ids == ["a", "b"]
    assert _refusal(DeployRequest, {**DEPLOY, "customerIds": ["a", "b", "a"]}) == (
        "customerIds",
        "Value error, customerIds contains duplicates",
    )


def test_an_empty_label_filter_is_refused_in_words() -> None:
    """mutants: models.py:310 `value == {}` → `!=`; :311-314 the message."""
    assert DeployRequest.model_validate({**DEPLOY, "labels": {"tier": "gold"}}).labels == {"tier": "gold"}
    assert _refusal(DeployRequest, {**DEPLOY, "labels": {}}) == ("labels", (
        "Value error, an empty label filter would match every customer: give at least one label, or leave labels "
        "out to target every active customer"))  # fmt: skip


def test_a_window_deadline_must_be_a_real_time() -> None:
    """mutants: models.py:320 `is not None` → `is None`; :322 `.replace("Z", "+00:00")`; :324 the message."""
    deadline = "2026-12-01T00:00:00Z"
    assert DeployRequest.model_validate({**DEPLOY, "windowDeadline": deadline}).window_deadline == deadline
    assert _refusal(DeployRequest, {**DEPLOY, "windowDeadline": "2026-02-30T00:00:00Z"}) == (
        "windowDeadline",
        "Value error, not a valid time: day is out of range for month",
    )
    assert DeployRequest.model_validate(DEPLOY).window_deadline is None


@pytest.mark.parametrize(("steps", "ok"), [([100], True), ([1, 100], True), ([50, 100], True), ([100, 100], False),
                                           ([50, 40, 100], False), ([1, 99], False)])  # fmt: skip
def test_steps_are_strictly_increasing_and_end_at_100(steps: list[int], ok: bool) -> None:
    """mutants: models.py:330 (`value != sorted(set(value))`, `or` → `and`, `value[-1] != 100`); :331."""
    data = {**DEPLOY, "strategy": "progressive", "steps": steps}
    if ok:
        assert DeployRequest.model_validate(data).steps == steps
    else:
        assert _refusal(DeployRequest, data) == (
            "steps",
            "Value error, steps are cumulative percentages: strictly increasing, the last one 100",
        )


@pytest.mark.parametrize(("fields", "message"), [
    ({"strategy": "canary", "steps": [1, 100], "stepGate": "manual"}, "steps, stepGate only go with strategy progressive"),
    ({"strategy": "batch", "progression": "linear"}, "progression only go with strategy progressive"),
    ({"strategy": "progressive", "steps": [1, 100], "progression": "linear"}, "give steps or progression, not both"),
    ({"strategy": "progressive", "stepGate": "bake"}, "stepGate bake needs bakeSeconds (how long each step bakes)"),
    ({"finalizeOldSlot": True}, "finalizeOldSlot only goes with blueGreen"),
])  # fmt: skip
def test_fields_that_need_another_are_refused_in_words(fields: dict[str, Any], message: str) -> None:
    """mutants: models.py:336-345 (the field names, `", "` join, `and not progressive`, `progressive and
    stepGate == "bake" and not bakeSeconds`, `finalizeOldSlot and not blueGreen`, the messages)."""
    assert _refusal(DeployRequest, {**DEPLOY, **fields}) == ("", f"Value error, {message}")


@pytest.mark.parametrize("fields", [
    {"strategy": "progressive", "stepGate": "bake", "bakeSeconds": 60},
    {"strategy": "progressive", "stepGate": "manual"},
    {"strategy": "progressive", "progression": "linear"},
    {"strategy": "canary", "bakeSeconds": 0},
    {"blueGreen": True, "finalizeOldSlot": True},
    {"blueGreen": True},
])  # fmt: skip
def test_fields_that_go_together_are_accepted(fields: dict[str, Any]) -> None:
    assert DeployRequest.model_validate({**DEPLOY, **fields}).strategy == fields.get("strategy", "all")
