"""Login sessions for the UI: unwrapped keys held server-side, in this process's memory only.

A session id is 32 random bytes (URL-safe base64) handed to the browser; the keys never
leave the server. Sessions are found by a digest of the id and then the id itself is
compared in constant time, so lookup time says nothing about how much of a guess matched.
A session expires after ``idle_timeout_s`` without use and, whatever the use, after
``max_age_s``; logout drops it at once. The store is bounded: at most
``max_sessions_per_user`` per user (a new login evicts that user's least recently used one)
and ``max_sessions`` in all (beyond which logins are refused).

"Wipe" means: the store drops its reference and the Session object forgets its keys, so a
handler still holding that object can no longer use them. Python cannot overwrite immutable
``bytes`` in place, so the key bytes live until the garbage collector frees them; the UI
process is the only one that ever holds them (docs/security.md).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from mydrive.crypto.keys import UserKeys
from mydrive.crypto.primitives import constant_time_equal
from mydrive.errors import NotLoggedIn, TooLarge
from mydrive.formats.digest import digest
from mydrive.runtime.clock import Clock

SESSION_ID_BYTES = 32
DEFAULT_IDLE_TIMEOUT_S = 15 * 60.0
DEFAULT_MAX_AGE_S = 12 * 3600.0
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_SESSIONS_PER_USER = 16
MAX_SESSION_ID_CHARS = 128


@dataclass
class Session:
    user_name: str
    user_id: str
    created_s: float
    last_used_s: float
    _keys: UserKeys | None = field(repr=False)
    _token: bytes = field(repr=False)

    @property
    def keys(self) -> UserKeys:
        if self._keys is None:
            raise NotLoggedIn("this session was logged out or expired")
        return self._keys

    def wipe(self) -> None:
        self._keys = None
        self._token = b""


class SessionStore:
    def __init__(self, *, clock: Clock, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_age_s: float = DEFAULT_MAX_AGE_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 max_sessions_per_user: int = DEFAULT_MAX_SESSIONS_PER_USER,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        assert idle_timeout_s > 0 and max_age_s >= idle_timeout_s
        assert max_sessions >= 1 and max_sessions_per_user >= 1
        self.clock = clock
        self.idle_timeout_s = idle_timeout_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.max_sessions_per_user = max_sessions_per_user
        self.random_bytes = random_bytes
        self._by_digest: dict[bytes, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_digest)

    def login(self, user_name: str, keys: UserKeys) -> str:
        """Hold ``keys`` for a new session; returns its id (the cookie value)."""
        now = self.clock.monotonic_s()
        token = self.random_bytes(SESSION_ID_BYTES)
        assert len(token) == SESSION_ID_BYTES
        session = Session(user_name=user_name, user_id=keys.user_id, created_s=now,
                          last_used_s=now, _keys=keys, _token=token)
        with self._lock:
            self._sweep_locked(now)
            mine = sorted((s.last_used_s, d) for d, s in self._by_digest.items()
                          if s.user_id == keys.user_id)
            while len(mine) >= self.max_sessions_per_user:
                self._drop_locked(mine.pop(0)[1])
            if len(self._by_digest) >= self.max_sessions:
                raise TooLarge(f"too many sessions ({self.max_sessions}); try again later")
            self._by_digest[digest(token)] = session
        return base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")

    def get(self, session_id: str) -> Session:
        """The live session for ``session_id`` (and mark it used), else NotLoggedIn."""
        token = _decode(session_id)
        now = self.clock.monotonic_s()
        with self._lock:
            key = digest(token) if token is not None else None
            session = self._by_digest.get(key) if key is not None else None
            if session is None or token is None or not constant_time_equal(session._token,
                                                                             token):
                raise NotLoggedIn("not logged in (unknown session)")
            if self._expired(session, now):
                assert key is not None
                self._drop_locked(key)
                raise NotLoggedIn("session expired; log in again")
            session.last_used_s = now
            return session

    def logout(self, session_id: str) -> bool:
        """Drop and wipe the session; True if it existed. Unknown ids are not an error."""
        token = _decode(session_id)
        if token is None:
            return False
        with self._lock:
            key = digest(token)
            session = self._by_digest.get(key)
            if session is None or not constant_time_equal(session._token, token):
                return False
            self._drop_locked(key)
            return True

    def logout_user(self, user_id: str) -> int:
        """Drop every session of a user (after a passphrase change, say); how many."""
        with self._lock:
            keys = [d for d, s in self._by_digest.items() if s.user_id == user_id]
            for d in keys:
                self._drop_locked(d)
            return len(keys)

    def sweep(self) -> int:
        """Drop expired sessions now; how many. ``login`` and ``get`` also sweep lazily."""
        with self._lock:
            return self._sweep_locked(self.clock.monotonic_s())

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_used_s > self.idle_timeout_s
                or now - session.created_s > self.max_age_s)

    def _sweep_locked(self, now: float) -> int:
        dead = [d for d, s in self._by_digest.items() if self._expired(s, now)]
        for d in dead:
            self._drop_locked(d)
        return len(dead)

    def _drop_locked(self, key: bytes) -> None:
        session = self._by_digest.pop(key, None)
        if session is not None:
            session.wipe()


def _decode(session_id: str) -> bytes | None:
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID_CHARS:
        return None
    try:
        token = base64.b64decode(session_id + "=" * (-len(session_id) % 4), altchars=b"-_",
                                 validate=True)  # strict: no silently skipped characters
    except (ValueError, TypeError):
        return None
    return token if len(token) == SESSION_ID_BYTES else None
