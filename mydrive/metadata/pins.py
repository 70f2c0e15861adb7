"""This peer's pins: the last verified revision of each owner-signed document it has seen.

A pin is a local document ``verified:<doc id>`` (mydrive.metadata.signed.verified_key; never
replicated). The guard (mydrive.metadata.guard) keeps it up to date and writes it back over
revisions that must not take effect; gc falls back to it for a tombstone a replica damaged;
a store that resolves conflicts (mydrive.metadata.couchdb) moves it forward before it
deletes the losing leaves. Here only what they share: reading a pin, and moving it forward.
Nothing here decides what a revision may do; that is the guard's.
"""

from __future__ import annotations

import logging

from mydrive.errors import BadRequest, UntrustedMetadata
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.signed import SIGNED_KINDS, Verified, verified_key, verify

log = logging.getLogger("mydrive.metadata.pins")


def kept_revision(store: MetadataStore, doc_id: str) -> tuple[Document, Verified] | None:
    """The pin of ``doc_id`` and what it says, checked again; None when there is none. A pin
    that no longer verifies (our own copy: a bug or a damaged disk) is logged and dropped,
    so the next valid revision the guard reviews becomes the pin."""
    kept_doc = store.get_local(verified_key(doc_id))
    if kept_doc is None:
        return None
    try:
        return kept_doc, verify(doc_id, kept_doc)
    except (UntrustedMetadata, BadRequest) as exc:
        log.error("%s: the local verified copy does not verify (%s); dropped", doc_id, exc)
        store.delete_local(verified_key(doc_id))
        return None


def pin_newer_revision(store: MetadataStore, doc_id: str, bodies: list[Document]) -> bool:
    """A valid revision among ``bodies`` signed by the key this peer pinned for ``doc_id``
    and newer than the pin becomes the pin. True if one did.

    Used where the owner's newer revision would otherwise pass unseen: among the losing
    leaves of a conflict, before the policy deletes them (the policy decides from the leaves
    alone, so a dishonest member's own user document with a larger ``updated_ms``, forked
    beside the owner's passphrase rotation, wins in the store); and among the earlier
    revisions of a user document signed by another key (the member wrote its own on top of
    the rotation before this peer's supervisor reviewed it). Without this the peer would keep
    the old pin, and its readers the old passphrase. Only the local pin changes (never
    replicated), so no two peers can write against each other.
    """
    if doc_id.partition(":")[0] not in SIGNED_KINDS:
        return False
    pinned = kept_revision(store, doc_id)
    if pinned is None:
        return False
    kept = pinned[1]
    best: tuple[int, Document] | None = None
    for body in bodies:
        try:
            leaf = verify(doc_id, body)
        except (UntrustedMetadata, BadRequest):
            continue
        if leaf.signer == kept.signer and leaf.updated_ms > kept.updated_ms and (
                best is None or leaf.updated_ms > best[0]):
            best = (leaf.updated_ms, body)
    if best is None:
        return False
    store.put_local(verified_key(doc_id), best[1])
    log.info("%s: pinned the owner's newer revision (from a conflict's leaves or its "
             "earlier revisions)", doc_id)
    return True
