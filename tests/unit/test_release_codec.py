"""Helm's release record encoding: base64(gzip(JSON)) inside the API's base64; values nested under config."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from upgrader.cluster.release import (
    ReleaseDecodeError,
    decode_release_data,
    encode_release_data,
    parse_release,
    value_at,
)

RECORD = {
    "name": "customer-abc123",
    "namespace": "customer-abc123",
    "version": 3,
    "info": {"status": "deployed", "description": "Upgrade complete"},
    "chart": {
        "metadata": {"name": "customer-stack", "version": "1.4.0", "appVersion": "1.0"},
        "values": {"api": {"image": {"tag": "v1.0.0"}}, "exporter": {"image": {"tag": "v0.9.0"}}},
    },
    "config": {"api": {"image": {"tag": "v1.2.0"}}, "dashboard": {"image": {"tag": "v1.9.0"}}},
}


def _as_api_answers(payload: bytes) -> str:
    return base64.b64encode(base64.b64encode(payload)).decode()


def test_decodes_what_helm_writes_gzip_inside_two_base64_layers():
    data = _as_api_answers(gzip.compress(json.dumps(RECORD).encode()))
    assert decode_release_data(data) == RECORD


def test_decodes_an_uncompressed_payload_as_helm_does():
    assert decode_release_data(_as_api_answers(json.dumps(RECORD).encode())) == RECORD


def test_round_trip():
    assert decode_release_data(encode_release_data(RECORD)) == RECORD


@pytest.mark.parametrize(
    "data",
    ["not base64!", base64.b64encode(b"not base64 either!").decode(), _as_api_answers(b"\x1f\x8b\x08garbage"),
     _as_api_answers(b"[1, 2]"), _as_api_answers(b"{not json")],
)  # fmt: skip
def test_broken_payloads_are_named_errors(data):
    with pytest.raises(ReleaseDecodeError):
        decode_release_data(data)


def test_values_come_from_config_then_chart_defaults():
    record = parse_release(RECORD, status_label="superseded")
    assert (record.revision, record.status, record.chart_version) == (3, "superseded", "1.4.0")
    assert record.value("api.image.tag") == ("v1.2.0", "values")
    assert record.value("exporter.image.tag") == ("v0.9.0", "chart-defaults")
    assert record.version_of("mosquitto.image.tag") is None
    assert record.version_of("api.image") is None  # a map is not a version


def test_value_at_walks_nested_maps_only():
    assert value_at({"a": {"b": 1}}, "a.b") == 1
    assert value_at({"a": 1}, "a.b") is None
    assert value_at(None, "a") is None


def test_a_record_without_name_is_refused():
    with pytest.raises(ReleaseDecodeError):
        parse_release({"version": 1})


PINNED = "sha256:" + "a" * 64


def test_a_pinned_tag_value_reads_back_as_its_version():
    record = parse_release({**RECORD, "config": {"api": {"image": {"tag": f"v1.2.0@{PINNED}"}}}})
    assert record.component_version("api", "api.image.tag") == ("v1.2.0", "values")


def test_a_pinned_blue_green_slot_reads_back_as_its_version():
    # Given a blue-green release whose active slot (green) and old slot (blue) hold pinned values, as the slot
    # steps write them (`<version>@<digest>`, docs/images.md)
    values = {"api": {"activeSlot": "green", "slots": {"blue": {"tag": f"v1.1.0@{PINNED}"},
                                                        "green": {"tag": f"v1.2.0@{PINNED}"}}}}  # fmt: skip
    record = parse_release({**RECORD, "config": values})
    slots = record.slots_of("api")
    assert slots is not None
    # Then each slot runs its version (what the switch, the rollback's switch back and the inventory compare)
    assert (slots.version_in("green"), slots.version_in("blue"), slots.version) == ("v1.2.0", "v1.1.0", "v1.2.0")
    assert record.component_version("api", "api.image.tag") == ("v1.2.0", "active-slot")
    # and the slots keep the values as the release holds them
    assert slots.tags == {"blue": f"v1.1.0@{PINNED}", "green": f"v1.2.0@{PINNED}"}


def test_an_empty_slot_runs_no_version():
    values = {"api": {"activeSlot": "blue", "slots": {"blue": {"tag": "v1.1.0"}, "green": {"tag": ""}}}}
    slots = parse_release({**RECORD, "config": values}).slots_of("api")
    assert slots is not None and (slots.version_in("green"), slots.version_in("blue")) == (None, "v1.1.0")


def _with_chart_values(values: dict, config: dict | None = None) -> dict:
    chart = {"metadata": {"name": "customer-stack", "version": "1.6.0", "appVersion": "1.0"}, "values": values}
    return {**RECORD, "chart": chart, "config": config or {}}


def test_a_chart_that_ships_an_empty_digest_value_takes_the_digest_apart():
    # Given a chart whose defaults declare `api.image.digest: ""` (docs/images.md, the chart contract's form 2)
    declares = parse_release(_with_chart_values({"api": {"image": {"tag": "v1.0.0", "digest": ""}}}))
    # Then the release takes api's digest apart, and only api's
    assert declares.declares_digest("api", "api.image.tag")
    assert not declares.declares_digest("exporter", "exporter.image.tag")
    # and a chart without the value does not (form 1: the pinned tag value)
    assert not parse_release(RECORD).declares_digest("api", "api.image.tag")
    # nor one whose digest key is a map or null (a value helm deletes)
    assert not parse_release(_with_chart_values({"api": {"image": {"digest": None}}})).declares_digest(
        "api", "api.image.tag"
    )


def test_a_digest_an_earlier_deploy_set_counts_as_declared_so_the_next_deploy_overwrites_it():
    # a chart that no longer ships the default, whose release still holds a digest a deploy set
    record = parse_release(_with_chart_values({}, {"api": {"image": {"tag": "v1.2.0", "digest": PINNED}}}))
    assert record.declares_digest("api", "api.image.tag")


def test_a_plain_tag_beside_a_digest_value_reads_as_the_tag_and_the_digest():
    record = parse_release(_with_chart_values({"api": {"image": {"digest": ""}}},
                                              {"api": {"image": {"tag": "v1.2.0", "digest": PINNED}}}))  # fmt: skip
    assert record.component_version("api", "api.image.tag") == ("v1.2.0", "values")
    assert record.digest_of("api.image.tag") == PINNED
    # form 1's digest is the tag value's part after `@`; an empty digest value leaves it to the tag
    pinned = parse_release(_with_chart_values({"api": {"image": {"digest": ""}}},
                                              {"api": {"image": {"tag": f"v1.1.0@{PINNED}"}}}))  # fmt: skip
    assert pinned.digest_of("api.image.tag") == PINNED
    assert parse_release(RECORD).digest_of("api.image.tag") is None


def test_a_blue_green_release_takes_the_digest_apart_when_each_slot_declares_it():
    slots = {"blue": {"tag": "v1.1.0", "digest": ""}, "green": {"tag": "", "digest": ""}}
    record = parse_release(_with_chart_values({"api": {"activeSlot": "blue", "slots": slots}}))
    assert record.declares_digest("api", "api.image.tag")
    only_blue = {"blue": {"tag": "v1.1.0", "digest": ""}, "green": {"tag": ""}}
    assert not parse_release(_with_chart_values({"api": {"activeSlot": "blue", "slots": only_blue}})).declares_digest(
        "api", "api.image.tag"
    )
