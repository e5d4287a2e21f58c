"""The documentation site (issue 25): the reference pages are generated from the code and never stale, and
`mkdocs build --strict` passes (no broken link, no orphan page), loading nothing from elsewhere."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from upgradectl.docs_site import reference

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_the_generated_reference_pages_are_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    """Breakage tried: a CLI flag's help changed without `make docs-reference` (cli.md stale: this test names it)."""
    monkeypatch.setenv("COLUMNS", "100")
    stale = [name for name, text in reference.pages().items() if (reference.OUT / name).read_text() != text]
    assert stale == [], f"docs/reference/{stale} is stale: run `make docs-reference`"


def test_every_api_operation_and_setting_is_in_the_reference() -> None:
    """Breakage tried: `api_page` skipped `delete` operations (DELETE /api/compatibility-rules/{ruleId} missing)."""
    import json

    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    api = (reference.OUT / "api.md").read_text()
    for path, item in document["paths"].items():
        for method in item:
            if method in ("get", "put", "post", "delete", "patch"):
                assert f"## `{method.upper()} {path}`" in api
    configuration = (reference.OUT / "configuration.md").read_text()
    from upgrader.infra.settings import Settings

    for field in Settings.model_fields:
        assert f"| `{field.upper()}` |" in configuration


def _build(docs_root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(docs_root / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300, env=env, cwd=docs_root,
    )  # fmt: skip


def test_the_site_builds_strictly_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    for page in (tmp_path / "site").rglob("*.html"):
        loaded = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert [url for url in loaded if "squidfunk.github.io" not in url] == [], page  # the theme's credit link


def test_a_broken_link_or_an_orphan_page_fails_the_build(tmp_path: Path) -> None:
    """The site's validation settings are what make `--strict` catch these (mkdocs only logs them by default)."""
    for case, edit in (
        ("broken link", lambda docs: (docs / "index.md").write_text("[gone](no-such-page.md)\n")),
        ("orphan page", lambda docs: (docs / "forgotten.md").write_text("# Not in the nav\n")),
    ):
        copy = tmp_path / case.replace(" ", "-")
        shutil.copytree(ROOT / "docs", copy / "docs")
        shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
        edit(copy / "docs")
        built = _build(copy, copy / "site")
        assert built.returncode != 0, f"{case}: the strict build passed\n{built.stderr}"
