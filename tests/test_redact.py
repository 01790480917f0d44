"""The secret redactor: every form of a secret becomes *** in any chunking of the output,
and the scheduler's output events keep consecutive, exactly-once byte offsets."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.events import CommandStatusChanged, Event, OutputReceived
from sandbox.executors.base import OutputSink
from sandbox.model import CommandClass, Job, Limits, Outcome, Status
from sandbox.redact import MASK, MIN_SECRET_BYTES, Redactor, forms
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler
from sandbox.workspace_env import WorkspaceEnvironment

# secrets without "*" (a mask could otherwise complete one) and printable filler
SECRET = st.binary(min_size=MIN_SECRET_BYTES, max_size=40).filter(lambda b: b"*" not in b)
TEXT = st.binary(max_size=200)


def _encodings(secret: bytes, before: bytes, after: bytes) -> list[bytes]:
    whole = before + secret + after
    return [
        secret,
        quote(secret).encode(),
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
        base64.b64encode(whole),
        base64.urlsafe_b64encode(whole),
    ]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def _stream(r: Redactor, pieces: list[bytes]) -> bytes:
    s = r.stream()
    return b"".join(s.feed(p) for p in pieces) + s.flush()


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(SECRET, min_size=1, max_size=10),
    parts=st.lists(TEXT, min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    which=st.integers(min_value=0, max_value=5),
    pad=st.tuples(st.binary(max_size=2), st.binary(max_size=2)),
)
def test_any_chunking_gives_the_whole_texts_redaction(
    secrets: list[bytes], parts: list[bytes], cuts: list[int], which: int, pad: tuple[bytes, bytes]
) -> None:
    r = Redactor(secrets)
    encoded = _encodings(secrets[0], *pad)[which]
    data = encoded.join(parts)
    out = _stream(r, _split(data, cuts))
    assert out == r.redact(data)
    if len(parts) > 1:  # the secret was there in one of its forms: it is gone
        for s in secrets:
            assert s not in out
        assert MASK in out


@settings(max_examples=200, deadline=None)
@given(secret=SECRET, before=st.binary(max_size=5), after=st.binary(max_size=5))
def test_every_form_and_alignment_is_caught(secret: bytes, before: bytes, after: bytes) -> None:
    r = Redactor([secret])
    for encoded in _encodings(secret, before, after):
        out = r.redact(b"x " + encoded + b" y")
        assert MASK in out, encoded
        assert secret not in out


@settings(max_examples=200, deadline=None)
@given(data=TEXT, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_text_without_secrets_passes_unchanged(data: bytes, cuts: list[int]) -> None:
    r = Redactor([b"\xff\xfe\xfd\xfc\xfb\xfa"])
    clean = data.replace(b"\xff", b"")
    assert _stream(r, _split(clean, cuts)) == clean


def test_a_value_split_across_chunks_is_held_back_then_masked() -> None:
    s = Redactor(["hunter2-secret"]).stream()
    assert s.feed(b"Password: ") == b"Password: "  # nothing that could begin a form: at once
    assert s.feed(b"is hun") == b"is "
    assert s.feed(b"ter2-sec") == b""
    assert s.feed(b"ret, done\n") == b"***, done\n"
    assert s.flush() == b""
    t = Redactor(["hunter2-secret"]).stream()
    assert t.feed(b"ends with hunter") == b"ends with "
    assert t.flush() == b"hunter"  # the end of the stream: no secret after all


def test_short_values_are_not_redacted_and_empty_sets_are_false() -> None:
    assert forms("abc") == set()
    assert not Redactor(["", "ab"])
    assert Redactor(["abcd"])
    assert Redactor([]).redact(b"abcd") == b"abcd"


class _Chunky:
    """An executor that prints a job's env var, one byte per chunk (the worst split)."""

    name = "local"

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        text = dict(job.env).get("TOKEN", "") + "\n"
        for b in ("value=" + text).encode():
            on_output("stdout", bytes([b]))
        on_output("stderr", b"err " + base64.b64encode(text.encode()) + b"\n")
        return Outcome(Status.SUCCEEDED, exit_code=0)

    def cancel(self, job_id: str) -> None:
        pass


def test_scheduler_redacts_with_consecutive_offsets_before_the_status() -> None:
    events: list[Event] = []
    lock = threading.Lock()
    sched = Scheduler({"local": _Chunky()}, lambda cls: ("local", None))

    def record(e: Event) -> None:
        with lock:
            events.append(e)

    sched.bus.subscribe(record)
    env = WorkspaceEnvironment(secrets={"TOKEN": "s3cr3t-t0ken-value"}, env={"A": "1"})
    spec = BatchSpec(
        commands=(CommandSpec(index=0, command="echo $TOKEN", cls=CommandClass.SAFE),),
        workspace=Path("/tmp"),
        environment=env,
    )
    bid = sched.submit(spec)
    assert sched.wait(bid, 10)
    sched.shutdown()
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    status_at = None
    for i, e in enumerate(events):
        if isinstance(e, OutputReceived):
            assert e.offset == len(out[e.stream])  # consecutive: no gap, no overlap
            out[e.stream] += e.data
        elif isinstance(e, CommandStatusChanged) and e.status is Status.SUCCEEDED:
            status_at = i
    last_output = max(i for i, e in enumerate(events) if isinstance(e, OutputReceived))
    assert status_at is not None and last_output < status_at
    assert out["stdout"] == b"value=***\n"
    assert b"s3cr3t" not in out["stderr"] and b"***" in out["stderr"]


class _Recording:
    name = "local"

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        self.jobs.append(job)
        return Outcome(Status.SUCCEEDED, exit_code=0)

    def cancel(self, job_id: str) -> None:
        pass


def test_the_environment_reaches_every_job() -> None:
    rec = _Recording()
    sched = Scheduler({"local": rec}, lambda cls: ("local", None))
    small = Limits(memory_bytes=64 << 20)
    env = WorkspaceEnvironment(
        image="img:1",
        env={"A": "1", "SAME": "plain"},
        secrets={"SAME": "secret-wins", "S": "s-value"},
        limits={CommandClass.SAFE: small},
    )
    commands = (
        CommandSpec(index=0, command="echo", cls=CommandClass.SAFE),
        CommandSpec(index=1, command="make", cls=CommandClass.CONDITIONAL),
    )
    bid = sched.submit(BatchSpec(commands=commands, workspace=Path("/tmp"), environment=env))
    assert sched.wait(bid, 10)
    sched.shutdown()
    by_cls = {j.cls: j for j in rec.jobs}
    for j in rec.jobs:
        assert j.image == "img:1"
        assert dict(j.env) == {"A": "1", "SAME": "secret-wins", "S": "s-value"}
    assert by_cls[CommandClass.SAFE].limits == small and by_cls[CommandClass.SAFE].sized
    assert by_cls[CommandClass.CONDITIONAL].limits == Limits()
    assert not by_cls[CommandClass.CONDITIONAL].sized
