"""upgrade-local's --analysis and --bad-version: defaults, and the combinations refused with a message."""

from __future__ import annotations

import pytest

from upgradectl.local import options
from upgradectl.local.options import parse_args


def test_the_default_bad_version_pattern_and_repeated_patterns():
    assert parse_args([]).bad_version == ["*-bad"]
    assert parse_args(["--analysis", "--bad-version", "v2.*", "--bad-version", "*-rc1"]).bad_version == [
        "v2.*",
        "*-rc1",
    ]


@pytest.mark.parametrize("other", [["--cluster", "real"], ["--kubeconfig", "/tmp/kubeconfig"]])
def test_analysis_needs_the_simulated_cluster(other, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--analysis", *other])
    assert "--analysis reads the versions the simulated cluster runs" in capsys.readouterr().err


def test_analysis_without_prometheus_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(options, "find_binary", lambda: None)
    with pytest.raises(SystemExit):
        parse_args(["--analysis"])
    assert "apt-get install -y prometheus" in capsys.readouterr().err
