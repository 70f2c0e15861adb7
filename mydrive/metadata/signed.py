"""Owner-signed metadata documents: signing them, and checking them before any use.

Every other peer may be dishonest, and metadata replicates through all of them, so a
``user:``, ``file:`` or ``tomb:`` document is used only after this module says who signed it
(the byte format is mydrive.formats.signed_doc). A document is *valid* when

* its signature verifies, over every field and its document id, under the public key the
  signature names;
* that key is the document's owner: a user document's own ``identity_public_key``, and for a
  file or tombstone, the key whose user id (mydrive.crypto.keys.user_id_for) is its
  ``owner_id``;
* it parses, and names itself: a user document's name, a file's or tombstone's file id,
  match the document id.

Validity needs no other document and no local state, so every peer judges a revision the
same way (the conflict policy relies on it). What it can't tell, which key a *user name*
belongs to, is this peer's pin: the last verified revision it keeps as a local document
(mydrive.metadata.guard, PeerClient.user_record). Version 1 documents (unsigned, from before
this) are refused with a message saying so. Pure computation: nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mydrive.crypto.keys import USER_DOC_TYPE, UserRecord, user_id_for
from mydrive.crypto.primitives import IdentityKey, constant_time_equal, verify_signature
from mydrive.errors import BadRequest, UntrustedMetadata
from mydrive.formats.filerecord import FILE_DOC_TYPE, FileRecord
from mydrive.formats.signed_doc import DocSignature, attach, read_signature, signing_bytes
from mydrive.formats.tombstone import TOMB_DOC_TYPE, Tombstone
from mydrive.metadata.base import Document

SIGNED_KINDS = frozenset({USER_DOC_TYPE, FILE_DOC_TYPE, TOMB_DOC_TYPE})
LEGACY_VERSION = 1
LOCAL_VERIFIED_PREFIX = "verified:"  # local document: the last verified revision of a doc


def verified_key(doc_id: str) -> str:
    """The local document id under which this peer keeps ``doc_id``'s last valid revision."""
    return LOCAL_VERIFIED_PREFIX + doc_id


@dataclass(frozen=True)
class Verified:
    """What a valid signed document says about itself."""

    doc_id: str
    kind: str
    signer: bytes  # the owner's Ed25519 public key
    owner_id: str  # the owner's user id (derived from ``signer``)
    updated_ms: int  # which of two valid revisions of the document is newer


def sign_document(doc_id: str, body: Mapping[str, Any], identity: IdentityKey) -> Document:
    """``body`` with its owner's signature over every field and ``doc_id``."""
    message = signing_bytes(doc_id, body)  # our own documents are always canonical
    return attach(body, DocSignature(public_key=identity.public_bytes(),
                                     value=identity.sign(message)))


def _signer(doc_id: str, doc: Mapping[str, Any]) -> bytes:
    if not isinstance(doc, Mapping):
        raise UntrustedMetadata(f"{doc_id}: not a JSON object")
    kind = doc_id.partition(":")[0]
    if doc.get("version") == LEGACY_VERSION and doc.get("type") == kind:
        raise UntrustedMetadata(f"{doc_id} is a version 1 document (unsigned, from before "
                                f"owner-signed metadata); not used")
    signature = read_signature(doc_id, doc)
    if not verify_signature(signature.public_key, signing_bytes(doc_id, doc), signature.value):
        raise UntrustedMetadata(f"{doc_id}: its owner signature does not verify "
                                f"(tampered with or forged)")
    return signature.public_key


def _same_key(a: bytes, b: bytes) -> bool:
    return len(a) == len(b) and constant_time_equal(a, b)


def _expect_owner(doc_id: str, signer: bytes, owner_key: bytes | None) -> None:
    if owner_key is not None and not _same_key(signer, owner_key):
        raise UntrustedMetadata(f"{doc_id} is not signed by this user")


def verify_user(doc_id: str, doc: Mapping[str, Any],
                owner_key: bytes | None = None) -> UserRecord:
    """The user record of a valid user document, else UntrustedMetadata saying why."""
    signer = _signer(doc_id, doc)
    try:
        record = UserRecord.from_doc(doc)
    except BadRequest as exc:
        raise UntrustedMetadata(f"{doc_id}: malformed user document: {exc}") from None
    if doc_id != f"{USER_DOC_TYPE}:{record.name}":
        raise UntrustedMetadata(f"{doc_id}: names user {record.name!r}, not its own id")
    if not _same_key(record.identity_public_key, signer):
        raise UntrustedMetadata(f"{doc_id}: signed by a key that is not its identity key")
    _expect_owner(doc_id, signer, owner_key)
    return record


class _OwnedRecord(Protocol):
    """What a file record and a tombstone both say about themselves."""

    @property
    def doc_id(self) -> str: ...
    @property
    def owner_id(self) -> str: ...
    @property
    def updated_ms(self) -> int: ...


R = TypeVar("R", bound=_OwnedRecord)


def _verify_owned(doc_id: str, doc: Mapping[str, Any], owner_key: bytes | None,
                  parse: Callable[[Mapping[str, Any]], R], what: str) -> tuple[R, bytes]:
    """A file or tombstone document: signed by the key of its ``owner_id``, naming itself."""
    signer = _signer(doc_id, doc)
    try:
        record = parse(doc)
    except BadRequest as exc:
        raise UntrustedMetadata(f"{doc_id}: {exc}") from None
    if record.doc_id != doc_id:
        raise UntrustedMetadata(f"{doc_id}: holds the {what} of {record.doc_id}")
    if record.owner_id != user_id_for(signer):
        raise UntrustedMetadata(f"{doc_id}: signed by a key that is not its owner's")
    _expect_owner(doc_id, signer, owner_key)
    return record, signer


def _parse_file(doc: Mapping[str, Any]) -> FileRecord:
    return FileRecord.from_doc(dict(doc))


_OWNED_KINDS: dict[str, tuple[Callable[[Mapping[str, Any]], _OwnedRecord], str]] = {
    FILE_DOC_TYPE: (_parse_file, "document"),
    TOMB_DOC_TYPE: (Tombstone.from_doc, "tombstone"),
}


def verify_file(doc_id: str, doc: Mapping[str, Any],
                owner_key: bytes | None = None) -> FileRecord:
    """The record of a valid file document (signed by ``owner_key`` if given)."""
    return _verify_owned(doc_id, doc, owner_key, _parse_file, "document")[0]


def verify_tomb(doc_id: str, doc: Mapping[str, Any],
                owner_key: bytes | None = None) -> Tombstone:
    """The tombstone of a valid tombstone document (signed by ``owner_key`` if given)."""
    return _verify_owned(doc_id, doc, owner_key, Tombstone.from_doc, "tombstone")[0]


def verify(doc_id: str, doc: Mapping[str, Any]) -> Verified:
    """Check any signed document; UntrustedMetadata (or BadRequest for an unsigned kind)."""
    kind = doc_id.partition(":")[0]
    if kind == USER_DOC_TYPE:
        user = verify_user(doc_id, doc)
        return Verified(doc_id, kind, user.identity_public_key, user.user_id, user.updated_ms)
    if kind in _OWNED_KINDS:
        record, signer = _verify_owned(doc_id, doc, None, *_OWNED_KINDS[kind])
        return Verified(doc_id, kind, signer, record.owner_id, record.updated_ms)
    raise BadRequest(f"{doc_id}: documents of kind {kind!r:.40} are not owner-signed")


def is_valid(doc_id: str, doc: Mapping[str, Any]) -> bool:
    try:
        verify(doc_id, doc)
    except (UntrustedMetadata, BadRequest):
        return False
    return True
