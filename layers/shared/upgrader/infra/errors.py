"""Named domain errors. The API maps them to HTTP status in one place (`http_status`);
workers raise them by name so the state machine's Retry/Catch can match on the class name."""

from __future__ import annotations


class UpgradeError(Exception):
    """Base of every domain error."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(UpgradeError):
    http_status = 400


class NotFound(UpgradeError):
    http_status = 404


class UpgradeNotFound(NotFound):
    pass


class CustomerNotInUpgrade(NotFound):
    pass


class LogRowNotFound(NotFound):
    pass


class LogRowOfAnotherUpgrade(NotFound):
    """A worker's event names a customer log row that belongs to another upgrade than the event's: nothing is
    done to that row (a state machine input mixed up by hand, or a replayed event of another execution)."""


class UnknownCustomers(NotFound):
    """A deploy names customers that are not in the inventory."""


class Conflict(UpgradeError):
    http_status = 409


class UpgradeAlreadyActive(Conflict):
    pass


class WrongState(Conflict):
    pass


class RingFromLabel(Conflict):
    """A customer's ring is set by its namespace's ring label (which wins at every sync): PATCH cannot change it."""


class InactiveCustomers(Conflict):
    """A deploy names customers whose inventory status is not active (the inventory may change)."""


class NoTargetCustomers(Conflict):
    """No active customer matches the deploy's filters: nothing to do until the inventory changes."""


class InvalidValue(UpgradeError):
    """A value that is well-formed but cannot be used here: the answer names the field and why."""

    http_status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class LimitExceeded(UpgradeError):
    """The request asks for more than a limit allows (a configured cap, or what one execution can hold:
    waves, time); the message names the limit."""

    http_status = 422


class TransientError(UpgradeError):
    """Worth retrying: the state machine retries these with back-off; the API answers 503."""

    http_status = 503


class DatabaseUnavailable(TransientError):
    pass


class WorkflowUnavailable(TransientError):
    pass


class SyncUnavailable(UpgradeError):
    """The background sync could not be started (the Lambda service refused or was unreachable): 503, retry.

    Not a TransientError: no state machine task meets it (those are what the ASL retries)."""

    http_status = 503


class CustomerNotFound(NotFound):
    pass


class SyncNotFound(NotFound):
    pass


class IdempotencyKeyReused(UpgradeError):
    """The same Idempotency-Key came with a different request body."""

    http_status = 422


class IdempotencyInProgress(Conflict):
    """The first request with this Idempotency-Key has not finished yet: retry in a moment."""


class UpgradeHalted(UpgradeError):
    """The upgrade was halted or aborted before this customer's helm started: skip it."""

    http_status = 409


class GateClosed(UpgradeError):
    """The canary gate cannot open: the upgrade was halted or aborted meanwhile."""

    http_status = 409


class PermanentError(UpgradeError):
    """Retrying will not help; the customer is finished as failed."""

    http_status = 500


class ReleaseNotReady(PermanentError):
    """The customer's Helm release is missing, or stuck with nothing to recover to."""


class ReleaseBusy(PermanentError):
    """The release is mid-operation and a helm Job is still working on it: do not touch it."""


def http_status(exc: Exception) -> int:
    return exc.http_status if isinstance(exc, UpgradeError) else 500


class NotificationFailed(UpgradeError):
    """A notification channel (Slack) did not take an event; EventBridge delivers it again (no state machine
    task raises it, so it is not a TransientError the ASL must retry)."""
