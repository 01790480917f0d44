"""The environment of a command: the same whichever pool runs it.

A container gets its image's own variables, then these (``docker_profiles``); a job in
the local pool's image view gets these on top of the same image, so ``env | sort``
says the same in both, but for the job marker's value (``BASHFLEET_JOB``, which each
pool uses to find a job's processes). None of bashfleet's own settings or secrets is
ever passed on: only this allowlist and the variables the batch asked for.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.executors.proctree import MARKER_VAR
from sandbox.image import PATH_ENV

HOSTNAME = "sandbox"  # a container's hostname, and the local pool's (its own uts namespace)
# (Docker sets HOSTNAME in every container; the local pool sets the same)
BASE_ENV = {"PATH": PATH_ENV, "HOME": "/tmp", "LANG": "C.UTF-8", "HOSTNAME": HOSTNAME}


def command_environment(extra: Iterable[tuple[str, str]], marker: str) -> dict[str, str]:
    """The allowlist, then the batch's own variables, then the marker (last: a job cannot
    hide from the tree kill by setting it)."""
    return {**BASE_ENV, **dict(extra), MARKER_VAR: marker}
