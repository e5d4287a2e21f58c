"""A test that needs a missing tool fails under CI and only skips on a developer machine."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool


def test_a_missing_tool_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-here is not installed.*CI must run every test"):
        require_tool("no-such-tool-here")


def test_a_missing_tool_skips_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-here is not installed"):
        require_tool("no-such-tool-here")


def test_a_candidate_path_wins_over_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    tool = tmp_path / "sam"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert require_tool("sam", None, str(tmp_path / "missing"), str(tool)) == str(tool)
    assert require_tool("sh").endswith("/sh")
