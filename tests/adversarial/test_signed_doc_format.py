"""The signed-document format (mydrive.formats.signed_doc, docs/metadata.md): any change to a
signed user or tombstone document, its id or its signature field fails verification, and
input without a canonical form can't verify."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mydrive.crypto import keys as keyslib
from mydrive.crypto.primitives import IdentityKey, KdfParams
from mydrive.errors import BadRequest, UntrustedMetadata
from mydrive.formats.signed_doc import canonical_json, signing_bytes
from mydrive.formats.tombstone import Tombstone
from mydrive.metadata.signed import sign_document, verify

FAST = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1, salt=bytes(range(16)))
RECORD, KEYS = keyslib.create_user("alice", "pass", kdf_params=FAST,
                                   random_bytes=lambda n: b"\x01" * n)
USER_DOC = sign_document("user:alice", replace(RECORD, updated_ms=7).to_doc(), KEYS.identity)
TOMB = Tombstone(file_id=b"\xaa" * 16, owner_id=KEYS.user_id, created_ms=5, updated_ms=6,
                 pending={"peer1": (b"\x01" * 32, b"\x02" * 32), "peer2": (b"\x03" * 32,)})
TOMB_DOC = sign_document(TOMB.doc_id, TOMB.to_doc(), KEYS.identity)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k in sorted(value) for p in _leaves(value[k], path + (k,))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaves(item, path + (i,))]
    return [path]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str) and value and value[-1] in "0123456789abcdef":
        return value[:-1] + ("1" if value[-1] == "0" else "0")
    return f"{value}x"


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, 10_000), kind=st.sampled_from(["user", "tomb"]))
def test_signed_doc_any_field_change_fails(which: int, kind: str) -> None:
    """Changing any one leaf of a signed document, the signature included, fails verify."""
    doc_id, doc = ("user:alice", USER_DOC) if kind == "user" else (TOMB.doc_id, TOMB_DOC)
    verify(doc_id, doc)  # control: untouched it verifies
    paths = _leaves(doc)
    path = paths[which % len(paths)]
    bad = copy.deepcopy(doc)
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _changed(target[path[-1]])
    with pytest.raises((UntrustedMetadata, BadRequest)):
        verify(doc_id, bad)


def test_signed_doc_added_or_removed_field_fails() -> None:
    """An extra field, or a field left out, is a different document: refused."""
    with pytest.raises(UntrustedMetadata, match="does not verify"):
        verify("user:alice", {**USER_DOC, "admin": True})
    with pytest.raises(UntrustedMetadata):
        verify("user:alice", {k: v for k, v in USER_DOC.items() if k != "updated_ms"})


def test_signed_doc_bound_to_its_id() -> None:
    """The same body under another id does not verify (the id is in the signed bytes)."""
    with pytest.raises(UntrustedMetadata):
        verify("user:bob", USER_DOC)
    moved = replace(TOMB, file_id=b"\xbb" * 16).doc_id
    with pytest.raises(UntrustedMetadata):
        verify(moved, TOMB_DOC)


def test_signed_doc_other_key_does_not_count() -> None:
    """Signed by a key that is not the owner's: refused though the signature is valid."""
    other = IdentityKey.from_seed(b"\x09" * 32)
    with pytest.raises(UntrustedMetadata, match="not its identity key"):
        verify("user:alice", sign_document("user:alice", USER_DOC, other))
    with pytest.raises(UntrustedMetadata, match="not its owner's"):
        verify(TOMB.doc_id, sign_document(TOMB.doc_id, TOMB_DOC, other))


@pytest.mark.parametrize("signature", [
    None, "x", {}, {"version": 2, "alg": "ed25519"}, {"version": 1, "alg": "rsa"},
    {"version": 1, "alg": "ed25519", "public_key": "00", "value": "00" * 64},
    {"version": 1, "alg": "ed25519", "public_key": "zz" * 32, "value": "00" * 64},
])
def test_signed_doc_malformed_signature_field_refused(signature: object) -> None:
    """A signature field that is missing, of another version or algorithm, or malformed."""
    doc = {**USER_DOC, "signature": signature}
    if signature is None:
        del doc["signature"]
    with pytest.raises(UntrustedMetadata):
        verify("user:alice", doc)


def _deep(levels: int) -> object:
    value: object = "deep"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value", [1.5, 2**53, -(2**53), float("nan"), {1: "x"}, b"x",
                                   _deep(40)])
def test_canonical_json_refuses_what_it_cannot_encode(value: object) -> None:
    """Floats, integers beyond 2^53 - 1, non-string keys, bytes, 33+ levels: no canonical
    form, so a document holding them can't verify."""
    with pytest.raises(ValueError):
        canonical_json({"v": value})
    with pytest.raises(UntrustedMetadata):
        signing_bytes("user:alice", {"v": value})


def test_signed_doc_documented_example() -> None:
    """The example in docs/metadata.md ("Signed documents") reproduces byte for byte."""
    doc = {"type": "tomb", "version": 2, "note": "caf\u00e9", "pending": {"b": [], "a": [1, 2]}}
    assert signing_bytes("tomb:x", doc) == (
        b'mydrive-signed-doc-v1\x00tomb:x\x00{"note":"caf\\u00e9","pending":{"a":[1,2],'
        b'"b":[]},"type":"tomb","version":2}')
    identity = IdentityKey.from_seed(bytes(32))
    signed = sign_document("tomb:x", doc, identity)
    assert signed["signature"] == {
        "version": 1, "alg": "ed25519",
        "public_key": "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
        "value": signed["signature"]["value"]}
    assert signing_bytes("tomb:x", signed) == signing_bytes("tomb:x", doc)
