"""The README is a front page (issue 25): short, its two commands first, its first rollout exactly the commands a
test runs, and every relative link pointing at a file that exists (and at a heading that exists there)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.local.test_stack import TUTORIAL, WALKTHROUGH, WALKTHROUGH_HEADING
from tests.support.walkthrough import bash_commands

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FIRST_ROLLOUT = "## Your first rollout in five minutes"
MAX_LINES = 220


def test_the_front_page_stays_short() -> None:
    """Breakage tried: the old README's "Operator CLI" section pasted back (330 lines) fails here."""
    lines = README.read_text().count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines (at most {MAX_LINES}): move the detail into docs/"


def test_the_two_commands_come_first() -> None:
    """Breakage tried: the first rollout's curl block moved above them fails here."""
    first_block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#", 1)[0].strip() for line in first_block] == ["make run", "make test"]


def test_the_first_rollout_is_exactly_what_the_stack_test_runs() -> None:
    """Every command of the README's first rollout is one tests/local/test_stack.py runs against the stack, in its
    order, and the tutorial holds the same. Breakage tried: `canaryPercent` 10 -> 20 in the README's deploy, and a
    `curl …/abort` line added to it: each fails here."""
    readme = bash_commands(README.read_text(), FIRST_ROLLOUT)
    assert readme == WALKTHROUGH == bash_commands(TUTORIAL.read_text(), WALKTHROUGH_HEADING)
    assert len(readme) == 6


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc (mkdocs) and GitHub give a heading: lower case, punctuation dropped."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text))


def _anchors(markdown: str) -> set[str]:
    anchors, fence = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_every_relative_link_of_the_readme_resolves() -> None:
    """Breakage tried: a link to docs/howto/canary.md (no such page) and one to docs/tutorials/aws.md#deploy-with-sam
    (no such heading): each fails here."""
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(relative) >= 20, relative  # the front page points into the site
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (README.parent / path) if path else README
        exists = target.exists()
        if not exists or anchor and (target.suffix != ".md" or anchor not in _anchors(target.read_text())):
            broken.append(link)
    assert broken == []
