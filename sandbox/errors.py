"""bashfleet's exceptions.

    BashfleetError                 base of everything bashfleet raises on purpose
     +-- InputError                the text or request is unusable (empty, binary, too big)
     |    +-- InputTooComplex      one statement is beyond the judge's limits (size, nesting)
     +-- PolicyError               the command may not run here (no isolation available)
     |    +-- QuotaExceeded        a team's quota would be passed (the web answers 429)
     +-- ExecutorError             infrastructure failed, not the command itself
     |    +-- EngineUnavailable    the Docker engine does not answer / breaker is open
     +-- Forbidden                 the user's role does not allow this (the web answers 403)

Foreign errors are translated at the edge: ``raise ExecutorError(...) from e``.
A command's own non-zero exit is never an exception: it is a status.
"""

from __future__ import annotations


class BashfleetError(Exception):
    """Base class of every error bashfleet raises on purpose."""


class InputError(BashfleetError):
    """The input cannot be used; the message says what to fix."""


class PolicyError(BashfleetError):
    """A command may not run with the isolation that is available."""


class ExecutorError(BashfleetError):
    """An executor failed for reasons outside the command (engine, API, spawn)."""

    def __init__(
        self, message: str, *, executor: str = "", retryable: bool = True, started: bool = False
    ) -> None:
        super().__init__(message)
        self.executor = executor
        self.retryable = retryable
        # the command may have run, in part: a non-idempotent one must not be run again
        self.started = started


class EngineUnavailable(ExecutorError):
    """The Docker engine cannot be reached, or the circuit breaker is open."""


class InputTooComplex(InputError):
    """One statement is beyond the judge's limits (size, words, nesting); the message says
    what to shorten. The portal answers it with a 4xx, never a stalled request."""


class Forbidden(BashfleetError):
    """The user's role does not allow this."""


class QuotaExceeded(PolicyError):
    """A team's quota would be passed (the web answers 429)."""
