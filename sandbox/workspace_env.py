"""What a workspace's commands run in: its image, network, variables, secrets and limits.

The web layer (workspace settings in the database) builds one of these per batch; the
engine (pipeline, scheduler, executors) reads it. Nothing here touches the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from sandbox.model import CommandClass, Limits


class Network(StrEnum):
    NONE = "none"  # no network at all (the default)
    EGRESS = "egress"  # outbound only: never the host's or the portal's ports


_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceEnvironment:
    """One workspace's environment, resolved for one batch.

    ``image`` None: the default image (``BASHFLEET_IMAGE`` or ``bashfleet-sandbox:latest``).
    ``env``: plain variables. ``secrets``: decrypted values, injected as variables and
    replaced with ``***`` wherever they appear in output. ``limits``: per class, already
    clamped to the admin's maxima; a class that is missing gets the server's defaults."""

    image: str | None = None
    network: Network = Network.NONE
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    secrets: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    limits: Mapping[CommandClass, Limits] = field(default_factory=dict)

    @property
    def allow_network(self) -> bool:
        return self.network is Network.EGRESS


DEFAULT_ENVIRONMENT = WorkspaceEnvironment()
