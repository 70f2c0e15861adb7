"""The metadata guard: what a peer does with owner-signed documents that replicate in.

Replication copies whatever another peer's server holds, and that peer may be dishonest: it
can delete a user's file document (the wrapped file key goes with it, so the file would be
lost), write an unsigned or tampered revision, replay an older signed one, or claim a user
name with its own key. The replication supervisor hands every change of a ``user:``,
``file:`` or ``tomb:`` document to ``MetadataGuard.review``, which keeps, per document, the
last revision that verified (mydrive.metadata.signed) as a local document
``verified:<doc id>`` (never replicated) and then:

* a valid revision, signed by the same owner and not older (``updated_ms``) than the kept
  one: kept as the new verified revision;
* an invalid revision (unsigned, tampered, wrongly signed), or an older one: the verified
  revision is written back on top of it, so it also replicates back out;
* a deletion: for a file document, accepted only if the owner's valid tombstone
  (``tomb:<same id>``) orders it; for a tombstone, only once it is old enough to expire;
  never for a user document. Otherwise the verified revision is written back;
* a valid tombstone next to a live file document: the file document is deleted (the rm is
  the owner's; gc does the same);
* a user document signed by *another* key than the kept one (the same name created on two
  sides of a partition, or a peer squatting a name): the store is left alone, so no two peers
  ever fight over it, and this peer's readers go on using the kept revision.

Every rule reads only the document, its tombstone and the local copy, and all peers apply the
same validity check, so peers that disagree can't write back and forth forever.

A crash between the two writes of a step leaves either the old local copy (the next review
of the same change repeats the step) or a document written back that replicates as any
other write; the supervisor starts from the beginning of ``_changes`` after a restart.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mydrive.crypto.keys import USER_DOC_TYPE
from mydrive.errors import BadRequest, MetadataUnavailable, MydriveError, UntrustedMetadata
from mydrive.formats.filerecord import FILE_DOC_TYPE
from mydrive.formats.tombstone import (
    MAX_TOMBSTONE_AGE_MS,
    TOMB_DOC_TYPE,
    Tombstone,
    file_id_of_tomb,
    tomb_id_of_file,
)
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.pins import kept_revision, pin_newer_revision
from mydrive.metadata.signed import (
    SIGNED_KINDS,
    Verified,
    verified_key,
    verify,
    verify_tomb,
)

log = logging.getLogger("mydrive.metadata.guard")

# A tombstone's deletion is accepted this long before it expires by our own clock, so an
# owner whose clock runs up to a day ahead of ours doesn't see its expired tombstones restored.
CLOCK_SKEW_ALLOWANCE_MS = 24 * 3600 * 1000
MAX_WARNED_IDS = 10_000


@runtime_checkable
class RevisionHistory(Protocol):
    """A store that keeps earlier revisions of a document (CouchDB, until compaction)."""

    def earlier_revisions(self, doc_id: str) -> list[Document]:
        """Bodies of the current revision's ancestors this server holds, newest first."""
        ...


class MetadataGuard:
    """Reviews signed documents as they change; ``actions`` counts what it did (for tests
    and logs). Raises only MetadataUnavailable (the supervisor retries the change)."""

    def __init__(self, store: MetadataStore, *, now_ms: Callable[[], int]) -> None:
        self.store = store
        self.now_ms = now_ms
        self.actions: Counter[str] = Counter()
        self._warned: set[tuple[str, str]] = set()

    def review(self, doc_id: str) -> str:
        """Apply the rules to the current state of ``doc_id``; the action taken."""
        if doc_id.partition(":")[0] not in SIGNED_KINDS:
            return "not-signed-kind"
        try:
            action = self._review(doc_id)
        except MetadataUnavailable:
            raise
        except MydriveError as exc:  # a replica's garbage must not stop the supervisor
            self._warn(doc_id, "error", "guard could not review %r: %s", doc_id, exc)
            action = "error"
        self.actions[action] += 1
        return action

    def _review(self, doc_id: str) -> str:
        kept_doc, kept = self._kept(doc_id)
        doc = self.store.get(doc_id)
        if doc is None:
            return self._deleted(doc_id, kept_doc, kept)
        try:
            now = verify(doc_id, doc)
        except (UntrustedMetadata, BadRequest) as exc:
            if kept_doc is None:
                self._warn(doc_id, "refused", "%s is not valid (%s) and no valid revision of "
                           "it is known here; readers skip it", doc_id, exc)
                return "refused"
            self._restore(doc_id, kept_doc, f"invalid revision ({exc})")
            return "restored"
        if kept_doc is not None and kept is not None:
            if kept.signer != now.signer:
                if now.kind != USER_DOC_TYPE:
                    # Can't happen: the owner id is part of the id and derived from the key.
                    self._restore(doc_id, kept_doc, "signed by another owner")
                    return "restored"
                if isinstance(self.store, RevisionHistory):
                    # The owner's newer revision may lie under it (pins.pin_newer_revision).
                    pin_newer_revision(self.store, doc_id, self.store.earlier_revisions(doc_id))
                self._warn(doc_id, "other-key", "%s: a revision signed by another identity "
                           "key arrived (the name is claimed twice); this peer keeps the one "
                           "it knew", doc_id)
                return "kept-other-key"
            if now.updated_ms < kept.updated_ms:
                self._restore(doc_id, kept_doc, "older revision replayed")
                return "restored"
        if now.kind == FILE_DOC_TYPE and self._removal_ordered(doc_id, now):
            self.store.delete(doc_id)
            log.info("%s: its owner's tombstone orders its removal; deleted", doc_id)
            return "finished-rm"
        if now.kind == TOMB_DOC_TYPE:
            file_doc = file_id_of_tomb(doc_id)
            if self.store.get(file_doc) is not None:
                self.store.delete(file_doc)
                log.info("%s: removed as its owner's tombstone orders", file_doc)
        if doc != kept_doc:
            self.store.put_local(verified_key(doc_id), doc)
            return "verified"
        return "unchanged"

    def _deleted(self, doc_id: str, kept_doc: Document | None, kept: Verified | None) -> str:
        if kept_doc is None or kept is None:
            return "gone"
        if kept.kind == FILE_DOC_TYPE and self._removal_ordered(doc_id, kept):
            self.store.delete_local(verified_key(doc_id))
            return "deletion-accepted"
        if kept.kind == TOMB_DOC_TYPE:
            age_ms = self.now_ms() - Tombstone.from_doc(kept_doc).created_ms
            if age_ms > MAX_TOMBSTONE_AGE_MS - CLOCK_SKEW_ALLOWANCE_MS:
                self.store.delete_local(verified_key(doc_id))
                return "deletion-accepted"
        self._restore(doc_id, kept_doc, "deleted without its owner's signed order")
        return "restored"

    def _kept(self, doc_id: str) -> tuple[Document | None, Verified | None]:
        kept = kept_revision(self.store, doc_id)
        return (None, None) if kept is None else kept

    def _removal_ordered(self, file_doc: str, file: Verified) -> bool:
        """True if the owner of ``file_doc`` signed a tombstone for it (kept or current)."""
        tomb_id = tomb_id_of_file(file_doc)
        for tomb_doc in (self.store.get(tomb_id), self.store.get_local(verified_key(tomb_id))):
            if tomb_doc is None:
                continue
            try:
                verify_tomb(tomb_id, tomb_doc, owner_key=file.signer)
            except UntrustedMetadata:
                continue
            return True
        return False

    def _restore(self, doc_id: str, kept_doc: Document, why: str) -> None:
        self.store.put(doc_id, kept_doc)
        self._warn(doc_id, "restored", "%s: %s; wrote back the last verified revision",
                   doc_id, why)

    def _warn(self, doc_id: str, what: str, fmt: str, *args: object) -> None:
        # Once per (document, kind of event): a dishonest peer must not flood the log.
        key = (doc_id, what)
        if key in self._warned:
            return
        if len(self._warned) < MAX_WARNED_IDS:
            self._warned.add(key)
        log.warning(fmt, *args)
