"""Users (scrypt-hashed passwords) and API tokens (only a sha256 of the secret is kept)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from sandbox.errors import InputError
from sandbox.store.base import NotFound, Repository, rowcount, to_record
from sandbox.store.models import ApiToken, EndedSession, User
from sandbox.store.records import NewToken, Role, TokenRecord, UserRecord, utcnow

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOKEN_PREFIX = "bf_"
TOKEN_SHOWN = 10  # characters of the secret kept for display ("bf_AbCdEfG")
# last_used_at is written at most this often per token, so that a busy API client
# does not turn every request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# scrypt: n=2**15, r=8, p=1 costs 32 MiB and ~60 ms; the parameters are stored in the
# hash, so they can be raised later without breaking existing passwords.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 1 << 15, 8, 1
_SCRYPT_MAXMEM = 64 << 20


def hash_password(password: str) -> str:
    if not password:
        raise InputError("empty password")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Constant-time comparison; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=dklen
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


# Checked against when the user does not exist, so a miss costs as much as a hit.
_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


class AccountRepository(Repository):
    # users

    def create_user(self, name: str, password: str, role: Role = Role.VIEWER) -> UserRecord:
        if not USER_NAME.fullmatch(name or ""):
            raise InputError(f"invalid user name {name!r}: letters, digits, . _ @ - (max 64)")
        password_hash = hash_password(password)  # outside the transaction: it is slow
        with self._write() as s:
            user = User(name=name, password_hash=password_hash, role=Role(role), disabled=False)
            s.add(user)
            s.flush()
            return _user_record(user)

    def get_user(self, user_id: int) -> UserRecord:
        with self._read() as s:
            user = s.get(User, user_id)
            if user is None:
                raise NotFound(f"no user {user_id}")
            return _user_record(user)

    def find_user(self, name: str) -> UserRecord | None:
        with self._read() as s:
            user = s.scalar(select(User).where(User.name == name))
            return _user_record(user) if user else None

    def list_users(self) -> list[UserRecord]:
        with self._read() as s:
            return [_user_record(u) for u in s.scalars(select(User).order_by(User.name))]

    def authenticate(self, name: str, password: str) -> UserRecord | None:
        """The user if the password matches and the account is enabled, else None."""
        with self._read() as s:
            user = s.scalar(select(User).where(User.name == name))
            record, stored = (_user_record(user), user.password_hash) if user else (None, None)
        ok = check_password(password, stored or _DUMMY_HASH)
        return record if ok and record and not record.disabled else None

    def set_password(self, user_id: int, password: str) -> None:
        self._set_user(user_id, password_hash=hash_password(password))

    def password_stamp(self, user_id: int) -> str:
        """Changes whenever the password does (sessions carry it, so a new password ends
        the other sessions); empty for an unknown user."""
        with self._read() as s:
            stored = s.scalar(select(User.password_hash).where(User.id == user_id))
        return hashlib.sha256(stored.encode()).hexdigest()[:16] if stored else ""

    def set_role(self, user_id: int, role: Role) -> None:
        self._set_user(user_id, role=Role(role))

    def set_disabled(self, user_id: int, disabled: bool = True) -> None:
        self._set_user(user_id, disabled=disabled)

    def _set_user(self, user_id: int, **values: object) -> None:
        with self._write() as s:
            result = s.execute(update(User).where(User.id == user_id).values(**values))
            if not rowcount(result):
                raise NotFound(f"no user {user_id}")

    # tokens

    def create_token(self, user_id: int, name: str) -> NewToken:
        """A new token; ``NewToken.secret`` is the only copy of the plaintext."""
        if not name or len(name) > 100:
            raise InputError("a token needs a name of 1 to 100 characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(30)  # 40 url-safe characters
        with self._write() as s:
            token = ApiToken(
                user_id=user_id,
                name=name,
                token_hash=hash_token(secret),
                prefix=secret[:TOKEN_SHOWN],
            )
            s.add(token)
            s.flush()
            return NewToken(token=_token_record(token), secret=secret)

    def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        query = select(ApiToken).order_by(ApiToken.id)
        if user_id is not None:
            query = query.where(ApiToken.user_id == user_id)
        with self._read() as s:
            return [_token_record(t) for t in s.scalars(query)]

    def user_for_token(self, secret: str) -> UserRecord | None:
        """The enabled user owning this unrevoked token, else None. Notes the use, at most
        once a minute per token."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        with self._read() as s:
            row = s.execute(
                select(ApiToken.id, ApiToken.last_used_at, User)
                .join(User, ApiToken.user_id == User.id)
                .where(ApiToken.token_hash == hash_token(secret), ApiToken.revoked_at.is_(None))
            ).one_or_none()
            if row is None or row[2].disabled:
                return None
            token_id, last_used, user = row[0], row[1], _user_record(row[2])
        now = utcnow()
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            self._touch(token_id, now)
        return user

    def _touch(self, token_id: int, now: datetime) -> None:
        stale = now - LAST_USED_RESOLUTION
        with self._write() as s:
            s.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id)
                .where((ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at <= stale))
                .values(last_used_at=now)
            )

    def revoke_token(self, token_id: int, user_id: int | None = None) -> bool:
        """Revoke (if ``user_id`` is given, only a token of that user). False if none."""
        stmt = update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        if user_id is not None:
            stmt = stmt.where(ApiToken.user_id == user_id)
        with self._write() as s:
            return rowcount(s.execute(stmt.values(revoked_at=utcnow()))) > 0

    def end_session(self, nonce: str, expires_at: datetime) -> None:
        """Remember a logged-out browser session until its cookie would expire anyway."""
        with self._write() as s:
            s.execute(delete(EndedSession).where(EndedSession.expires_at < utcnow()))
            if s.get(EndedSession, nonce) is None:
                s.add(EndedSession(nonce=nonce[:64], expires_at=expires_at))

    def session_ended(self, nonce: str) -> bool:
        with self._read() as s:
            return s.get(EndedSession, nonce[:64]) is not None


def _user_record(u: User) -> UserRecord:
    return to_record(UserRecord, u)


def _token_record(t: ApiToken) -> TokenRecord:
    return to_record(TokenRecord, t)
