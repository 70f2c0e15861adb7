"""UI login sessions: random ids, idle expiry on an injected clock, logout wipes, bounded."""

from __future__ import annotations

import pytest

from mydrive.crypto.keys import derive_user_keys
from mydrive.errors import NotLoggedIn, TooLarge
from mydrive.testing.clock import ManualClock
from mydrive.ui.sessions import SessionStore


def _keys(i: int):
    return derive_user_keys(f"{i:032x}", bytes([i]) * 32)


def test_sessions_login_get_returns_keys_and_ids_are_random() -> None:
    """A session id gives back the same keys; two logins get different, unguessable ids."""
    store = SessionStore(clock=ManualClock())
    k = _keys(1)
    s1, s2 = store.login("alice", k), store.login("alice", k)
    assert s1 != s2 and len(s1) == 43  # 32 bytes, URL-safe base64, no padding
    assert store.get(s1).keys is k and store.get(s1).user_name == "alice"


def test_sessions_expire_after_inactivity_not_while_used() -> None:
    """Use within the idle timeout keeps a session; idle longer expires it (NotLoggedIn)."""
    clock = ManualClock()
    store = SessionStore(clock=clock, idle_timeout_s=60, max_age_s=600)
    sid = store.login("alice", _keys(1))
    for _ in range(5):
        clock.advance_ms(59_000)
        store.get(sid)
    session = store.get(sid)
    clock.advance_ms(60_001)
    with pytest.raises(NotLoggedIn, match="expired"):
        store.get(sid)
    with pytest.raises(NotLoggedIn):
        _ = session.keys  # wiped: a handler holding the object can't use the keys either
    with pytest.raises(NotLoggedIn, match="unknown session"):
        store.get(sid)


def test_sessions_absolute_max_age() -> None:
    """Even a session in constant use ends after max_age_s."""
    clock = ManualClock()
    store = SessionStore(clock=clock, idle_timeout_s=60, max_age_s=120)
    sid = store.login("alice", _keys(1))
    clock.advance_ms(59_000)
    store.get(sid)
    clock.advance_ms(59_000)
    store.get(sid)
    clock.advance_ms(3_000)
    with pytest.raises(NotLoggedIn, match="expired"):
        store.get(sid)


def test_sessions_logout_wipes() -> None:
    """After logout the id is unknown and the Session object no longer yields keys."""
    store = SessionStore(clock=ManualClock())
    sid = store.login("alice", _keys(1))
    session = store.get(sid)
    assert store.logout(sid) is True and store.logout(sid) is False
    with pytest.raises(NotLoggedIn, match="unknown session"):
        store.get(sid)
    with pytest.raises(NotLoggedIn, match="logged out"):
        _ = session.keys
    assert len(store) == 0


def test_sessions_reject_guesses_and_junk() -> None:
    """Near-miss, malformed, over-long and non-alphabet ids are all just 'unknown'."""
    store = SessionStore(clock=ManualClock())
    sid = store.login("alice", _keys(1))
    flipped = ("B" if sid[0] == "A" else "A") + sid[1:]
    for bad in (flipped, "", "x" * 200, sid + "!", sid[:-1], "!!" + sid[2:]):
        with pytest.raises(NotLoggedIn, match="unknown session"):
            store.get(bad)
        assert store.logout(bad) is False
    assert store.get(sid).user_name == "alice"


def test_sessions_bounded_per_user_and_in_total() -> None:
    """A user's oldest session is evicted past the per-user cap; past the total, TooLarge."""
    clock = ManualClock()
    store = SessionStore(clock=clock, max_sessions=5, max_sessions_per_user=2)
    first = store.login("alice", _keys(1))
    clock.advance_ms(1)
    second = store.login("alice", _keys(1))
    clock.advance_ms(1)
    store.get(first)  # first is now the most recently used
    clock.advance_ms(1)
    store.login("alice", _keys(1))
    assert store.get(first) and len(store) == 2
    with pytest.raises(NotLoggedIn):
        store.get(second)
    for i in range(2, 5):
        store.login(f"u{i}", _keys(i))
    with pytest.raises(TooLarge, match="too many sessions"):
        store.login("u9", _keys(9))
    assert store.logout_user(_keys(1).user_id) == 2
    store.login("u9", _keys(9))


def test_sessions_sweep_frees_expired() -> None:
    """Expired sessions are dropped by sweep (and lazily by login), freeing room."""
    clock = ManualClock()
    store = SessionStore(clock=clock, idle_timeout_s=10, max_age_s=10, max_sessions=2)
    store.login("a", _keys(1))
    store.login("b", _keys(2))
    clock.advance_ms(10_001)
    store.login("c", _keys(3))  # room made by the lazy sweep
    assert len(store) == 1 and store.sweep() == 0
