"""The deterministic conflict policy for replicated metadata documents.

Two peers that write the same document while they cannot replicate (a partition, a passphrase
rotated on both sides) leave CouchDB with several leaf revisions of it. Every peer picks the
same winner from the same set of leaves, without talking to anyone:

    highest (updated_ms, revision generation, revision hash)

``updated_ms`` is the document's own field (an integer; absent or malformed counts as 0), so
the latest write by wall clock wins and the revision id breaks ties identically everywhere.
Deleted leaves never win over a live one. The losers are then deleted (see docs/metadata.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mydrive.metadata.base import Document

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


def policy_key(doc_id: str, leaf: Leaf) -> tuple[int, int, str]:
    generation, digest = rev_key(leaf.rev)
    return updated_ms(doc_id, leaf.body), generation, digest


def pick_winner(doc_id: str, leaves: Sequence[Leaf]) -> Leaf:
    """The leaf every replica keeps: highest (updated_ms, generation, hash)."""
    assert leaves, "a document with conflicts has at least one live leaf"
    return max(leaves, key=lambda leaf: policy_key(doc_id, leaf))
