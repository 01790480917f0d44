"""The secret settings are blanked from the environment block a process started with
(``/proc/PID/environ``), in the portal and on a worker node."""

from __future__ import annotations

import ctypes

SECRETS = (
    "BASHFLEET_SECRET_KEY",
    "BASHFLEET_ADMIN_PASSWORD",
    "BASHFLEET_DATABASE_URL",
    "BASHFLEET_BROKER",  # scale-out: the URL may carry the Redis password
    "BASHFLEET_CLUSTER_KEY",
    "BASHFLEET_NODE_KEY",  # a worker's own key
)


def hide_secrets() -> int:
    """Blank the secret settings in the environment block the process started with.

    ``/proc/PID/environ`` shows that block, not ``os.environ``: a command running as the
    same user (``--isolation local``) could read the secret key there. Python keeps its own
    copy in ``os.environ``, so the portal still reads its settings; the children it starts
    without an explicit environment see the blanked values. Returns how many were blanked.
    """
    try:
        libc = ctypes.CDLL(None)
        entries = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):
        return 0
    blanked, i = 0, 0
    while entries[i]:
        address = entries[i]
        entry = ctypes.string_at(address)
        name, _, value = entry.partition(b"=")
        if name.decode(errors="replace") in SECRETS and value:
            ctypes.memset(address + len(name) + 1, ord("*"), len(value))
            blanked += 1
        i += 1
    return blanked
