"""Judging scripts in separate processes, with a deadline.

Judging is pure Python and regular expressions, which hold the GIL: a hostile script
judged in a serving thread can stall every other request of the process. Here it runs in
a small pool of processes (forked from a clean forkserver, not from the multi-threaded
server); the serving thread waits on a pipe, which releases the GIL. A judge that passes
its deadline is killed and replaced, and the request gets ``TooComplex`` (422); when
every judge is busy past the deadline, ``JudgesBusy`` (503). A judge may use at most
``MEMORY_BYTES`` of address space, at a lower CPU priority than the server (``NICE``).

    pool = JudgePool.shared()
    judgement = pool.judge(text, max_statements=5000, deadline_s=5)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import resource
import threading
from collections.abc import Iterable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from sandbox.errors import BashfleetError, InputError, InputTooComplex
from sandbox.pipeline import Judgement

log = logging.getLogger(__name__)

MEMORY_BYTES = 1 << 30
DEFAULT_DEADLINE_S = 5.0
NICE = 15
_SIZE = 2


class TooComplex(BashfleetError):
    """The script could not be judged within the deadline (or the judge's memory)."""


class JudgesBusy(BashfleetError):
    """Every judge is busy; retry shortly."""


class _Judge:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), name="bashfleet-judge", daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.join(2)
        with contextlib.suppress(Exception):
            self.conn.close()


class JudgePool:
    _shared: JudgePool | None = None
    _shared_lock = threading.Lock()

    def __init__(self, size: int = _SIZE) -> None:
        self.size = size
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["sandbox.pipeline", "webapp.judging"])
        self._idle: queue.Queue[_Judge] = queue.Queue()
        self._started = False
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> JudgePool:
        """One pool per process (every app of a test run shares it)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _start(self) -> None:
        with self._lock:
            if not self._started:
                for _ in range(self.size):
                    self._idle.put(_Judge(self._ctx))
                self._started = True

    def judge(
        self,
        text: str,
        *,
        needs: Mapping[int, Iterable[int]] | None = None,
        max_statements: int | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> Judgement:
        self._start()
        try:
            judge = self._idle.get(timeout=deadline_s)
        except queue.Empty:
            raise JudgesBusy("every judge is busy; retry in a few seconds") from None
        plain = {int(k): [int(i) for i in v] for k, v in needs.items()} if needs else None
        try:
            judge.conn.send((text, plain, max_statements))
            if not judge.conn.poll(deadline_s):
                raise TimeoutError
            kind, value = judge.conn.recv()
        except (TimeoutError, EOFError, OSError):
            judge.kill()
            judge = _Judge(self._ctx)
            raise TooComplex(
                f"the script could not be judged within {deadline_s:g} s; split it into "
                "smaller batches or simplify it"
            ) from None
        finally:
            self._idle.put(judge)
        if kind == "ok":
            result: Judgement = value
            return result
        raise value

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


def _serve(conn: Connection) -> None:
    """A judge process: judge what comes in until the pipe closes."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    os.nice(NICE)  # the serving process comes first when cores are short
    from sandbox.pipeline import judge

    while True:
        try:
            text, needs, max_statements = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result: tuple[str, Any] = (
                "ok",
                judge(text, needs=needs, max_statements=max_statements),
            )
        except Exception as e:
            result = ("error", _portable(e))
        try:
            conn.send(result)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            conn.send(("error", TooComplex(f"the judgement cannot be sent back: {e}")))
        except (EOFError, OSError):
            return


def _portable(e: Exception) -> Exception:
    """The error as the serving process should raise it."""
    if isinstance(e, MemoryError | RecursionError | InputTooComplex):
        return TooComplex(str(e) or "the script is too complex to judge")
    if isinstance(e, BashfleetError):
        try:
            pickle.loads(pickle.dumps(e))
        except Exception:
            return InputError(str(e))
        return e
    log.exception("the judge failed")
    return InputError(f"the script could not be judged ({type(e).__name__})")
