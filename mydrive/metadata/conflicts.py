"""The deterministic conflict policy for replicated metadata documents.

Two peers that write the same document while they cannot replicate (a partition, a passphrase
rotated on both sides), or a dishonest peer writing its own revision, leave CouchDB with
several leaf revisions of it. Every peer picks the same winner from the same set of leaves,
without talking to anyone:

    highest (valid, updated_ms, revision generation, revision hash)

``valid``: for the owner-signed kinds (``user:``, ``file:``, ``tomb:``) a leaf counts only if
its owner's signature verifies (mydrive.metadata.signed; needs nothing but the leaf, so every
peer agrees), so an unsigned, tampered or wrongly signed leaf never wins over a valid one,
whatever its ``updated_ms`` or revision. Other kinds (``peer:``) count as valid here.
``updated_ms`` is the document's own field (an integer; absent, malformed or on an invalid
leaf it counts as 0), so the latest signed write wins and the revision id breaks ties
identically everywhere. Deleted leaves never win over a live one. The losers are then deleted
(see docs/metadata.md). Which *key* a user name belongs to is not decided here but by each
peer's pin (mydrive.metadata.guard): the policy must give every peer the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mydrive.metadata.base import Document
from mydrive.metadata.signed import SIGNED_KINDS, is_valid

log = logging.getLogger("mydrive.metadata.conflicts")


@dataclass(frozen=True)
class Leaf:
    rev: str
    body: Document


def updated_ms(doc_id: str, body: Document) -> int:
    value = body.get("updated_ms", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        log.warning("document %r revision has malformed updated_ms %r; counted as 0",
                    doc_id, value)
        return 0
    return value


def rev_key(rev: str) -> tuple[int, str]:
    """CouchDB revision ``N-hash`` as (generation, hash); a malformed one sorts lowest."""
    generation, _, digest = rev.partition("-")
    try:
        return int(generation), digest
    except ValueError:
        return -1, rev


def validity(doc_id: str, body: Document) -> int:
    """1 if the leaf may win (validly signed, or of a kind that is not signed), else 0."""
    if doc_id.partition(":")[0] not in SIGNED_KINDS:
        return 1
    return 1 if is_valid(doc_id, body) else 0


def policy_key(doc_id: str, leaf: Leaf) -> tuple[int, int, int, str]:
    generation, digest = rev_key(leaf.rev)
    valid = validity(doc_id, leaf.body)
    return valid, updated_ms(doc_id, leaf.body) if valid else 0, generation, digest


def pick_winner(doc_id: str, leaves: Sequence[Leaf]) -> Leaf:
    """The leaf every replica keeps: highest (valid, updated_ms, generation, hash)."""
    assert leaves, "a document with conflicts has at least one live leaf"
    return max(leaves, key=lambda leaf: policy_key(doc_id, leaf))
