"""The CLI's choices and hints come from the registries (upgrader.infra.components, upgrader.contract.strategies):
a component or strategy registered once is one the CLI accepts and explains (issue 24, items 1 and 2)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.strategies import Strategy
from upgrader.infra.components import REGISTRY as COMPONENTS
from upgrader.infra.components import ComponentSpec, SampleChart

from upgradectl import cli


class Gated(Strategy):
    name = "gated"

    def continue_hint(self, step_gate: str | None) -> str | None:
        return "after reading the gated wave"


@pytest.fixture
def registered() -> Iterator[None]:
    COMPONENTS.add(ComponentSpec("broker", SampleChart("amqp", 5672, older_tag="3.12.0", newer_tag="3.13.0")))
    STRATEGIES.add(Gated())
    try:
        yield
    finally:
        COMPONENTS.remove("broker")
        STRATEGIES.remove("gated")


def test_a_registered_component_and_strategy_are_cli_choices_with_the_strategys_hint(fake_api, registered):
    """Breakage tried: cli.py's --component choices a fixed tuple of the four (usage error, exit 2); the continue
    hint chosen by `args.strategy == "canary"` (no hint for gated)."""
    fake_api.responder = lambda m, p, b: (202, {"upgradeId": "7", "jobId": "upgrade-7-ab", "waves": [1, 1],
                                                "message": "started", "status": "pending"})  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    argv = ["--api-url", fake_api.url, "--component", "broker", "--version", "3.14.0", "--strategy", "gated"]
    code = cli.main(argv, out=out, err=err)
    assert code == 0, err.getvalue()
    assert fake_api.requests[0].body == {"component": "broker", "version": "3.14.0", "strategy": "gated"}
    assert "upgrade-customers continue 7   (after reading the gated wave)" in out.getvalue()


def test_a_component_once_removed_from_the_registry_is_a_usage_error():
    """The same flag after the fixture restored the registry: broker is no choice any more."""
    code = cli.main(
        ["--component", "broker", "--version", "1", "--strategy", "all"], out=io.StringIO(), err=io.StringIO()
    )
    assert code == cli.EXIT_USAGE


def test_the_strategy_help_describes_each_registered_strategy_in_its_own_words(registered, capsys):
    """`--help` explains every strategy by its `summary`, a registered one included. Breakage tried: the help
    back to the names alone (" | ".join(names))."""
    assert cli.main(["--help"], out=io.StringIO(), err=io.StringIO()) == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for strategy in STRATEGIES:
        assert f"{strategy.name}: {' '.join(strategy.summary.split())}" in help_text
    assert "gated: " in help_text
