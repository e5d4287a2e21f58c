"""The console's moved-tag facts (upgradectl/console/static/images.js), run under node: what the tag names now,
what the waves install, a gone image said as such, every API value escaped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.tools import require_tool
from upgradectl import console

IMAGES_JS = Path(console.__file__).parent / "static" / "images.js"
HOSTILE = '<img src=x onerror="alert(1)">'
PINNED, MOVED = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def facts(tmp_path: Path, moved_tags: Any) -> list[list[str]]:
    node = require_tool("node")
    (tmp_path / "images.mjs").write_text(IMAGES_JS.read_text())
    (tmp_path / "input.json").write_text(json.dumps(moved_tags))
    (tmp_path / "run.mjs").write_text("""
import { readFileSync } from "node:fs";
import { movedTagFacts } from "./images.mjs";
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
console.log(JSON.stringify(movedTagFacts(JSON.parse(readFileSync("./input.json", "utf8")), esc)));
""")
    done = subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_moved_tag_says_what_it_names_now_and_what_the_waves_install(tmp_path):
    shown = facts(tmp_path, [
        {"repository": "r.example/api", "tag": "v2.0.0", "pinnedDigest": PINNED, "currentDigest": MOVED,
         "pinnedDigestPresent": True, "wave": 1},
        {"repository": "r.example/api", "tag": "v2.0.1", "pinnedDigest": PINNED, "currentDigest": None,
         "pinnedDigestPresent": False, "wave": 2},
    ])  # fmt: skip
    assert shown == [
        ["Image tag moved (before wave 2)", "r.example/api:v2.0.0 now names sha256:bbbbbbbbbbbb; the waves install "
         "the pinned sha256:aaaaaaaaaaaa"],
        ["Image tag moved (before wave 3)", "r.example/api:v2.0.1 is gone; the pinned sha256:aaaaaaaaaaaa is gone too: "
         "halted"],
    ]  # fmt: skip


def test_every_value_is_escaped_and_none_is_no_fact(tmp_path):
    shown = facts(tmp_path, [{"repository": HOSTILE, "tag": HOSTILE, "pinnedDigest": HOSTILE, "currentDigest": HOSTILE,
                              "pinnedDigestPresent": True, "wave": 0}])  # fmt: skip
    assert "<img" not in json.dumps(shown) and "&lt;img src=x" in shown[0][1]
    assert facts(tmp_path, None) == [] and facts(tmp_path, []) == []
