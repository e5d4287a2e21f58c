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
