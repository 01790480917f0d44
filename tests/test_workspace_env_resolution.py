"""Workspace settings in the store and their resolution into a WorkspaceEnvironment
(issue 13, part 1): the 0005 migration of old rows, secrets sealed per workspace and name,
limits clamped to the admin's maxima, and the per-class timeout a batch gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sandbox.errors import BashfleetError, InputError
from sandbox.model import CommandClass, Limits
from sandbox.store import Store, default_url, make_engine, migrate
from sandbox.workspace_env import Network
from sandbox.workspace_settings import (
    Maxima,
    SecretBox,
    SecretError,
    check_limits,
    check_variable_name,
    class_timeouts,
    environment_for,
)
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = default_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_0005_turns_allow_network_into_network_and_keeps_the_image(
    engine: Engine, tmp_path: Path
) -> None:
    migrate(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into workspaces (name, path, allow_network, image, created_at) values "
                "('open', 'workspaces/open', true, 'debian:12', CURRENT_TIMESTAMP), "
                "('closed', 'workspaces/closed', false, null, CURRENT_TIMESTAMP)"
            )
        )
    migrate(engine)
    store = Store.open(engine, tmp_path)
    opened, closed = store.workspaces.find("open"), store.workspaces.find("closed")
    assert opened is not None and closed is not None
    assert (opened.network, opened.image, opened.allow_network) == ("egress", "debian:12", True)
    assert (closed.network, closed.image, closed.env, closed.limits) == ("none", None, {}, {})
    assert not opened.owned and not closed.owned  # old workspaces stay shared by everyone


def test_environment_opens_secrets_and_clamps_limits(engine: Engine, tmp_path: Path) -> None:
    migrate(engine)
    store = Store.open(engine, tmp_path)
    box = SecretBox.for_data(tmp_path)
    ws = store.workspaces.get_or_create("proj")
    other = store.workspaces.get_or_create("other")
    limits = {"conditional": {"cpus": 4, "memory_bytes": 1 << 30, "timeout_s": 500}}
    store.workspaces.change(
        ws.id,
        network="egress",
        env={"CI": "1"},
        limits=limits,
        image="bashfleet-dev:latest",
        secrets={"TOKEN": box.seal(ws.id, "TOKEN", "hunter22")},
    )
    ws = store.workspaces.get(ws.id)
    smaller = Maxima(cpus=2, memory_bytes=256 << 20, pids=100, disk_bytes=1 << 30, timeout_s=60)
    env = environment_for(store, ws, box, base=Limits(disk_bytes=123), maxima=smaller)
    assert env.image == "bashfleet-dev:latest" and env.network is Network.EGRESS
    assert env.allow_network and dict(env.env) == {"CI": "1"}
    assert dict(env.secrets) == {"TOKEN": "hunter22"}
    assert set(env.limits) == {CommandClass.CONDITIONAL}
    got = env.limits[CommandClass.CONDITIONAL]
    assert (got.cpus, got.memory_bytes, got.disk_bytes) == (2, 256 << 20, 123)
    assert class_timeouts(ws, smaller) == {"conditional": 60.0}
    # a sealed value copied to another workspace or name does not open
    sealed = store.workspaces.sealed_secrets(ws.id)["TOKEN"]
    with pytest.raises(SecretError):
        box.open(other.id, "TOKEN", sealed)
    with pytest.raises(SecretError):
        box.open(ws.id, "OTHER", sealed)
    with pytest.raises(SecretError):  # nor under another data folder's key
        SecretBox.for_data(tmp_path / "elsewhere").open(ws.id, "TOKEN", sealed)
    assert (tmp_path / "workspace-secrets.key").stat().st_mode & 0o777 == 0o600
    # a secret deleted, a workspace deleted: its secrets go with it
    store.workspaces.change(ws.id, secrets={"TOKEN": None})
    assert store.workspaces.secret_names(ws.id) == []


@pytest.mark.parametrize("name", ["PATH", "HOME", "LD_PRELOAD", "BASH_ENV", "BASHFLEET_JOB", "IFS"])
def test_reserved_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="reserved"):
        check_variable_name(name, f"env.{name}")


def test_limits_within_maxima_and_maxima_from_the_environment() -> None:
    maxima = Maxima.from_env({"BASHFLEET_MAX_CPUS": "2", "BASHFLEET_MAX_MEMORY_MB": "1024"})
    assert (maxima.cpus, maxima.memory_bytes) == (2.0, 1 << 30)
    assert check_limits({"safe": {"cpus": 2, "memory_bytes": 1 << 30}}, maxima)
    with pytest.raises(InputError, match=r"limits\.safe\.memory_bytes"):
        check_limits({"safe": {"memory_bytes": (1 << 30) + 1}}, maxima)
    with pytest.raises(BashfleetError, match="BASHFLEET_MAX_PIDS"):
        Maxima.from_env({"BASHFLEET_MAX_PIDS": "lots"})


def test_submit_resolves_the_environment_and_the_class_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Service.submit reads the workspace's settings: its network reaches the batch, and a
    batch without a timeout of its own gets its classes' longest; a new workspace belongs
    to its submitter, except `default`."""
    from sandbox.service import Service, ServiceConfig
    from sandbox.store import Role

    svc = Service.open(
        ServiceConfig(data_dir=tmp_path, isolation="local", autoscale=False, schedules=False)
    )
    try:
        seen = []
        monkeypatch.setattr(svc.scheduler, "submit", seen.append)
        user = svc.store.accounts.create_user("ann", "password123", Role.OPERATOR)
        svc.submit(user, script="ls", workspace="net")
        ws = svc.store.workspaces.find("net")
        assert ws is not None and ws.owner_user_id == user.id
        assert seen[-1].allow_network is False and seen[-1].timeout_s == 3600.0
        svc.store.workspaces.change(
            ws.id,
            network="egress",
            limits={"safe": {"timeout_s": 7}, "dangerous": {"timeout_s": 9}},
        )
        svc.submit(user, script="ls", workspace="net")
        assert seen[-1].allow_network is True and seen[-1].timeout_s == 7
        svc.submit(user, script="ls", workspace="net", timeout_s=30)
        assert seen[-1].timeout_s == 30  # the batch's own wins
        svc.submit(user, script="ls\nmake", workspace="net")  # safe 7, conditional: default
        assert seen[-1].timeout_s == 3600.0
        svc.submit(user, script="ls", workspace="default")
        shared = svc.store.workspaces.find("default")
        assert shared is not None and not shared.owned
    finally:
        svc.close()


def test_a_schedule_whose_owner_lost_the_workspace_pauses(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sandbox.service import Service, ServiceConfig
    from sandbox.store import Role

    svc = Service.open(ServiceConfig(data_dir=tmp_path, isolation="local", autoscale=False))
    try:
        ann = svc.store.accounts.create_user("ann", "password123", Role.OPERATOR)
        team = svc.store.teams.create("core")
        svc.store.teams.add_member(team.id, ann.id)
        ws = svc.store.workspaces.get_or_create("team-ws")
        svc.store.workspaces.change(ws.id, owner_team_id=team.id)
        s = svc.create_schedule(
            ann, name="hourly", script="echo tick", interval_s=3600, workspace="team-ws"
        )
        svc.store.teams.remove_member(team.id, ann.id)
        svc.store.schedules.update(s.id, next_run_at=datetime.now(UTC) - timedelta(seconds=5))
        assert svc.schedules is not None
        assert svc.schedules.run(s.id) is None
        assert svc.store.schedules.get(s.id).paused
        assert svc.store.batches.list().total == 0
    finally:
        svc.close()
