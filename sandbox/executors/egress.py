"""The ``egress`` network: outbound access for a workspace's containers, never the host.

Containers of a workspace with ``network=egress`` join one Docker bridge network,
``bashfleet-egress`` (bridge interface ``bf-egress0``, inter-container traffic off), made on
first use. Docker routes and masquerades it to the outside like its default bridge; on top
of that, a small set of iptables rules, each tagged with the comment ``bashfleet-egress``:

- ``INPUT -i bf-egress0 -j DROP``: nothing from the network reaches the host itself: no
  address of the host (its LAN address, the bridge gateways, 127.0.0.1 is not routable from
  a container anyway), so neither the portal's port nor anything else listening on the host;
- ``DOCKER-USER -i bf-egress0 -o docker0 -j DROP`` and ``... -o br-+ -j DROP``: nor other
  containers on Docker's local bridges (a portal or a database in a container).

DNS still works: Docker's resolver for a user-defined network answers inside the container's
own network namespace. The rules are inserted idempotently (``-C`` before ``-I``), by
``ensure`` when an egress container is first needed (the server must run as root in the
host's network namespace; if the rules cannot be installed, egress containers are refused,
never started unprotected), and removed with ``remove`` (``bashfleet`` never removes the
network while containers use it). The Docker socket is never mounted into a sandbox.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from typing import Any

from sandbox.errors import ExecutorError

log = logging.getLogger(__name__)

NETWORK = "bashfleet-egress"
BRIDGE = "bf-egress0"
TAG = "bashfleet-egress"
LABEL = "bashfleet.egress"

# (table chain, rule) in insertion order; each gets "-m comment --comment TAG"
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("INPUT", ("-i", BRIDGE, "-j", "DROP")),
    ("DOCKER-USER", ("-i", BRIDGE, "-o", "docker0", "-j", "DROP")),
    ("DOCKER-USER", ("-i", BRIDGE, "-o", "br-+", "-j", "DROP")),
)

_lock = threading.Lock()
_ready = False


def _iptables(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-w", "5", *args], capture_output=True, text=True, check=False, timeout=30
    )


def _tagged(rule: tuple[str, ...]) -> list[str]:
    return [*rule[:-2], "-m", "comment", "--comment", TAG, *rule[-2:]]


def install_rules() -> None:
    """Insert the rules that are missing (IPv4; IPv6 INPUT too when ip6tables exists)."""
    binary = shutil.which("iptables")
    if binary is None:
        raise ExecutorError(
            "the egress network needs iptables (apt-get install iptables)", retryable=False
        )
    for chain, rule in RULES:
        args = _tagged(rule)
        if _iptables(binary, "-C", chain, *args).returncode == 0:
            continue
        if chain == "DOCKER-USER" and _iptables(binary, "-S", chain).returncode != 0:
            _iptables(binary, "-N", chain)  # Docker makes it; an engine elsewhere may not have
        done = _iptables(binary, "-I", chain, "1", *args)
        if done.returncode != 0:
            raise ExecutorError(
                f"cannot protect the egress network ({chain}): {done.stderr.strip()}; "
                "egress workspaces need bashfleet to run as root in the host's network "
                "namespace",
                retryable=False,
            )
    six = shutil.which("ip6tables")
    if six is not None:
        args = _tagged(RULES[0][1])
        if _iptables(six, "-C", "INPUT", *args).returncode != 0:
            _iptables(six, "-I", "INPUT", "1", *args)


def remove_rules() -> int:
    """Delete every rule tagged ``bashfleet-egress``; how many were deleted."""
    removed = 0
    for name in ("iptables", "ip6tables"):
        binary = shutil.which(name)
        if binary is None:
            continue
        for chain, rule in RULES:
            for _ in range(100):  # duplicates (an interrupted insert) go too
                if _iptables(binary, "-D", chain, *_tagged(rule)).returncode != 0:
                    break
                removed += 1
    global _ready
    _ready = False
    return removed


def rules_present() -> bool:
    binary = shutil.which("iptables")
    return binary is not None and all(
        _iptables(binary, "-C", chain, *_tagged(rule)).returncode == 0 for chain, rule in RULES
    )


def ensure(client: Any) -> str:
    """The egress network (made if missing) with its rules in place; its name.
    ``client``: a ``docker.DockerClient``. ExecutorError when it cannot be protected."""
    global _ready
    with _lock:
        if _ready and rules_present():
            return NETWORK
        if not client.networks.list(names=[NETWORK]):
            client.networks.create(
                NETWORK,
                driver="bridge",
                options={
                    "com.docker.network.bridge.name": BRIDGE,
                    "com.docker.network.bridge.enable_icc": "false",
                },
                labels={LABEL: "1"},
            )
        install_rules()
        _ready = True
        log.info("egress network %s ready (host and local bridges blocked)", NETWORK)
        return NETWORK


def remove(client: Any) -> None:
    """The rules, then the network (when no container uses it)."""
    remove_rules()
    for net in client.networks.list(names=[NETWORK]):
        net.reload()
        if not net.attrs.get("Containers"):
            net.remove()


def main(argv: list[str] | None = None) -> int:
    """``python -m sandbox.executors.egress ensure|remove|status``: for operators."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args == ["remove"]:
        print(f"removed {remove_rules()} rules")
        docker = shutil.which("docker")
        if docker is not None:  # refused by the engine while a container uses it
            subprocess.run([docker, "network", "rm", NETWORK], capture_output=True, check=False)
        return 0
    if args == ["ensure"]:
        import docker as docker_py

        print(f"{ensure(docker_py.from_env())} ready (rules present)")
        return 0
    if args == ["status"]:
        print("rules present" if rules_present() else "rules absent")
        return 0
    print("usage: python -m sandbox.executors.egress ensure|remove|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
