"""What every repository shares: short transactions over a session factory, and errors.

    BashfleetError
     +-- InputError          (sandbox.errors) a name, id or value is unusable
     +-- StoreError          the store could not do what was asked
          +-- NotFound       no such row
          +-- Conflict       a unique name/id is taken, or a reference is dangling

Each repository method opens its own session and transaction and closes it
before returning, so repositories are safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sandbox.errors import BashfleetError
from sandbox.store.db import WRITE

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MAX_PAGE = 500
R = TypeVar("R", bound="DataclassInstance")


class StoreError(BashfleetError):
    """The store could not do what was asked."""


class NotFound(StoreError):
    """No such row."""


class Conflict(StoreError):
    """A unique value is already taken, or a reference points nowhere."""


class Repository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``); integrity errors become Conflict."""
        try:
            with self._sessions() as session, session.begin():
                session.connection(execution_options={WRITE: True})
                yield session
        except IntegrityError as e:
            raise Conflict(_integrity_message(e)) from e


def _integrity_message(error: IntegrityError) -> str:
    text = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    return f"conflict: {text}"


def clamp_limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def aware(value: datetime | None, what: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{what}: naive datetime; pass an aware UTC time")
    return value


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE."""
    return int(cast(CursorResult[Any], result).rowcount)


def to_record(cls: type[R], row: object, **given: Any) -> R:
    """The frozen record ``cls`` made from an ORM row: record fields are named like the
    columns; JSON lists become tuples; ``given`` supplies or overrides fields."""
    values = dict(given)
    for f in fields(cls):
        if f.name not in values:
            value = getattr(row, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)
