"""The ECR lifecycle policy that keeps the images a rollback needs (issue 22): the README shows it ready to paste,
docs/images.md explains it; both are the same valid policy whose first rule keeps the `keep-*` tags, the tag the
images report's digests are given, and no later rule selects them (ECR: an image a rule of higher priority selects
is never expired by a rule of lower priority)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def policy_in(path: Path) -> dict[str, Any]:
    found = re.findall(r"```json\n(\{\n  \"rules\".*?)```", path.read_text(encoding="utf-8"), re.S)
    assert len(found) == 1, f"{path.name}: expected one lifecycle policy, found {len(found)}"
    return dict(json.loads(found[0]))


def test_the_readme_and_the_images_page_show_the_same_valid_policy():
    readme, page = policy_in(ROOT / "README.md"), policy_in(ROOT / "docs" / "images.md")
    assert readme == page
    rules = readme["rules"]
    assert [r["rulePriority"] for r in rules] == sorted({r["rulePriority"] for r in rules})  # unique, in order
    for rule in rules:
        selection = rule["selection"]
        assert rule["action"] == {"type": "expire"}
        assert selection["tagStatus"] in ("tagged", "untagged", "any")
        assert selection["countType"] in ("imageCountMoreThan", "sinceImagePushed")
        assert (selection["tagStatus"] == "tagged") == ("tagPatternList" in selection)
        assert (selection["countType"] == "sinceImagePushed") == ("countUnit" in selection)


def test_the_first_rule_keeps_every_image_the_report_tags_keep():
    first, *later = policy_in(ROOT / "README.md")["rules"]
    assert first["rulePriority"] == 1 and first["selection"]["tagPatternList"] == ["keep-*"]
    assert first["selection"]["countType"] == "imageCountMoreThan" and first["selection"]["countNumber"] >= 9999
    assert all("keep-*" not in rule["selection"].get("tagPatternList", []) for rule in later)
