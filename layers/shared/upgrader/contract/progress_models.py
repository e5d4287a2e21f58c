"""Response models of an upgrade's progress: its status (attempts, window waits) and its per-customer log
entries with helm's output."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from upgrader.contract.analysis_models import AnalysisStatus
from upgrader.contract.base import Model, Timestamp
from upgrader.contract.image_models import MovedTagView


class Attempt(Model):
    job_id: str
    attempt: int
    status: str = Field(description="running, or how the execution ended (its final status, or reconciled)")
    stop_reason: str | None
    end_reason: str | None = Field(description="why it was ended by the reconciler")
    requested_by: str | None
    started_at: Timestamp | None
    ended_at: Timestamp | None


class WindowWait(Model):
    customer_id: str
    next_opening: str = Field(description="when its window opens with room for the expected duration")


class StatusResponse(AnalysisStatus):
    upgrade_id: str
    component: str
    version: str
    from_version: str | None
    strategy: str
    total: int
    completed: int
    failed: int
    in_progress: int
    pending: int
    skipped: int
    rolled_back: int
    status: str
    awaiting_continue: bool
    current_wave: int | None
    total_waves: int
    halt_reason: str | None
    job_id: str | None
    requested_by: str | None
    parameters: dict[str, Any]
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    chart_version: str | None = Field(
        description="the chart version pinned for every customer; null: each release keeps its own"
    )
    waiting_for_lease: int = Field(
        description="customers waiting their turn while another operation holds their release"
    )
    gate: str | None = Field(description="approval (canary, waiting for /continue) or bake (timed), when waiting")
    gate_until: Timestamp | None = Field(description="when the bake ends")
    attempts: list[Attempt] = Field(description="the upgrade's executions: the first, then one per resume")
    continued_by: str | None = Field(
        default=None, description="who released the canary gate (POST /continue), once someone did"
    )
    continued_at: Timestamp | None = Field(default=None, description="when the canary gate was released")
    left_out: dict[str, int] = Field(
        default_factory=dict,
        description="customers the deploy left out and recorded as skipped, by reason (already_at_version, pinned, "
        "incompatible, outside_window)",
    )
    blue_green: bool = Field(
        default=False, description="the upgrade goes onto each customer's idle slot, then switches (blue-green)"
    )
    waiting_for_window: list[WindowWait] = Field(
        default_factory=list,
        description="customers waiting for their maintenance window (not started, holding no concurrency slot: a "
        "later slice of their wave starts them at nextOpening), soonest first, at most 100",
    )
    components: dict[str, str] | None = Field(
        default=None,
        description="a release train: every component it sets -> its version (component and version name the "
        "first); null for one component",
    )
    moved_tags: list[MovedTagView] = Field(
        default_factory=list,
        description="pinned image tags found naming another digest (or nothing) before a later wave, first found "
        "first, at most 100: reported, never followed (the waves install the pinned digests)",
    )


class LogEntry(Model):
    model_config = ConfigDict(alias_generator=None)  # wire names: the columns, as the specification shows them

    id: int
    customer_id: str
    component: str
    from_version: str | None
    to_version: str
    status: str
    started_at: Timestamp | None
    completed_at: Timestamp | None
    output: str | None
    error: str | None
    operation: str
    wave: int
    attempt: int
    namespace: str | None
    job_name: str | None
    revision_before: int | None = Field(description="the release's revision before this helm operation")
    revision_after: int | None = Field(description="the release's revision after it (read from the release)")
    version_before: str | None = Field(description="the component's version the release held before")
    version_after: str | None = Field(description="the component's version the release holds after")
    chart_version: str | None = Field(description="the chart version this operation pinned")
    rollback_of: int | None = Field(description="rollback rows: the id of the upgrade row it undoes")
    waiting_for: str | None = Field(description="why this customer waits (another operation holds its release)")
    left_out: str | None = Field(
        default=None,
        description="why the deploy left this customer out (already_at_version, pinned, incompatible); its wave "
        "is then -1",
    )
    components: dict[str, dict[str, str | None]] | None = Field(
        default=None,
        description="a release train's row: each component -> {from, to} (what the deploy planned; a rollback "
        "row: what it restores) and {before, after} (what the release held around helm); the train's other "
        "components (not `component`, whose images are this row's columns) also {imageRepository, targetDigest, "
        "rollbackDigest} as the pre-flight resolved them (a rollback row: targetDigest, the digest it restores); "
        "null for one component",
    )
    image_repository: str | None = Field(default=None, description="the image repository the pre-flight asked")
    target_digest: str | None = Field(
        default=None, description="the digest to_version resolved to before the first wave: what helm installs"
    )
    rollback_digest: str | None = Field(
        default=None, description="the digest of from_version (the image a rollback of this customer installs)"
    )


class HelmOutput(Model):
    job_name: str
    stage: str = Field(description="the helm step: upgrade, rollback, restore, recover, slot, switch, finalize")
    phase: str = Field(description="how the Job ended: succeeded or failed")
    recorded_at: Timestamp
    output: str = Field(description="the Job's pod log, redacted (secrets replaced by [redacted]), its tail bounded")


class HelmOutputResponse(Model):
    upgrade_id: str
    log_id: str
    customer_id: str
    retention_days: int = Field(description="how long full outputs are kept (older ones are deleted)")
    outputs: list[HelmOutput] = Field(description="one per helm Job of this log row, oldest first")


class LogsResponse(Model):
    upgrade_id: str
    count: int = Field(description="entries in this page")
    total: int = Field(description="entries matching the filter")
    limit: int
    offset: int
    next_offset: int | None
    logs: list[LogEntry]
