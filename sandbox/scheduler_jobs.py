"""A started command's ``Job`` and its output sink (secrets redacted per stream, offsets
counted): a mixin of ``Scheduler``."""

from __future__ import annotations

from functools import partial

from sandbox.batch_spec import NETWORKED
from sandbox.events import EventBus, OutputReceived
from sandbox.executors.base import OutputSink
from sandbox.model import CommandClass, Job
from sandbox.scheduler_state import _Cmd


class JobsMixin:
    bus: EventBus  # (set by Scheduler.__init__)

    def _job(self, cmd: _Cmd) -> Job:
        b = cmd.batch.spec
        env, limits, image, sized = b.env, b.limits, "", False
        if b.environment is not None:
            # the workspace's variables, then its secrets: both plain environment variables
            # of the command (never on a command line: see executors/environment.py)
            extra = {**b.environment.env, **b.environment.secrets}
            env = (*b.env, *extra.items())
            sized = cmd.spec.cls in b.environment.limits
            limits = b.environment.limits.get(cmd.spec.cls, b.limits)
            image = b.environment.image or ""
        return Job(
            id=cmd.id,
            command=cmd.spec.command,
            cls=cmd.spec.cls,
            workspace=b.workspace,
            batch_id=cmd.batch.id,
            index=cmd.spec.index,
            timeout_s=b.timeout_s,
            limits=limits,
            env=env,
            read_only=cmd.spec.cls is CommandClass.SAFE,
            # conditional and sequential commands share the batch's container, so both get
            # the workspace's network (`curl -O`, `wget` are sequential); dangerous and safe
            # commands never do
            network=b.allow_network and cmd.spec.cls in NETWORKED,
            output_cap=b.output_cap,
            image=image,
            sized=sized,
        )

    def _sink(self, cmd: _Cmd) -> OutputSink:
        redactor = cmd.batch.redactor
        if redactor is None:
            return partial(self._publish_output, cmd)
        # one StreamRedactor per stream and attempt; _done flushes what they keep back
        cmd.redactors = {"stdout": redactor.stream(), "stderr": redactor.stream()}
        redactors = cmd.redactors

        def sink(stream: str, data: bytes) -> None:
            r = redactors.get(stream)
            self._publish_output(cmd, stream, r.feed(data) if r is not None else data)

        return sink

    def _flush_output(self, cmd: _Cmd) -> None:
        """The tails the redactors kept back (an attempt's output ended)."""
        redactors, cmd.redactors = cmd.redactors, {}
        for stream, r in redactors.items():
            self._publish_output(cmd, stream, r.flush())

    def _publish_output(self, cmd: _Cmd, stream: str, data: bytes) -> None:
        if not data:
            return
        offset = cmd.offsets.get(stream, 0)
        cmd.offsets[stream] = offset + len(data)
        self.bus.publish(
            OutputReceived(
                batch_id=cmd.batch.id,
                command_id=cmd.id,
                index=cmd.spec.index,
                stream=stream,
                data=data,
                offset=offset,
            )
        )
