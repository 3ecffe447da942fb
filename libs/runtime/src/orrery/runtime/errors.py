"""Runtime errors. Each carries a stable ``code`` and says whether a retry can help."""

from __future__ import annotations


class RuntimeFailure(Exception):
    code = "runtime.error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConcurrencyConflict(RuntimeFailure):
    """An append whose expected subject sequence is stale: someone else wrote first.
    Retrying after reloading the aggregate helps."""

    code = "store.conflict"
    retryable = True

    def __init__(self, subject: str, expected: int | None, actual: int | None) -> None:
        super().__init__(f"{subject}: expected last sequence {expected}, stream has {actual}")
        self.subject = subject
        self.expected = expected
        self.actual = actual


class InfrastructureError(RuntimeFailure):
    """NATS or Postgres unreachable, timed out or refusing. Retrying later helps."""

    code = "infra.unavailable"
    retryable = True


class ConfigurationError(RuntimeFailure):
    """Settings that cannot work (bad URL, missing binary). Retrying cannot help."""

    code = "config.invalid"
