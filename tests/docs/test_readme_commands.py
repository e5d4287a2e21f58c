"""Every command the README shows is run, as written, by a test or by CI (issue 25).

`RUN_BY` is the registry: each command of README.md (every line of its ```bash blocks, and every inline code span
that is a command) with what runs it:

- `ByTest(test, constant)`: the test `path::name` executes the text held by the module-level `constant` of its
  module; that text must be the README's, character for character, and the test's own source must use the name.
- `ByCi(script)`: the command is a line of the CI script (`.ci/run`'s `make test`).
- `CiEntryPoint()`: the command is the CI script itself.
- `InRecipe(target)`: the text is part of a Makefile target's recipe, and `make <target>` is itself registered.

Checked both ways: a README command missing from the registry fails (someone added a command nothing runs, or
changed one: the changed text is not a key), and a key missing from the README fails (the registry, and the test
holding the old text, were not updated). Inline code spans that are not commands (paths, names) are listed in
`NOT_COMMANDS`, so a new span must be classified one way or the other.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHELL_FENCES = ("```bash", "```sh", "```shell", "```console")
DATA_FENCES = ("```json",)  # a document to paste (the ECR lifecycle policy), never a command: it must parse as one


@dataclass(frozen=True)
class ByTest:
    test: str  # "tests/…/test_x.py::test_name"
    constant: str  # the module-level name holding the exact text the test runs


@dataclass(frozen=True)
class ByCi:
    script: str


@dataclass(frozen=True)
class CiEntryPoint:
    script: str


@dataclass(frozen=True)
class InRecipe:
    target: str


CURL_TEST = "tests/local/test_stack.py::test_every_curl_example_of_the_readme_works_as_written"
RUN_BY: dict[str, ByTest | ByCi | CiEntryPoint | InRecipe] = {
    "make run": ByTest(
        "tests/local/test_make_run.py::test_make_run_serves_the_api_the_console_the_reference_and_the_metrics",
        "MAKE_RUN",
    ),
    "make test": ByCi(".ci/run"),
    ".ci/run": CiEntryPoint(".ci/run"),
    "curl -X POST http://localhost:3100/api/upgrades/deploy \\\n"
    '  -H "Content-Type: application/json" \\\n'
    '  -d \'{"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10}\'': ByTest(
        CURL_TEST, "SPEC_DEPLOY"
    ),
    "curl http://localhost:3100/api/upgrades/123/status": ByTest(CURL_TEST, "SPEC_STATUS"),
    "curl http://localhost:3100/api/upgrades/123/logs": ByTest(CURL_TEST, "SPEC_LOGS"),
    "curl -X POST http://localhost:3100/api/upgrades/123/continue": ByTest(CURL_TEST, "SPEC_CONTINUE"),
    "curl -X POST http://localhost:3100/api/upgrades/123/rollback/cust_abc123": ByTest(CURL_TEST, "SPEC_ROLLBACK"),
    """curl http://localhost:3100/api/upgrades/123/logs | jq '.logs[] | select(.status=="failed")'""": ByTest(
        CURL_TEST, "SPEC_FAILED"
    ),
    "upgrade-customers console --api-url https://…": ByTest(
        "tests/console/test_console_proxy.py::test_the_readmes_console_command_signs_every_request_with_the_operators_keys",
        "CONSOLE",
    ),
    ".venv/bin/upgrade-customers": ByTest(
        "tests/local/test_stack.py::test_the_installed_command_reports_api_errors", "CLI"
    ),
    ".venv/bin/upgrade-customers watch 123": ByTest(
        "tests/local/test_stack.py::test_the_readmes_watch_follows_an_upgrade_to_its_end", "WATCH"
    ),
    "make docs": ByTest(
        "tests/docs/test_docs_site.py::test_the_site_builds_strictly_and_loads_nothing_from_elsewhere", "MAKE_DOCS"
    ),
    "mkdocs build --strict": InRecipe("docs"),
    "make docs-serve": ByTest(
        "tests/docs/test_docs_site.py::test_make_docs_serve_serves_the_site_on_localhost", "MAKE_DOCS_SERVE"
    ),
    "make openapi": ByTest("tests/test_openapi.py::test_committed_openapi_document_matches_the_code", "MAKE_OPENAPI"),
    "make docs-reference": ByTest(
        "tests/docs/test_docs_site.py::test_the_generated_reference_pages_are_up_to_date", "MAKE_DOCS_REFERENCE"
    ),
    ".venv/bin/python -m pytest tests/e2e/test_faults.py": ByTest(
        "tests/docs/test_readme_commands.py::test_one_test_file_runs_alone_as_the_readme_shows", "ONE_FILE"
    ),
}

# Inline code spans of the README that are not commands to run, and why.
NOT_COMMANDS = {
    "make": "the tool the two commands need",
    ".venv/": "the folder the first run creates",
    "tests/": "a folder",
    "k8s/": "a folder",
    "site/": "the folder `make docs` writes",
    "template.yaml": "a file",
    "mkdocs.yml": "a file",
    "nav": "a key of mkdocs.yml",
    "customer-<id>": "a namespace's name",
    "local:<you>": "the caller's name on the local stack",
    "deploy": "the endpoint's name in a sentence",
    "GET /api/fleet/images": "an endpoint named in a sentence (tests/e2e/test_pinned_digests.py calls it)",
    "sam local invoke": "the title of a how-to page it links to (tests/sam runs the how-to's commands)",
}

ONE_FILE = ".venv/bin/python -m pytest tests/e2e/test_faults.py"


def shell_commands(markdown: str) -> list[str]:
    """Every command of the README's shell blocks (continuation lines joined as written, trailing comments dropped)
    and every inline code span outside them. A fenced block in any other language, unless it is a picture or a JSON
    document that parses, is an error: its commands would escape the registry."""
    commands: list[str] = []
    fence: str | None = None
    current = ""
    data = ""
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.startswith("```"):
            if fence is None:
                fence = line.strip()
                block_start = number
            else:
                if fence in DATA_FENCES:
                    try:
                        json.loads(data)
                    except ValueError as exc:
                        raise AssertionError(
                            f"README.md:{block_start}: a ```json block that is not JSON: {exc}"
                        ) from exc
                fence, data = None, ""
            continue
        if fence is None:
            commands += re.findall(r"`([^`\n]+)`", line)
        elif fence in DATA_FENCES:
            data += line + "\n"
        elif fence in SHELL_FENCES:
            current += re.sub(r"\s+#\s.*$", "", line) + "\n"
            if not line.endswith("\\") and current.strip():
                commands.append(current.strip())
            if not line.endswith("\\"):
                current = ""
        elif not re.search(r"[─│▶└]", line) and line.strip():
            raise AssertionError(f"README.md:{block_start}: a ``` block that is neither ```bash nor a picture")
    return commands


def unregistered(markdown: str) -> list[str]:
    return [c for c in dict.fromkeys(shell_commands(markdown)) if c not in RUN_BY and c not in NOT_COMMANDS]


def not_in(markdown: str) -> list[str]:
    shown = set(shell_commands(markdown))
    return [command for command in RUN_BY if command not in shown]


def test_every_command_of_the_readme_is_registered_with_what_runs_it() -> None:
    """Breakage tried: `make bench   # the benchmarks` added to the Contributing block: this test named it."""
    missing = unregistered(README.read_text())
    assert missing == [], f"README.md shows commands nothing is registered to run: {missing} (add them to RUN_BY)"


def test_every_registered_command_is_still_in_the_readme() -> None:
    """Breakage tried: the README's `make docs-serve` renamed `make serve-docs`: this test named the stale entry (and
    the one above the new text)."""
    stale = not_in(README.read_text())
    assert stale == [], f"RUN_BY holds commands the README no longer shows: {stale}"


def test_a_new_or_changed_command_is_caught_both_ways() -> None:
    """The two checks above, on README texts edited as a contributor would."""
    text = README.read_text()
    added = text.replace("make run    #", "make bench  # numbers\nmake run    #", 1)
    assert unregistered(added) == ["make bench"] and not_in(added) == []
    changed = text.replace('"canaryPercent": 10}', '"canaryPercent": 20}', 1)
    assert len(unregistered(changed)) == 1 and 'canaryPercent": 20' in unregistered(changed)[0]
    assert len(not_in(changed)) == 1 and 'canaryPercent": 10' in not_in(changed)[0]
    inline = text.replace("(`make docs` builds", "(`make docs-pdf` builds", 1)
    assert unregistered(inline) == ["make docs-pdf"]
    with pytest.raises(AssertionError, match="neither ```bash nor a picture"):
        shell_commands(text + "\n```powershell\n./upgrade-customers.ps1 -Component api\n```\n")
    with pytest.raises(AssertionError, match="a ```json block that is not JSON"):  # no command hides in a "document"
        shell_commands(text + "\n```json\nmake bench\n```\n")


def _recipe(target: str) -> str:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(target)}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return "\n".join(recipe)


@pytest.mark.parametrize("command", list(RUN_BY), ids=lambda command: command.splitlines()[0][:60])
def test_each_command_is_run_as_the_readme_shows_it(command: str) -> None:
    """Breakages tried: SPEC_STATUS's `/status` → `/state` in tests/local/test_stack.py (the test would run another
    command than the README's): this test failed for it; the README's `make test` line removed from .ci/run; a
    registered test renamed: each fails here."""
    runner = RUN_BY[command]
    if isinstance(runner, ByTest):
        path, _, name = runner.test.partition("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert getattr(module, runner.constant) == command, f"{runner.test} runs another text than the README's"
        function = getattr(module, name, None)
        assert name.startswith("test_") and callable(function), f"no test {runner.test}"
        assert re.search(rf"\b{runner.constant}\b", inspect.getsource(function)), f"{runner.test} never uses it"
    elif isinstance(runner, ByCi):
        lines = [line.strip() for line in (ROOT / runner.script).read_text().splitlines()]
        assert command in lines, f"{runner.script} does not run `{command}`"
    elif isinstance(runner, CiEntryPoint):
        script = ROOT / runner.script
        assert os.access(script, os.X_OK) and "# CI entry point" in script.read_text()
        testing = (ROOT / "docs" / "explanation" / "testing.md").read_text()
        assert f"`{runner.script}`" in testing  # the page that says what CI runs names it
    else:
        assert command in _recipe(runner.target), f"`make {runner.target}` does not run `{command}`"
        assert isinstance(RUN_BY.get(f"make {runner.target}"), ByTest), f"nothing runs `make {runner.target}`"


def test_one_test_file_runs_alone_as_the_readme_shows() -> None:
    """The README's one-file command as written, from the checkout, narrowed with `-k` to one of the file's tests
    (the whole file runs in `make test`): it collects the file alone and passes."""
    argv = [*shlex.split(ONE_FILE), "-q", "-p", "no:cacheprovider", "-k", "rollback_during_an_active_customer"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b1 passed\b", done.stdout) and "deselected" in done.stdout, done.stdout[-2000:]
