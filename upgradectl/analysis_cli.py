"""The CLI's side of metric analysis: `--analysis FILE.json` read into the deploy's `analysis`, and the
plan's measurements in words."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 256 * 1024


def add_analysis_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--analysis", default=default, metavar="FILE.json",
                        help="metric analysis after each gated wave (docs/analysis.md): a JSON object "
                             '{"checks": [...], "onPass": "continue", "controlSample": 20}')  # fmt: skip


def analysis_option(path: str | None) -> dict[str, Any]:
    """`{"analysis": <the file's object>}`, or nothing without the option; ValueError naming the file when it
    cannot be read or is not a JSON object (the server validates the rest, naming each field)."""
    if path is None:
        return {}
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"--analysis {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"--analysis {path}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--analysis {path}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError(f'--analysis {path}: a JSON object ({{"checks": [...]}}) is expected')
    return {"analysis": body}


def planned_analysis_lines(planned: dict[str, Any] | None) -> list[str]:
    """The plan's analysis: the rounds, then each query's one value (or its error)."""
    if not planned:
        return []
    lines = [f"  analysis: {planned['rounds']} round(s) {planned['intervalSeconds']} s apart after each gated wave, "
             f"control sample {planned['controlSample']}, on pass: {planned['onPass']}"]  # fmt: skip
    for m in planned.get("measurements", []):
        shown = f"{m['value']:g}" if m.get("value") is not None else f"no value ({m.get('error') or 'no data'})"
        lines.append(f"    {m['check']:<20} {m['cohort']:<8} {m['customerId']:<24} {shown}")
    return lines
