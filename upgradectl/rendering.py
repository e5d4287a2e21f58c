"""How `upgrade-customers` shows an upgrade: the progress bar, the status block, a log entry's detail and duration,
and what the terminal can show."""

from __future__ import annotations

from typing import Any, TextIO


def progress_line(data: dict[str, Any], *, unicode: bool = True, width: int = 30) -> str:
    """`[█████░░░]  12/50  completed 10  failed 2  in progress 3  pending 35  in_progress`"""
    total = max(int(data.get("total") or 0), 0)
    completed = int(data.get("completed") or 0)
    failed = int(data.get("failed") or 0)
    skipped = int(data.get("skipped") or 0)
    done = completed + failed + skipped
    full, partial_fail, empty = ("█", "▓", "░") if unicode else ("#", "x", "-")
    if total:
        ok_cells = round(width * completed / total)
        bad_cells = min(width - ok_cells, round(width * (failed + skipped) / total))
    else:
        ok_cells = bad_cells = 0
    bar = full * ok_cells + partial_fail * bad_cells + empty * (width - ok_cells - bad_cells)
    wave = ""
    if data.get("totalWaves") and data.get("currentWave") is not None:
        wave = f"  wave {int(data['currentWave']) + 1}/{data['totalWaves']}"
    return (
        f"[{bar}] {done:>4}/{total:<4} completed {completed}  failed {failed}  in progress "
        f"{data.get('inProgress', 0)}  pending {data.get('pending', 0)}"
        + (f"  skipped {skipped}" if skipped else "")
        + f"  {data.get('status', '')}{wave}"
    )


def status_lines(data: dict[str, Any]) -> str:
    train = data.get("components")
    what = ("release train " + ", ".join(f"{c} → {v}" for c, v in train.items()) if train else
            f"{data.get('component')} {data.get('fromVersion') or '?'} → {data.get('version')}")  # fmt: skip
    lines = [
        f"upgrade {data.get('upgradeId')}: {what} ({data.get('strategy')})  status {data.get('status')}",
        f"  total {data.get('total')}  completed {data.get('completed')}  failed {data.get('failed')}  "
        f"in progress {data.get('inProgress')}  pending {data.get('pending', 0)}  skipped {data.get('skipped', 0)}  "
        f"rolled back {data.get('rolledBack', 0)}",
        f"  started {data.get('startedAt') or '-'}  completed {data.get('completedAt') or '-'}  "
        f"by {data.get('requestedBy') or '-'}",
    ]
    if data.get("chartVersion"):
        lines.append(f"  chart {data['chartVersion']} (pinned for every customer)")
    if data.get("waitingForLease"):
        lines.append(f"  {data['waitingForLease']} waiting their turn: another operation holds their release")
    windows = data.get("waitingForWindow") or []
    if windows:
        lines.append(f"  {len(windows)} waiting for their maintenance window: " + ", ".join(
            f"{w['customerId']} at {w['nextOpening']}" for w in windows[:5]) + (" …" if len(windows) > 5 else ""))  # fmt: skip
    if data.get("gate") == "bake" and data.get("gateUntil"):
        lines.append(f"  baking until {data['gateUntil']}")
    if data.get("haltReason"):
        lines.append(f"  halted: {data['haltReason']}")
    for moved in data.get("movedTags") or []:
        lines.append(moved_tag_line(moved))
    attempts = data.get("attempts") or []
    if len(attempts) > 1:
        lines.append("  attempts: " + ", ".join(f"{a['attempt']} {a['status']}" for a in attempts))
    if data.get("status") in ("halted", "aborted", "failed"):
        lines.append(f"  go on with:  upgrade-customers resume {data.get('upgradeId')}")
    if data.get("status") == "awaiting_continue":
        lines.append(f"  waiting for: upgrade-customers continue {data.get('upgradeId')}")
    return "\n".join(lines)


def short_digest(digest: str | None) -> str:
    """`sha256:` and the first 12 hex digits, as registries' tools show them."""
    return digest[:19] if digest else "-"


def moved_tag_line(moved: dict[str, Any]) -> str:
    """A pinned tag found moved before a wave: what the waves install and what the tag names now."""
    now = f"now names {short_digest(moved.get('currentDigest'))}" if moved.get("currentDigest") else "is gone"
    kept = (f"the waves install the pinned {short_digest(moved.get('pinnedDigest'))}" if moved.get("pinnedDigestPresent")
            else f"the pinned {short_digest(moved.get('pinnedDigest'))} is gone too: halted")  # fmt: skip
    return f"  image tag moved before wave {int(moved.get('wave', 0)) + 1}: {moved.get('repository')}:{moved.get('tag')} {now}; {kept}"


def last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def duration(entry: dict[str, Any]) -> str:
    from datetime import datetime

    start, end = entry.get("started_at"), entry.get("completed_at")
    if not start or not end:
        return "-"
    try:
        parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        return f"{(parse(end) - parse(start)).total_seconds():.1f}"
    except ValueError:
        return "-"


def is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def unicode_ok(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower()
    return "utf" in encoding
