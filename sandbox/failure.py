"""What a failed command means for the rest of its batch: the words, and ``set -e``. Pure.

The scheduler applies the batch's ``FailurePolicy`` (DESIGN.md, "The guarantee");
this module says which statuses count as a failure, explains every skip in a
sentence that names the failed command and the path that links them, and tells
whether a script asks for ``halt`` the way bash scripts do (``set -e`` first).
"""

from __future__ import annotations

import shlex

from sandbox.errors import InputError
from sandbox.model import EdgeKind, FailurePolicy, Status

# An ended command that did not succeed, and was not itself skipped because of another.
FAILURES = frozenset(
    {Status.FAILED, Status.TIMED_OUT, Status.CANCELLED, Status.INTERRUPTED}
    | {Status.REFUSED, Status.OOM_KILLED, Status.REJECTED}
)

_DID = {
    Status.FAILED: "failed",
    Status.TIMED_OUT: "timed out",
    Status.CANCELLED: "was cancelled",
    Status.INTERRUPTED: "was interrupted",
    Status.REFUSED: "was refused",
    Status.OOM_KILLED: "was killed for memory",
    Status.SKIPPED: "was skipped",
    Status.REJECTED: "was not approved",
}


def did(status: Status) -> str:
    return _DID.get(status, status.value)


def skip_reason(
    before: int,
    status: Status,
    kind: EdgeKind,
    path: str,
    root: tuple[int, Status] | None = None,
) -> str:
    """Why a command is skipped because command ``before`` (0-based) ended with ``status``;
    ``root``: the failure that skipped ``before`` in turn, if it was skipped.

    "reads out/a.txt, which #3 failed to write" (shown after the status: "skipped: reads ...")
    """
    n = f"#{before + 1}"
    why = did(status)
    if status is Status.SKIPPED and root is not None:
        why = f"was skipped because #{root[0] + 1} {did(root[1])}"
    if kind is EdgeKind.RAW and path:
        resource = path.startswith("\0")
        what = f"the resource {path[1:]}" if resource else path
        verb, write = ("uses", "change") if resource else ("reads", "write")
        if status is Status.FAILED:
            return f"{verb} {what}, which {n} failed to {write}"
        return f"{verb} {what}, which {n} did not {write} ({n} {why})"
    return f"needs {n}, which {why}"


def halt_reason(failed: int, status: Status) -> str:
    return f"#{failed + 1} {did(status)}, and the batch halts there (on_failure=halt)"


def policy_for(requested: FailurePolicy | str | None, first_statement: str | None) -> FailurePolicy:
    """The request's policy; without one, ``halt`` for a script that starts with ``set -e``."""
    if requested is not None:
        try:
            return FailurePolicy(requested)
        except ValueError:
            choices = ", ".join(p.value for p in FailurePolicy)
            raise InputError(f"on_failure must be one of {choices}, not {requested!r}") from None
    if first_statement is not None and errexit(first_statement):
        return FailurePolicy.HALT
    return FailurePolicy.SKIP_DEPENDENTS


def errexit(statement: str) -> bool:
    """Whether one statement is a ``set`` that leaves ``errexit`` on.

    Every form bash accepts: ``set -e``, ``set -eu``, ``set -euo pipefail``,
    ``set -o errexit``, ``set -o pipefail -e``, ``set -Eeux``; ``+e`` and
    ``+o errexit`` turn it off again (the last word wins).
    """
    try:
        words = shlex.split(statement, comments=True)
    except ValueError:
        return False
    if not words or words[0] != "set":
        return False
    on = False
    args = iter(words[1:])
    for word in args:
        if word in ("-", "--") or word[:1] not in ("-", "+") or len(word) < 2:
            break  # positional parameters follow
        value = word[0] == "-"
        for flag in word[1:]:
            if flag == "e":
                on = value
            elif flag == "o":
                name = next(args, None)
                if name is None:
                    return on  # `set -o` alone lists the options
                if name == "errexit":
                    on = value
    return on
