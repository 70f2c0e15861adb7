"""Reading and writing owner-signed documents the way this peer trusts them.

The client (ls, get, inspect, rm, gc, login, the UI tree) reads users and files only through
here. A document is used only if it verifies (mydrive.metadata.signed); beyond that:

* a user name is bound to the identity key this peer saw first for it: the last verified
  user document is kept as a local document (``verified:user:<name>``, never replicated),
  and a revision signed by another key, older than the kept one (``updated_ms``), unsigned
  or deleted is not used: the kept one is. So a forged user document never locks a user out
  of a peer that knew them, and a replayed one never brings an old passphrase back;
* a file document of this user that fails verification is replaced by the last verified
  revision of it, if this peer kept one; otherwise it is skipped with a warning (``ls``) or
  refused with ``UntrustedMetadata`` naming it (``get``/``inspect``/``rm`` of its path);
* a file whose removal its owner signed (a valid tombstone) is gone, even if a replica
  brings its document back.

Writes are signed here and also kept as the verified local copy. A crash between the two
leaves the document written and no copy yet: the next read or guard review makes it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from mydrive.crypto.keys import (
    LEGACY_USER_DOC_VERSION,
    USER_DOC_TYPE,
    UserKeys,
    UserRecord,
    validate_username,
)
from mydrive.crypto.primitives import IdentityKey, constant_time_equal
from mydrive.errors import UnknownUser, UntrustedMetadata
from mydrive.formats.filerecord import FILE_PREFIX, FileRecord, owner_prefix
from mydrive.formats.tombstone import TOMB_PREFIX, file_id_of_tomb
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.signed import (
    sign_document,
    verified_key,
    verify_file,
    verify_tomb,
    verify_user,
)

log = logging.getLogger("mydrive.metadata.trusted")

MAX_REFUSED_REPORTED = 100


def user_doc_id(name: str) -> str:
    return f"{USER_DOC_TYPE}:{validate_username(name)}"


def write_signed(store: MetadataStore, doc_id: str, body: dict[str, Any],
                 identity: IdentityKey, *, create_only: bool = False) -> Document:
    """Sign ``body`` as ``doc_id``, write it, and keep it as the verified local copy."""
    doc = sign_document(doc_id, body, identity)
    store.put(doc_id, doc, create_only=create_only)
    store.put_local(verified_key(doc_id), doc)
    return doc


def write_user(store: MetadataStore, record: UserRecord, keys: UserKeys, *,
               create_only: bool = False) -> None:
    assert record.user_id == keys.user_id and record.version != LEGACY_USER_DOC_VERSION
    write_signed(store, user_doc_id(record.name), record.to_doc(), keys.identity,
                 create_only=create_only)


def next_updated_ms(record: UserRecord, now_ms: int) -> UserRecord:
    """``record`` stamped later than itself even if this peer's clock is behind."""
    return replace(record, updated_ms=max(now_ms, record.updated_ms + 1))


def _kept_user(store: MetadataStore, doc_id: str) -> tuple[Document | None, UserRecord | None]:
    kept_doc = store.get_local(verified_key(doc_id))
    if kept_doc is None:
        return None, None
    try:
        return kept_doc, verify_user(doc_id, kept_doc)
    except UntrustedMetadata as exc:  # our own copy: a bug or a damaged disk
        log.error("%s: the local verified copy does not verify (%s); ignored", doc_id, exc)
        return None, None


def read_user(store: MetadataStore, name: str) -> UserRecord:
    """The user record this peer trusts for ``name`` (see the module docstring).

    A version 1 document (unsigned) is returned as it is only while this peer knows no
    signed one; ``PeerClient.login`` then migrates it. UnknownUser if there is none,
    UntrustedMetadata if the only document there is forged or tampered with.
    """
    doc_id = user_doc_id(name)
    doc = store.get(doc_id)
    kept_doc, kept = _kept_user(store, doc_id)
    if doc is None:
        if kept is not None:
            log.warning("%s was deleted by a replica; using the last verified revision", doc_id)
            return kept
        raise UnknownUser(f"no user {name!r} on this peer")
    try:
        record = verify_user(doc_id, doc)
    except UntrustedMetadata as exc:
        if kept is not None:
            log.warning("%s; using the last verified revision", exc)
            return kept
        if doc.get("version") == LEGACY_USER_DOC_VERSION:
            return UserRecord.from_doc(doc)  # BadRequest naming the field if malformed
        raise UntrustedMetadata(f"user {name!r}: {exc}") from None
    if kept is not None:
        if not constant_time_equal(record.identity_public_key, kept.identity_public_key):
            log.warning("%s: a revision signed by another identity key is not used; this "
                        "peer keeps the one it knew", doc_id)
            return kept
        if record.updated_ms < kept.updated_ms:
            log.warning("%s: an older revision was replayed; using the newer one", doc_id)
            return kept
    if doc != kept_doc:
        store.put_local(verified_key(doc_id), doc)
    return record


@dataclass
class OwnedFiles:
    """One user's file documents as this peer trusts them."""

    records: list[FileRecord] = field(default_factory=list)
    # (document id, the lookup tag it claims, why it is not used), at most 100 of them
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    def refuse(self, doc_id: str, doc: Document, reason: str) -> None:
        log.warning("skipping untrusted file document %r: %s", doc_id, reason)
        if len(self.refused) < MAX_REFUSED_REPORTED:
            tag = doc.get("path_tag")
            self.refused.append((doc_id, tag if isinstance(tag, str) else "", reason))


def removed_files(store: MetadataStore, keys: UserKeys,
                  among: Collection[str] | None = None) -> set[str]:
    """The file document ids whose removal this user signed (valid tombstones); only those
    ``among`` the given document ids when given."""
    out = set()
    mine = keys.identity.public_bytes()
    for doc_id, doc in store.list_prefix(f"{TOMB_PREFIX}{keys.user_id}:"):
        removed = file_id_of_tomb(doc_id)
        if among is not None and removed not in among:
            continue  # it hides no document: not worth a signature check
        try:
            verify_tomb(doc_id, doc, owner_key=mine)
        except UntrustedMetadata:
            continue
        out.add(removed)
    return out


def read_files(store: MetadataStore, keys: UserKeys) -> OwnedFiles:
    """This user's files: verified records, and what was refused and why.

    Tombstones are verified only for documents still there: a user's deletions accumulate
    (each is kept until every replica is gone), and checking each one's signature on every
    listing made ``ls`` grow with everything ever deleted."""
    result = OwnedFiles()
    mine = keys.identity.public_bytes()
    prefix = owner_prefix(keys.user_id)
    own: list[tuple[str, Document]] = []
    for doc_id, doc in store.list_prefix(FILE_PREFIX):
        if doc_id.startswith(prefix):
            own.append((doc_id, doc))
        elif doc.get("owner_id") == keys.user_id:  # e.g. version 1, or under a wrong id
            result.refuse(doc_id, doc, _why(doc_id, doc, mine))
    removed = removed_files(store, keys, among={doc_id for doc_id, _ in own})
    for doc_id, doc in own:
        if doc_id in removed:
            continue
        try:
            result.records.append(verify_file(doc_id, doc, owner_key=mine))
        except UntrustedMetadata as exc:
            kept = _kept_file(store, doc_id, mine)
            if kept is None:
                result.refuse(doc_id, doc, str(exc))
            else:
                log.warning("%s; using the last verified revision", exc)
                result.records.append(kept)
    return result


def _why(doc_id: str, doc: Document, mine: bytes) -> str:
    try:
        verify_file(doc_id, doc, owner_key=mine)
    except UntrustedMetadata as exc:
        return str(exc)
    return f"{doc_id}: not stored under its own id"  # unreachable: the id is signed


def _kept_file(store: MetadataStore, doc_id: str, mine: bytes) -> FileRecord | None:
    kept_doc = store.get_local(verified_key(doc_id))
    if kept_doc is None:
        return None
    try:
        return verify_file(doc_id, kept_doc, owner_key=mine)
    except UntrustedMetadata as exc:
        log.error("%s: the local verified copy does not verify (%s); ignored", doc_id, exc)
        return None
