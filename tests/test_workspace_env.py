"""A workspace's environment with the real engine (Service, both pools, Docker, bwrap):
the dev image builds and tests a project, secrets are injected and never stored, a safe
command sees the workspace's image, and the egress network reaches out but not the host."""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox.executors import docker_profiles as prof
from sandbox.executors import egress
from sandbox.executors.rootfs import ROOTFS_ENV
from sandbox.image import DEV_IMAGE, build_profile
from sandbox.model import CommandClass, Job, Limits, Status
from sandbox.service import Service, ServiceConfig
from sandbox.store import BatchRecord
from sandbox.workspace_env import Network, WorkspaceEnvironment
from tests.workspace_project import DEV_SCRIPT, dev_environment, reference_binary, write_project

pytest_plugins = ("docker_fixtures",)  # docker_client, sandbox_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def dev_image(docker_client: Any) -> str:
    return build_profile("dev")  # skipped when the same recipe is built (scripts/test builds it)


@pytest.fixture(scope="module")
def shared_trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder of unpacked image trees for the module (the dev tree takes seconds)."""
    path = tmp_path_factory.mktemp("rootfs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ROOTFS_ENV, str(path))
        yield path


@pytest.fixture
def service(
    tmp_path: Path, shared_trees: Path, sandbox_image: str, dev_image: str, docker_client: Any
) -> Iterator[Service]:
    instance = f"test-{uuid.uuid4().hex[:10]}"
    svc = Service.open(
        ServiceConfig(
            data_dir=tmp_path / "data",
            isolation="auto",
            autoscale=False,
            schedules=False,
            instance_id=instance,
        )
    )
    assert "docker" in svc.executors, svc.docker_why
    try:
        yield svc
    finally:
        svc.close()
        left = docker_client.containers.list(
            ignore_removed=True, all=True, filters={"label": f"bashfleet.instance={instance}"}
        )
        for c in left:
            c.remove(force=True)
        assert not left, "containers left behind"


def run_batch(
    svc: Service, script: str, workspace: str, environment: WorkspaceEnvironment
) -> tuple[BatchRecord, dict[int, tuple[str, str]]]:
    """Submit, wait, and return the batch with each command's stored (stdout, stderr)."""
    record = svc.submit(None, script=script, workspace=workspace, environment=environment)
    assert svc.wait(record.id, 120), "the batch did not finish"
    batch = svc.get_batch(record.id)
    out = {}
    for c in batch.commands:
        streams = [svc.read_output(batch.id, c.id, s)[0] for s in ("stdout", "stderr")]
        out[c.index] = (streams[0].decode(errors="replace"), streams[1].decode(errors="replace"))
    return batch, out


def _cmdlines() -> Iterator[bytes]:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                yield Path(f"/proc/{pid}/cmdline").read_bytes()


def test_dev_workspace_builds_tests_commits_and_never_shows_its_secret(
    service: Service, docker_client: Any
) -> None:
    secret = "tok-" + secrets.token_hex(12)
    ws = service.store.workspaces.get_or_create("proj")
    write_project(ws.path)
    script = DEV_SCRIPT + (  # (its echo is safe: the local pool, on the dev image's tree)
        'python3 -c \'import os, base64; s = os.environ["SECRET"].encode(); '
        'print(os.environ["PLAIN"], s.decode(), base64.b64encode(s).decode())\'\n'
        'echo "plain=$PLAIN"; test -x /usr/bin/gcc && grep ^VERSION_CODENAME /etc/os-release\n'
        "sleep 1\n"
    )
    seen: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:  # the secret on no command line, while the batch runs
        while not stop.is_set():
            seen.extend(c for c in _cmdlines() if secret.encode() in c)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        batch, out = run_batch(service, script, "proj", dev_environment(secret, PLAIN="plain-v"))
    finally:
        stop.set()
        watcher.join()
    by_index = {c.index: c for c in batch.commands}
    failed = {i: (c.status, c.error, out[i]) for i, c in by_index.items() if not c.status.ok}
    assert batch.status is Status.SUCCEEDED, failed
    assert not seen, "a secret was on a command line"
    assert "OK" in out[2][1] and "test_add" in out[2][1]  # unittest reports on stderr
    assert out[3][0].strip() == "Bash Fleet"  # git took its identity from the variables
    assert out[4][0] == "hello from C\n"
    assert out[5][0] == "secret=***\n"
    assert out[6][0] == "plain-v *** ***\n"  # plain text and base64 both masked
    assert out[7][0] == "plain=plain-v\n"  # (a statement of its own: `;` splits them)
    assert out[8][0] == "VERSION_CODENAME=bookworm\n"
    # which pool ran what: the echoes in the local pool, the build in a container
    local = {5, 7, 8}
    assert {i for i, c in by_index.items() if c.executor.value == "local"} >= local
    assert by_index[1].executor.value == "docker"
    for stdout, stderr in out.values():
        assert secret not in stdout + stderr
    stored = b"".join(p.read_bytes() for p in (service.config.data_dir / "output").rglob("*.*"))
    assert secret.encode() not in stored and b"***" in stored
    assert (ws.path / "hello").read_bytes() == reference_binary(docker_client, DEV_IMAGE)


def test_container_specs_follow_the_environment(tmp_path: Path) -> None:
    job = Job(id="j", command="true", cls=CommandClass.CONDITIONAL, workspace=tmp_path)
    base = prof.spec_for(job, "default:img", prof.BATCH)
    assert base.image == "default:img" and not base.network
    assert prof.create_kwargs(base, "i", "b")["network_mode"] == "none"
    dev = prof.spec_for(replace(job, image=DEV_IMAGE, network=True), "default:img", prof.BATCH)
    assert dev.image == DEV_IMAGE and dev != base
    assert prof.create_kwargs(dev, "i", "b")["network_mode"] == egress.NETWORK
    # a dangerous command never gets a network, whatever the workspace allows
    single = prof.spec_for(replace(job, network=True), "default:img", prof.DANGEROUS)
    assert prof.create_kwargs(single, "i", "b")["network_mode"] == "none"
    # a workspace's own limits size its batch container too; the server's defaults do not
    small = Limits(memory_bytes=256 << 20, pids=64, cpus=0.5)
    assert prof.spec_for(replace(job, limits=small), "i", prof.BATCH).memory_bytes == 4 << 30
    sized = prof.spec_for(replace(job, limits=small, sized=True), "i", prof.BATCH)
    assert (sized.memory_bytes, sized.pids, sized.cpus) == (256 << 20, 64, 0.5)
    # variables travel in the exec's environment, never in its argv
    env_job = replace(job, env=(("SECRET", "s3cret-value"),))
    assert prof.exec_environment(env_job)["SECRET"] == "s3cret-value"
    assert "s3cret-value" not in " ".join(prof.exec_command(env_job))


def test_a_safe_command_sees_its_workspaces_image(service: Service) -> None:
    script = "ls /usr/bin/gcc /usr/bin/node\ncat /etc/os-release\n"
    dev, dev_out = run_batch(service, script, "devws", WorkspaceEnvironment(image=DEV_IMAGE))
    assert dev.status is Status.SUCCEEDED, dev_out
    assert {c.executor.value for c in dev.commands} == {"local"}
    assert "/usr/bin/gcc" in dev_out[0][0]
    # the same workspace on the base image: another warm sandbox (its key has the image)
    base, base_out = run_batch(service, script, "devws", WorkspaceEnvironment())
    assert base.commands[0].status is Status.FAILED  # the base image has no compiler
    assert "No such file" in base_out[0][1]
    assert base.commands[1].executor.value == "local"


def test_an_image_without_bash_fails_its_batch_clearly(
    service: Service, docker_client: Any
) -> None:
    tag = f"bashfleet-test-nobash-{uuid.uuid4().hex[:8]}:latest"
    # an image whose only file is a static busybox-less /bin/true stand-in: no bash at all
    subprocess.run(
        ["docker", "import", "-", tag],
        input=_tar_with_file("etc/hostname", b"x\n"),
        check=True,
        capture_output=True,
    )
    try:
        batch, out = run_batch(service, "cat /etc/hostname\ntouch x\n", "nobash", _env(tag))
        assert all(c.status is Status.FAILED for c in batch.commands), out
        for c in batch.commands:
            assert c.error and "has no bash" in c.error, c.error
        missing = _env(f"bashfleet-test-missing-{uuid.uuid4().hex[:8]}:latest")
        started = time.monotonic()
        gone, gone_out = run_batch(service, "cat /etc/hostname\ntouch x\n", "missing", missing)
        assert all(c.status is Status.FAILED for c in gone.commands), gone_out
        for c in gone.commands:
            assert c.error and missing.image in c.error and "image build" in c.error, c.error
        assert time.monotonic() - started < 20  # refused at once, not retried for a minute
        again, _ = run_batch(service, "ls\n", "other", WorkspaceEnvironment())
        assert again.status is Status.SUCCEEDED  # the service goes on
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def _env(image: str) -> WorkspaceEnvironment:
    return WorkspaceEnvironment(image=image)


def _tar_with_file(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- the egress network -----------------------------------------------------------------------


def _serve(directory: Path, host: str = "0.0.0.0") -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(directory), **k
    )
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def outside_host(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """An HTTP server in a network namespace of its own (a stand-in for the internet), on a
    veth pair in a private /30: (its address, port, the token it serves)."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"bftest-{tag}", f"bfh{tag}", f"bfn{tag}"
    octet = int(tag[:2], 16) % 250 + 1
    host_ip, ns_ip = f"10.254.{octet}.1", f"10.254.{octet}.2"
    token = secrets.token_hex(8)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "token.txt").write_text(token)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    server = None
    try:
        ip("netns", "add", ns)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            [
                *("ip", "netns", "exec", ns, "python3", "-m", "http.server", "8080"),
                *("--bind", ns_ip, "--directory", str(tmp_path / "site")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            done = subprocess.run(
                ["curl", "-s", "-m", "1", f"http://{ns_ip}:8080/token.txt"],
                capture_output=True,
                check=False,
            )
            if done.stdout.decode() == token:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the test host's HTTP server did not come up")
        yield ns_ip, 8080, token
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)


@pytest.fixture
def egress_rules(docker_client: Any) -> Iterator[None]:
    yield
    egress.remove(docker_client)
    assert not egress.rules_present()


def _host_addresses(docker_client: Any) -> list[str]:
    """Addresses of this host a container could try: its LAN address, the gateways of
    Docker's default bridge and of the egress network."""
    found = []
    route = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True)
    words = route.stdout.split()
    if "src" in words:
        found.append(words[words.index("src") + 1])
    for name in ("bridge", egress.NETWORK):
        for net in docker_client.networks.list(names=[name]):
            for cfg in net.attrs.get("IPAM", {}).get("Config") or []:
                if cfg.get("Gateway"):
                    found.append(cfg["Gateway"])
    return sorted(set(found))


def test_egress_reaches_out_but_never_the_host(
    service: Service,
    docker_client: Any,
    outside_host: tuple[str, int, str],
    egress_rules: None,
    tmp_path: Path,
) -> None:
    ns_ip, port, token = outside_host
    (tmp_path / "portal").mkdir()
    (tmp_path / "portal" / "p.txt").write_text("portal-secret-page")
    portal, portal_port = _serve(tmp_path / "portal")  # a stand-in for the portal's port
    try:
        egress_env = WorkspaceEnvironment(image=DEV_IMAGE, network=Network.EGRESS)
        url = f"http://{ns_ip}:{port}/token.txt"
        # conditional, then sequential (it writes a file): both on the egress network
        fetch = f"curl -s -m 5 {url}\ncurl -s -m 5 -o got.txt {url} && cat got.txt\n"
        out_batch, out = run_batch(service, fetch, "egressws", egress_env)
        assert out_batch.status is Status.SUCCEEDED, out
        assert [c.cls.value for c in out_batch.commands] == ["conditional", "sequential"]
        assert out[0][0] == token and out[1][0] == token
        assert egress.rules_present()

        none_env = WorkspaceEnvironment(image=DEV_IMAGE, network=Network.NONE)
        no_batch, no_out = run_batch(service, fetch, "nonews", none_env)
        assert no_batch.status is Status.FAILED
        assert all(c.status is Status.FAILED for c in no_batch.commands)
        assert token not in no_out[0][0] + no_out[1][0]

        hosts = [*_host_addresses(docker_client), f"{ns_ip[:-1]}1"]  # and the veth's host end
        probes = "".join(
            f"curl -s -m 2 http://{h}:{portal_port}/p.txt || echo blocked {h}\n" for h in hosts
        )
        sock = "curl -s -m 2 --unix-socket {} http://d/version || echo blocked {}\n"
        probes += "".join(sock.format(p, p) for p in ("/var/run/docker.sock", "/run/docker.sock"))
        # the host itself answers on those addresses (the probe is not vacuous)
        for h in hosts:
            done = subprocess.run(
                ["curl", "-s", "-m", "2", f"http://{h}:{portal_port}/p.txt"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.stdout == "portal-secret-page", h
        for env in (egress_env, none_env):
            batch, outs = run_batch(service, probes, f"probe-{env.network.value}", env)
            text = "".join(o[0] + o[1] for o in outs.values())
            assert "portal-secret-page" not in text
            assert "ApiVersion" not in text
            assert text.count("blocked") == len(hosts) + 2, text
            assert batch.status is Status.SUCCEEDED
    finally:
        portal.shutdown()
        portal.server_close()
