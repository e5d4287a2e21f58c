"""The documentation site (issue 25): the reference pages are generated from the code and never stale, and
`mkdocs build --strict` passes (no broken link, no orphan page), loading nothing from elsewhere."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from upgradectl.docs_site import reference

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"


# The README's commands these tests run as written (tests/docs/test_readme_commands.py), each with one variable
# that sends its output or its port elsewhere than the checkout's (the Makefile's defaults are the README's).
MAKE_DOCS = "make docs"
MAKE_DOCS_SERVE = "make docs-serve"
MAKE_DOCS_REFERENCE = "make docs-reference"


def make(command: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """A README `make` line run from the checkout, with `NAME=value` variables appended."""
    argv = [*shlex.split(command), *(f"{name}={value}" for name, value in variables.items())]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_generated_reference_pages_are_up_to_date(tmp_path: Path) -> None:
    """`make docs-reference` writes exactly the committed pages. Breakage tried: a CLI flag's help changed without
    `make docs-reference` (cli.md stale: this test names it)."""
    made = make(MAKE_DOCS_REFERENCE, REFERENCE_OUT=str(tmp_path))
    assert made.returncode == 0, made.stderr
    written = {page.name: page.read_text() for page in tmp_path.iterdir()}
    assert sorted(written) == sorted(reference.pages()) and len(written) >= 4
    stale = [name for name, text in written.items() if (reference.OUT / name).read_text() != text]
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
    """`make docs`, as the README has it (into a temporary folder instead of site/)."""
    built = make(MAKE_DOCS, DOCS_SITE_DIR=str(tmp_path / "site"))
    assert built.returncode == 0, built.stderr
    assert "--strict" in built.stdout  # make echoes the recipe: the strict build, not a lenient one
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


def test_make_docs_serve_serves_the_site_on_localhost(tmp_path: Path) -> None:
    """`make docs-serve`, as the README has it, on a free port instead of 8000: the home page and a reference page
    answer, then Ctrl-C stops it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [*shlex.split(MAKE_DOCS_SERVE), f"DOCS_ADDR=127.0.0.1:{port}"]
    log = (tmp_path / "serve.log").open("w")
    serving = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        home = _wait_page(f"http://127.0.0.1:{port}/", serving, tmp_path / "serve.log")
        assert "<title>" in home and "Customer upgrades" in home
        assert "/api/upgrades/deploy" in _wait_page(f"http://127.0.0.1:{port}/reference/api/", serving,
                                                      tmp_path / "serve.log")  # fmt: skip
    finally:
        os.killpg(serving.pid, signal.SIGINT)
        serving.wait(timeout=60)
        log.close()


def _wait_page(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
