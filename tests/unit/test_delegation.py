"""The delegation format (mydrive.formats.delegation): round trip, bounds and refusals."""

from __future__ import annotations

import os

import pytest

from mydrive.crypto.primitives import IdentityKey
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.formats.delegation import (
    MAX_DELEGATION_CHUNKS,
    MAX_DELEGATION_LIFETIME_MS,
    Delegation,
    SignedDelegation,
    scope_chunks,
)
from mydrive.transport.signed_fetch import sign_delegation, verify_delegation

OWNER = IdentityKey.from_seed(b"o" * 32)
DELEGATE = IdentityKey.from_seed(b"d" * 32)


def _delegation(chunks: int = 3, **changes: object) -> Delegation:
    fields: dict[str, object] = dict(
        owner_public_key=OWNER.public_bytes(), delegate_public_key=DELEGATE.public_bytes(),
        delegate_peer_id="peer-a", chunk_ids=tuple(sorted(os.urandom(32) for _ in range(chunks))),
        issued_ms=1_000, not_after_ms=61_000)
    fields.update(changes)
    return Delegation(**fields)  # type: ignore[arg-type]


def test_delegation_round_trips_through_bytes() -> None:
    """decode(encode(d)) == d, and covers() answers exactly for the named chunks."""
    d = _delegation(50)
    back = Delegation.decode(d.encode())
    assert back == d
    assert all(back.covers(c) for c in d.chunk_ids)
    assert not back.covers(b"\x00" * 32)


def test_delegation_signature_verifies_only_under_owner_key() -> None:
    """A signed delegation verifies with its owner's key; another key or a flipped bit fails."""
    signed = sign_delegation(OWNER, _delegation())
    assert verify_delegation(SignedDelegation.decode(signed.encode()),
                             OWNER.public_bytes()).delegate_peer_id == "peer-a"
    with pytest.raises(PermissionDenied):
        verify_delegation(signed, DELEGATE.public_bytes())
    body = bytearray(signed.body)
    body[-1] ^= 1
    with pytest.raises(PermissionDenied):
        verify_delegation(SignedDelegation(bytes(body), signed.signature), OWNER.public_bytes())


@pytest.mark.parametrize("changes, message", [
    ({"chunk_ids": ()}, "names 1.."),
    ({"not_after_ms": 1_000}, "expire after"),
    ({"not_after_ms": 1_000 + MAX_DELEGATION_LIFETIME_MS + 1}, "at most"),
    ({"delegate_peer_id": ""}, "peer id"),
    ({"owner_public_key": b"x"}, "owner key"),
])
def test_delegation_validate_refuses_bad_fields(changes: dict[str, object],
                                                message: str) -> None:
    """Empty scope, inverted or overlong lifetime, empty peer id, short key: BadRequest."""
    with pytest.raises(BadRequest, match=message):
        _delegation(**changes).validate()


def test_delegation_refuses_unsorted_or_duplicate_chunks() -> None:
    """Chunk ids must be sorted and unique, so covers() can search and scope is exact."""
    c = sorted(os.urandom(32) for _ in range(2))
    for ids in ((c[1], c[0]), (c[0], c[0])):
        with pytest.raises(BadRequest, match="sorted and unique"):
            _delegation(chunk_ids=ids).validate()


def test_delegation_decode_refuses_malformed_bytes() -> None:
    """Truncated, extended, wrong-magic or wrong-version bytes are BadRequest, never a crash."""
    good = _delegation().encode()
    for bad in (good[:-1], good + b"x", b"XXXX" + good[4:], good[:4] + b"\x02" + good[5:], b""):
        with pytest.raises(BadRequest):
            Delegation.decode(bad)
    with pytest.raises(BadRequest):
        SignedDelegation.decode(b"short")


def test_delegation_scope_chunks_cuts_large_jobs() -> None:
    """A job's chunks are cut into sorted, unique groups of at most MAX_DELEGATION_CHUNKS."""
    ids = [i.to_bytes(32, "big") for i in range(MAX_DELEGATION_CHUNKS + 5)] * 2
    groups = scope_chunks(ids)
    assert [len(g) for g in groups] == [MAX_DELEGATION_CHUNKS, 5]
    assert list(groups[0] + groups[1]) == sorted(set(ids))
