"""sandbox.store against real databases: a SQLite file and a throwaway PostgreSQL."""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sandbox.errors import InputError
from sandbox.model import CommandClass, Status
from sandbox.store import (
    Conflict,
    ExecutorKind,
    NewCommand,
    NotFound,
    Role,
    Source,
    Store,
    accounts,
    default_url,
    make_engine,
    migrate,
)
from sandbox.store.db import alembic_config, current_revision
from sandbox.store.models import ApiToken, Base, User
from sandbox.store.workspaces import check_workspace_name
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures)

SAFE = CommandClass.SAFE


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return default_url(tmp_path / "data")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    # Cheaper scrypt for speed; the parameters travel in each hash, so checking works.
    monkeypatch.setattr(accounts, "_SCRYPT_N", 1 << 10)
    store = Store.open(engine, tmp_path / "data")
    yield store
    store.output.close()


@pytest.fixture
def ws(store: Store) -> int:
    return store.workspaces.get_or_create("main").id


def commands(n: int, cls: CommandClass = SAFE) -> list[NewCommand]:
    return [NewCommand(index=i, command=f"echo {i}", cls=cls) for i in range(n)]


def submit(store: Store, ws: int, n: int = 2, **kwargs: object) -> str:
    batch = store.batches.create(
        script=str(kwargs.pop("script", "echo")), commands=commands(n), workspace_id=ws, **kwargs
    )  # type: ignore[arg-type]
    return batch.id


# schema


def test_migration_matches_the_models_and_is_idempotent(engine: Engine) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == "0010"
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    config = alembic_config()
    with engine.begin() as conn:  # and it can be undone
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)


def test_times_are_aware_utc(store: Store, ws: int) -> None:
    batch = store.batches.get(submit(store, ws))
    assert batch.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - batch.created_at) < timedelta(minutes=1)
    with pytest.raises(ValueError, match="naive"):
        store.batches.list(created_after=datetime(2020, 1, 1))


# batches


def test_create_and_get_batch_with_its_commands(store: Store, ws: int) -> None:
    user = store.accounts.create_user("ann", "pw", Role.OPERATOR)
    new = [
        NewCommand(index=0, command="ls -la", cls=SAFE, reasons=("read-only",), reads=("/",)),
        NewCommand(
            index=1,
            command="make",
            cls=CommandClass.CONDITIONAL,
            executor=ExecutorKind.DOCKER,
            needs=(0,),
            writes=("build/",),
        ),
    ]
    created = store.batches.create(
        script="ls -la\nmake",
        commands=new,
        workspace_id=ws,
        user_id=user.id,
        source=Source.WEB,
        priority=5,
        timeout_s=30.5,
        retries=2,
    )
    got = store.batches.get(created.id)
    assert got == created
    assert (got.status, got.source, got.user_name, got.workspace_name) == (
        Status.PENDING,
        Source.WEB,
        "ann",
        "main",
    )
    assert (got.priority, got.timeout_s, got.retries, got.command_count) == (5, 30.5, 2, 2)
    assert got.counts == {"pending": 2}
    first, second = got.commands
    assert (first.index, first.command, first.cls, first.reasons, first.reads) == (
        0,
        "ls -la",
        SAFE,
        ("read-only",),
        ("/",),
    )
    assert (second.executor, second.needs, second.writes) == (
        ExecutorKind.DOCKER,
        (0,),
        ("build/",),
    )
    assert store.batches.get_command(second.id) == second
    with pytest.raises(NotFound):
        store.batches.get("nope")


def test_a_failed_submit_stores_nothing(store: Store, ws: int) -> None:
    taken = store.batches.get(submit(store, ws)).commands[0].id
    clash = [
        NewCommand(index=0, command="a", cls=SAFE),
        NewCommand(index=1, command="b", cls=SAFE, id=taken),  # fails after the batch row
    ]
    with pytest.raises(Conflict):
        store.batches.create(script="a\nb", commands=clash, workspace_id=ws, batch_id="b1")
    with pytest.raises(Conflict):  # no such workspace
        store.batches.create(script="a", commands=commands(3), workspace_id=9999, batch_id="b2")
    with pytest.raises(InputError):
        store.batches.create(script="x", commands=commands(1) * 2, workspace_id=ws)
    bad_need = [NewCommand(index=0, command="a", cls=SAFE, needs=(3,))]
    with pytest.raises(InputError):
        store.batches.create(script="a", commands=bad_need, workspace_id=ws)
    assert store.batches.list().total == 1
    for missing in ("b1", "b2"):
        with pytest.raises(NotFound):
            store.batches.get(missing)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM commands")).scalar() == 2


def test_list_filters_and_paginates(store: Store, ws: int) -> None:
    other = store.workspaces.get_or_create("other").id
    ann = store.accounts.create_user("ann", "pw").id
    ids = [
        submit(store, ws, script="make test", source=Source.API, user_id=ann),
        submit(store, ws, script="rm -rf 100%_done", source=Source.WEB),
        submit(store, other, script="ls", source=Source.CLI, user_id=ann),
        submit(store, other, script="MAKE ALL", source=Source.API),
    ]
    store.batches.update_batch(ids[1], status=Status.RUNNING)
    newest_first = ids[::-1]

    def found(**filters: object) -> list[str]:
        return [b.id for b in store.batches.list(**filters).items]  # type: ignore[arg-type]

    assert found() == newest_first
    assert found(status=Status.RUNNING) == [ids[1]]
    assert found(status=[Status.PENDING, Status.RUNNING]) == newest_first
    assert found(source=Source.API) == [ids[3], ids[0]]
    assert found(user_id=ann) == [ids[2], ids[0]]
    assert found(workspace_id=other) == [ids[3], ids[2]]
    assert found(text="make") == [ids[3], ids[0]]  # case-insensitive
    assert found(text="100%_") == [ids[1]]  # % and _ are literal
    assert found(text="0%") == [ids[1]]
    assert found(text="%") == [ids[1]]
    now = datetime.now(UTC)
    assert found(created_after=now - timedelta(minutes=5)) == newest_first
    assert found(created_before=now - timedelta(minutes=5)) == []
    assert found(created_before=now + timedelta(minutes=5), created_after=now) == []
    listed = store.batches.list(status=Status.PENDING).items
    assert all(b.commands == () and b.counts == {"pending": 2} for b in listed)

    page = store.batches.list(limit=3)
    assert (len(page.items), page.total, page.next_cursor) == (3, 4, ids[1])
    rest = store.batches.list(limit=3, cursor=page.next_cursor)
    assert ([b.id for b in rest.items], rest.total, rest.next_cursor) == ([ids[0]], 4, None)
    by_offset = store.batches.list(limit=2, offset=2)
    assert [b.id for b in by_offset.items] == newest_first[2:]
    with pytest.raises(InputError):
        store.batches.list(cursor="../x")


def test_command_and_batch_updates(store: Store, ws: int) -> None:
    batch = store.batches.get(submit(store, ws, n=3))
    c0, c1, c2 = (c.id for c in batch.commands)
    start = datetime.now(UTC)
    assert store.batches.update_batch(batch.id, status=Status.RUNNING, started_at=start)
    assert store.batches.update_command(
        c0,
        status=Status.RUNNING,
        started_at=start,
        host_pid=4242,
        pid_start_time=1700000000.25,
        container_id="abc123",
    )
    assert store.batches.update_command(
        c0,
        only_from=[Status.RUNNING],
        status=Status.SUCCEEDED,
        exit_code=0,
        finished_at=start + timedelta(seconds=2),
        duration_s=2.0,
        stdout_tail="x" * 5000 + "END",
        stdout_bytes=5003,
        truncated=True,
    )
    # a final status is not overwritten by a late update
    assert not store.batches.update_command(c0, only_from=[Status.RUNNING], status=Status.FAILED)
    assert not store.batches.update_command("missing", status=Status.FAILED)
    assert store.batches.update_command(c1, status=Status.FAILED, exit_code=2, signal=None)
    got = store.batches.get(batch.id)
    first = got.commands[0]
    assert (first.status, first.exit_code, first.duration_s) == (Status.SUCCEEDED, 0, 2.0)
    assert (first.host_pid, first.pid_start_time, first.container_id) == (
        4242,
        1700000000.25,
        "abc123",
    )
    assert len(first.stdout_tail) == 4096 and first.stdout_tail.endswith("END")
    assert (first.stdout_bytes, first.truncated) == (5003, True)
    assert first.finished_at == start + timedelta(seconds=2)
    assert got.status is Status.RUNNING and got.started_at == start
    assert got.counts == {"succeeded": 1, "failed": 1, "pending": 1}

    cancelled = store.batches.set_commands_status(
        batch.id, only_from=[Status.PENDING, Status.QUEUED], status=Status.CANCELLED
    )
    assert cancelled == [c2]
    assert store.batches.update_batch(
        batch.id, status=Status.CANCELLED, finished_at=start, only_from=[Status.RUNNING]
    )
    assert not store.batches.update_batch(
        batch.id, status=Status.FAILED, only_from=[Status.RUNNING]
    )
    assert store.batches.get(batch.id).status is Status.CANCELLED


def test_attempts_are_recorded(store: Store, ws: int) -> None:
    command_id = store.batches.get(submit(store, ws, n=1)).commands[0].id
    store.batches.add_attempt(command_id, number=1, status=Status.FAILED, exit_code=1)
    store.batches.add_attempt(command_id, number=2, status=Status.SUCCEEDED, exit_code=0)
    assert [(a.number, a.status) for a in store.batches.attempts(command_id)] == [
        (1, Status.FAILED),
        (2, Status.SUCCEEDED),
    ]
    assert store.batches.get_command(command_id).attempts == 2
    with pytest.raises(Conflict):
        store.batches.add_attempt(command_id, number=2, status=Status.FAILED)


def test_interrupt_unfinished_for_recovery(store: Store, ws: int) -> None:
    running = store.batches.get(submit(store, ws, n=4))
    done = store.batches.get(submit(store, ws, n=1))
    waiting = store.batches.get(submit(store, ws, n=1))
    r = [c.id for c in running.commands]
    store.batches.update_batch(running.id, status=Status.RUNNING)
    store.batches.update_command(r[0], status=Status.RUNNING, host_pid=77, pid_start_time=12.5)
    store.batches.update_command(r[1], status=Status.QUEUED, container_id="c0ffee")
    store.batches.update_command(r[3], status=Status.SUCCEEDED, exit_code=0)
    store.batches.update_batch(done.id, status=Status.SUCCEEDED)
    store.batches.update_command(done.commands[0].id, status=Status.SUCCEEDED)

    found = store.batches.interrupt_unfinished()
    by_id = {c.id: c for c in found}
    assert set(by_id) == {r[0], r[1], r[2], waiting.commands[0].id}
    assert (by_id[r[0]].previous_status, by_id[r[0]].host_pid, by_id[r[0]].pid_start_time) == (
        Status.RUNNING,
        77,
        12.5,
    )
    assert by_id[r[1]].container_id == "c0ffee"
    after = store.batches.get(running.id)
    assert [c.status for c in after.commands] == [Status.INTERRUPTED] * 3 + [Status.SUCCEEDED]
    assert after.status is Status.INTERRUPTED and after.finished_at is not None
    assert store.batches.get(waiting.id).status is Status.INTERRUPTED
    assert store.batches.get(done.id).status is Status.SUCCEEDED
    assert store.batches.interrupt_unfinished() == []


# accounts


def test_passwords_are_salted_scrypt_hashes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = store.accounts.create_user("ann", "s3cret!", Role.ADMIN)
    store.accounts.create_user("bob", "s3cret!")
    with store.engine.connect() as conn:
        hashes = conn.execute(select(User.password_hash).order_by(User.id)).scalars().all()
    assert all(h.startswith("scrypt$") and "s3cret" not in h for h in hashes)
    assert hashes[0] != hashes[1]  # per-user salt
    monkeypatch.undo()
    default = accounts.hash_password("pw")
    assert default.startswith("scrypt$32768$8$1$") and accounts.check_password("pw", default)
    assert not accounts.check_password("pW", default)
    assert not accounts.check_password("pw", "md5$abc") and not accounts.check_password("pw", "")
    assert store.accounts.authenticate("ann", "s3cret!") == ann
    assert store.accounts.authenticate("ann", "wrong") is None
    assert store.accounts.authenticate("nobody", "s3cret!") is None
    store.accounts.set_password(ann.id, "new one")
    assert store.accounts.authenticate("ann", "s3cret!") is None
    assert store.accounts.authenticate("ann", "new one") is not None
    store.accounts.set_role(ann.id, Role.VIEWER)
    store.accounts.set_disabled(ann.id)
    assert store.accounts.get_user(ann.id).role is Role.VIEWER
    assert Role.ADMIN.allows(Role.OPERATOR) and not Role.VIEWER.allows(Role.OPERATOR)
    assert store.accounts.authenticate("ann", "new one") is None  # disabled
    assert [u.name for u in store.accounts.list_users()] == ["ann", "bob"]
    with pytest.raises(Conflict):
        store.accounts.create_user("ann", "x")
    for bad in ("", "a b", "../x", "x" * 65):
        with pytest.raises(InputError):
            store.accounts.create_user(bad, "x")
    with pytest.raises(NotFound):
        store.accounts.set_role(999, Role.ADMIN)


def test_tokens_are_shown_once_and_stored_hashed(store: Store) -> None:
    ann = store.accounts.create_user("ann", "pw", Role.OPERATOR)
    new = store.accounts.create_token(ann.id, "ci")
    secret = new.secret
    assert secret.startswith("bf_") and len(secret) == 43
    assert secret not in repr(new)
    assert new.token.prefix == secret[:10] and new.token.last_used_at is None
    with Session(store.engine) as session:
        stored = session.scalars(select(ApiToken)).one()
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {stored.token_hash, stored.prefix, stored.name}

    assert store.accounts.user_for_token(secret) == ann
    used = store.accounts.list_tokens(ann.id)[0].last_used_at
    assert used is not None
    store.accounts.user_for_token(secret)  # within a minute: no new write
    assert store.accounts.list_tokens(ann.id)[0].last_used_at == used
    wrong = secret[:-1] + ("y" if secret.endswith("x") else "x")  # one character off
    assert store.accounts.user_for_token(wrong) is None
    assert store.accounts.user_for_token("not-a-token") is None

    other = store.accounts.create_token(ann.id, "laptop")
    assert not store.accounts.revoke_token(other.token.id, user_id=ann.id + 1)  # not theirs
    assert store.accounts.revoke_token(other.token.id, user_id=ann.id)
    assert not store.accounts.revoke_token(other.token.id)  # already revoked
    assert store.accounts.user_for_token(other.secret) is None
    assert store.accounts.user_for_token(secret) == ann
    store.accounts.set_disabled(ann.id)
    assert store.accounts.user_for_token(secret) is None


def test_artifacts_are_recorded_counted_and_go_with_their_batch(store: Store, ws: int) -> None:
    kept = store.batches.create(
        script="make",
        commands=commands(1),
        workspace_id=ws,
        artifact_patterns=("dist/*.whl", "report.html"),
    )
    assert store.batches.get(kept.id).artifact_patterns == ("dist/*.whl", "report.html")
    assert store.batches.get(submit(store, ws)).artifact_patterns == ()
    store.artifacts.add(kept.id, [("dist/a.whl", 10, "a" * 64), ("report.html", 5, "b" * 64)])
    assert [a.path for a in store.artifacts.list(kept.id)] == ["dist/a.whl", "report.html"]
    assert store.artifacts.get(kept.id, "report.html").size == 5  # type: ignore[union-attr]
    assert store.artifacts.get(kept.id, "nope") is None
    cid = store.batches.get(kept.id).commands[0].id
    store.batches.update_command(cid, stdout_bytes=100, stderr_bytes=7)
    assert store.artifacts.stored_bytes(ws)[kept.id] == 122
    assert store.artifacts.artifact_bytes(ws) == 15
    assert store.batches.delete(kept.id)
    assert store.artifacts.list(kept.id) == [] and kept.id not in store.artifacts.stored_bytes()


# audit


def test_audit_log_is_append_only(store: Store) -> None:
    audit = store.audit
    assert not any(hasattr(audit, name) for name in ("update", "delete", "remove", "clear"))
    audit.append("login", actor="ann", user_id=1, address="10.0.0.1")
    audit.append("login_failed", actor="mallory", address="10.6.6.6", detail={"reason": "pw"})
    audit.append("batch_submitted", actor="ann", user_id=1, target="batch:B1")
    audit.append("token_revoked", actor="admin", target="token:3")
    page = audit.list()
    assert [e.action for e in page.items] == [
        "token_revoked",
        "batch_submitted",
        "login_failed",
        "login",
    ]
    assert page.items[2].detail == {"reason": "pw"} and page.items[2].user_id is None
    assert page.items[0].at.tzinfo is UTC
    assert [e.action for e in audit.list(user_id=1).items] == ["batch_submitted", "login"]
    assert audit.list(action="login_failed").items[0].actor == "mallory"
    assert audit.list(target="batch:B1").total == 1
    assert audit.list(since=datetime.now(UTC) + timedelta(minutes=1)).total == 0
    first = audit.list(limit=3)
    assert (len(first.items), first.total) == (3, 4)
    assert [e.action for e in audit.list(limit=3, cursor=first.next_cursor).items] == ["login"]
    with pytest.raises(InputError):
        audit.append("Drop Table", actor="x")
    # the database itself refuses changes
    for sql in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert audit.list().total == 4


def test_audit_prune_deletes_only_rows_older_than_its_date(store: Store) -> None:
    audit = store.audit
    audit.append("login", actor="old1")
    audit.append("login", actor="old2")
    cut = datetime.now(UTC)
    time.sleep(0.01)
    audit.append("login", actor="new")
    with pytest.raises(InputError):
        audit.prune(datetime.now(UTC) + timedelta(days=1), actor="admin")
    assert audit.prune(cut, actor="admin") == 2
    assert [e.actor for e in audit.list().items] == ["new"]
    assert audit.prune(cut, actor="admin") == 0
    # a row newer than the newest prune date stays undeletable, and nothing is updatable
    for sql in ("DELETE FROM audit_events", "UPDATE audit_events SET actor = 'x'"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert [e.actor for e in audit.list().items] == ["new"]


# workspaces


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/abs", "a..b", ".hidden", "-rf", "x" * 65, "a b", "a\0b"],
)
def test_workspace_names_that_could_escape_are_rejected(name: str) -> None:
    with pytest.raises(InputError):
        check_workspace_name(name)


def test_workspaces_live_under_the_data_folder(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "data" / "workspaces"
    ws = store.workspaces.get_or_create("proj-1.x_y", allow_network=True, image="debian:12")
    assert ws.path == root / "proj-1.x_y" and ws.path.is_dir()
    assert (ws.allow_network, ws.image) == (True, "debian:12")
    again = store.workspaces.get_or_create("proj-1.x_y")  # settings apply on creation only
    assert again == ws
    store.workspaces.configure(ws.id, allow_network=False, image=None)
    assert store.workspaces.get(ws.id).allow_network is False
    for bad in ("../x", "a/b", "", "x" * 65):
        with pytest.raises(InputError):
            store.workspaces.get_or_create(bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "afile").write_text("x")
    for planted in ("evil", "dangling", "afile"):
        with pytest.raises(InputError):
            store.workspaces.get_or_create(planted)
    assert not (tmp_path / "nowhere").exists() and list(outside.iterdir()) == []
    assert [w.name for w in store.workspaces.list()] == ["proj-1.x_y"]
    assert store.workspaces.find("evil") is None


def test_concurrent_get_or_create_makes_one_workspace(store: Store) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            ids.append(store.workspaces.get_or_create("shared").id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(ids) == 8 and len(set(ids)) == 1
    assert [w.name for w in store.workspaces.list()] == ["shared"]


# schedules


def test_schedules_crud_and_due(store: Store, ws: int) -> None:
    ann = store.accounts.create_user("ann", "pw").id
    bob = store.accounts.create_user("bob", "pw").id
    schedules = store.schedules
    now = datetime.now(UTC)
    nightly = schedules.create(
        name="nightly", user_id=ann, workspace_id=ws, script="make", cron="0  3 * * *"
    )
    assert (nightly.cron, nightly.interval_s, nightly.paused) == ("0 3 * * *", None, False)
    often = schedules.create(
        name="often", user_id=ann, workspace_id=ws, script="ls", interval_s=60, next_run_at=now
    )
    schedules.create(name="nightly", user_id=bob, workspace_id=ws, script="ls", interval_s=5)
    with pytest.raises(Conflict):
        schedules.create(name="nightly", user_id=ann, workspace_id=ws, script="x", interval_s=5)
    bad_triggers: list[dict[str, object]] = [
        {},
        {"cron": "* * * * *", "interval_s": 5},
        {"cron": "* * *"},
        {"cron": "rm -rf / ; * *"},
        {"interval_s": 0},
    ]
    for trigger in bad_triggers:
        with pytest.raises(InputError):
            schedules.create(name="bad", user_id=ann, workspace_id=ws, script="x", **trigger)  # type: ignore[arg-type]

    assert [s.id for s in schedules.due(now + timedelta(seconds=1))] == [often.id]
    assert schedules.mark_run(
        often.id, ran_at=now, next_run_at=now + timedelta(minutes=1), expected_next_run_at=now
    )
    assert not schedules.mark_run(  # somebody else already claimed this run
        often.id, ran_at=now, next_run_at=now + timedelta(minutes=1), expected_next_run_at=now
    )
    assert schedules.due(now + timedelta(seconds=1)) == []

    changed = schedules.update(nightly.id, interval_s=300, paused=True, script="make all")
    assert (changed.cron, changed.interval_s, changed.paused, changed.script) == (
        None,
        300,
        True,
        "make all",
    )
    assert changed.updated_at >= nightly.updated_at
    assert schedules.update(nightly.id, cron="*/5 * * * *").interval_s is None
    assert [s.name for s in schedules.list(user_id=ann)] == ["nightly", "often"]
    assert schedules.find(bob, "nightly") is not None

    batch_id = submit(store, ws, source=Source.SCHEDULE, schedule_id=often.id)
    assert store.batches.list(schedule_id=often.id).total == 1
    assert schedules.delete(often.id)
    assert not schedules.delete(often.id)
    assert store.batches.get(batch_id).schedule_id is None  # the batch stays
    with pytest.raises(NotFound):
        schedules.get(often.id)


# concurrency


def test_concurrent_submits_and_updates(store: Store, ws: int) -> None:
    """50 threads each submit a batch of 20 commands while 10 threads update command
    statuses: no "database is locked", no lost or duplicated rows."""
    creators, updaters, per_batch = 50, 10, 20
    work: queue.Queue[str | None] = queue.Queue()
    errors: list[BaseException] = []
    created: list[str] = []
    updated: list[str] = []
    start = threading.Barrier(creators + updaters)

    def create(n: int) -> None:
        try:
            start.wait()
            batch = store.batches.create(
                script=f"batch {n}", commands=commands(per_batch), workspace_id=ws
            )
            created.append(batch.id)
            for c in batch.commands:
                work.put(c.id)
        except BaseException as e:
            errors.append(e)

    def update() -> None:
        try:
            start.wait()
            while (command_id := work.get()) is not None:
                now = datetime.now(UTC)
                assert store.batches.update_command(
                    command_id, status=Status.RUNNING, started_at=now, host_pid=1
                )
                assert store.batches.update_command(
                    command_id,
                    only_from=[Status.RUNNING],
                    status=Status.SUCCEEDED,
                    exit_code=0,
                    finished_at=now,
                    stdout_tail="ok\n",
                )
                updated.append(command_id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(creators)]
    workers = [threading.Thread(target=update) for _ in range(updaters)]
    for t in threads + workers:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for _ in workers:
        work.put(None)
    for t in workers:
        t.join(timeout=120)

    assert errors == []
    assert len(set(created)) == creators
    assert len(updated) == len(set(updated)) == creators * per_batch
    page = store.batches.list(limit=500)
    assert page.total == creators and {b.id for b in page.items} == set(created)
    assert all(b.counts == {"succeeded": per_batch} for b in page.items)
    with store.engine.connect() as conn:
        rows = conn.execute(text('SELECT batch_id, "index", status FROM commands')).all()
    assert len(rows) == creators * per_batch
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    assert {r[2] for r in rows} == {"succeeded"}


def test_sqlite_read_then_write_waits_for_the_writer_instead_of_failing(tmp_path: Path) -> None:
    """A deferred SQLite transaction that reads and then writes fails at once with
    "database is locked" when another writer commits in between; the store's write
    transactions begin IMMEDIATE, so they wait (busy_timeout) instead."""
    engine = make_engine(default_url(tmp_path))
    migrate(engine)
    store = Store.open(engine, tmp_path)
    batch_id = submit(store, store.workspaces.get_or_create("w").id, n=3)
    holder = sqlite3.connect(tmp_path / "bashfleet.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE batches SET priority = 1")
    results: list[object] = []

    def cancel() -> None:
        try:
            results.append(
                store.batches.set_commands_status(
                    batch_id, only_from=[Status.PENDING], status=Status.CANCELLED
                )
            )
        except BaseException as e:
            results.append(e)

    thread = threading.Thread(target=cancel)
    thread.start()
    time.sleep(0.3)
    holder.execute("COMMIT")
    holder.close()
    thread.join(timeout=30)
    engine.dispose()
    assert len(results) == 1 and isinstance(results[0], list) and len(results[0]) == 3


def test_concurrent_migrations_serialize(database_url: str) -> None:
    """Several server processes starting at once all migrate; exactly one does the work."""
    engines = [make_engine(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            migrate(engine)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert {current_revision(e) for e in engines} == {"0010"}
    for e in engines:
        e.dispose()


def test_durations_are_upserted_in_one_go_and_loaded(store: Store, ws: int) -> None:
    other = store.workspaces.get_or_create("other").id
    assert store.durations.load() == []
    assert store.durations.save([(ws, "make", 12.5), (other, "make", 3.0), (ws, "x" * 300, 1)]) == 2
    assert store.durations.save([(ws, "make", 10.0), (ws, "sleep 1", 1.0)]) == 2
    assert sorted(store.durations.load()) == [
        (ws, "make", 10.0),
        (ws, "sleep 1", 1.0),
        (other, "make", 3.0),
    ]
