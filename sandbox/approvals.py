"""Which commands wait for a person's approval, and for how long. Pure.

A workspace's ``approve`` setting names the classes that wait (``none``,
``dangerous``, ``sequential+dangerous``); with ``two_person`` the submitter may
not approve their own command. A command that waits has the status
``awaiting_approval``; its dependents wait for it like for an unmet need. An
approval not given within ``BASHFLEET_APPROVAL_TTL_S`` seconds (default a day)
ends the command ``rejected`` with the reason "approval expired".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sandbox.errors import InputError
from sandbox.model import CommandClass

APPROVAL_TTL_ENV = "BASHFLEET_APPROVAL_TTL_S"
DEFAULT_APPROVAL_TTL_S = 24 * 3600.0
APPROVAL_FIELDS = ("approve", "two_person")
APPROVAL_EXPIRED = "approval expired"  # the reason of a command nobody approved in time


class ApprovalPolicy(StrEnum):
    NONE = "none"
    DANGEROUS = "dangerous"
    SEQUENTIAL_DANGEROUS = "sequential+dangerous"

    def wants(self, cls: CommandClass) -> bool:
        """Whether a command of class ``cls`` waits for an approval."""
        if self is ApprovalPolicy.DANGEROUS:
            return cls is CommandClass.DANGEROUS
        if self is ApprovalPolicy.SEQUENTIAL_DANGEROUS:
            return cls in (CommandClass.SEQUENTIAL, CommandClass.DANGEROUS)
        return False


def check_approval_settings(body: Mapping[str, Any], *, partial: bool = True) -> dict[str, Any]:
    """The approval fields of a workspace settings body, checked: ``approve`` (one of
    ApprovalPolicy's values) and ``two_person`` (a boolean). Other keys are ignored, so
    the general settings endpoint can hand its whole body over. InputError names the
    field; with ``partial`` a missing field is left out, else it is required."""
    out: dict[str, Any] = {}
    if "approve" in body:
        value = body["approve"]
        try:
            out["approve"] = ApprovalPolicy(value) if isinstance(value, str) else None
        except ValueError:
            out["approve"] = None
        if out["approve"] is None:
            choices = ", ".join(p.value for p in ApprovalPolicy)
            raise InputError(f"`approve` must be one of {choices}, not {value!r}")
    elif not partial:
        raise InputError("`approve` is required")
    if "two_person" in body:
        if not isinstance(body["two_person"], bool):
            raise InputError("`two_person` is true or false")
        out["two_person"] = body["two_person"]
    elif not partial:
        raise InputError("`two_person` is required")
    return out


def approval_ttl_s(environ: Mapping[str, str] = os.environ) -> float:
    """``BASHFLEET_APPROVAL_TTL_S``: seconds, more than 0 (a bad value falls back to a day)."""
    raw = environ.get(APPROVAL_TTL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_APPROVAL_TTL_S
    return value if value > 0 else DEFAULT_APPROVAL_TTL_S
