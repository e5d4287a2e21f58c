"""The analysis gate between waves (docs/analysis.md): `step` measure (MeasureRound: one round of every check
for the wave's customers and the control sample, stored), judge (JudgeWave: the verdict and the decision) or
crashed (AnalysisInconclusive: a step that failed after its retries, recorded inconclusive with its error)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.analysis.configured import gate_providers
from upgrader.analysis.repository import AnalysisRepository
from upgrader.infra.settings import get_settings
from upgrader.rollout import analysis_gate as gate

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"))
    state, step = dict(event["state"]), event["step"]
    repo = AnalysisRepository(factory.database())
    if step == "judge":
        return gate.judge_step(state, repo=repo, runs=factory.runs(), db=factory.database())
    if step == "crashed":
        return gate.crashed_step(state, repo=repo, runs=factory.runs(), db=factory.database())
    return gate.measure_step(state, repo=repo, runs=factory.runs(),
                             providers_of=lambda spec: gate_providers(spec, get_settings()))  # fmt: skip
