"""How a helm Job of the simulated cluster ends: held until a test lets it go, or its outcome decided (the
`outcome` callback, `fail_customers`, the seeded `failure_rate`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upgradectl.local.simcluster.helm import Outcome
from upgradectl.local.simcluster.host import SimulationHost
from upgradectl.local.simcluster.jobs import JobRun

HoldTarget = str | Callable[[dict[str, Any]], bool] | None


class JobControls(SimulationHost):
    def hold(self, target: HoldTarget = None) -> None:
        """Keep Jobs running until `release`: all (None), one Job name, or those a predicate picks.
        A held helm has started (its pending-* revision is written) and does not go on."""
        with self._lock:
            if target is None:
                self._hold_all = True
            elif isinstance(target, str):
                self._held_names.add(target)
                self._released.discard(target)
            else:
                self._hold_predicates.append(target)

    def release(self, job_name: str | None = None) -> None:
        """Let one held Job (or, with None, every held Job and every hold rule) finish."""
        with self._lock:
            if job_name is None:
                self._hold_all = False
                self._held_names.clear()
                self._hold_predicates.clear()
                self._released.clear()
            else:
                self._held_names.discard(job_name)
                self._released.add(job_name)

    def _is_held(self, run: JobRun) -> bool:
        with self._lock:
            if run.name in self._released:
                return False
            return (
                self._hold_all
                or run.name in self._held_names
                or any(predicate(run.manifest) for predicate in self._hold_predicates)
            )

    def _decide(self, manifest: dict[str, Any], keys: set[str]) -> Outcome:
        if self.outcome is not None:
            chosen = self.outcome(manifest)
            if chosen is not None:
                return chosen
        if self.fail_customers & keys:
            return "fail"
        if self.failure_rate > 0 and self._random.random() < self.failure_rate:
            return "fail"
        return "succeed"
