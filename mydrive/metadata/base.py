"""The metadata store interface: JSON documents by id, the same shape on every backend.

Document ids are ``peer:<id>``, ``user:<name>``, ``file:<id>`` and ``tomb:<id>`` (see
docs/metadata.md); local documents, which never replicate, sit beside them.
Every backend passes tests/contract/test_store_contract.py.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from mydrive.errors import BadRequest, TooLarge

Document = dict[str, Any]

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # a file doc for a 1 TiB file stays well below this
MAX_DOC_ID_CHARS = 512


def check_doc_id(doc_id: str) -> None:
    """Raise BadRequest unless ``doc_id`` is ``kind:key`` (not starting with ``_``)."""
    if (not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_DOC_ID_CHARS
            or ":" not in doc_id or doc_id.startswith("_")):
        raise BadRequest(f"bad document id {doc_id!r:.80}: expected 'kind:key', at most "
                         f"{MAX_DOC_ID_CHARS} chars, not starting with '_'")


def encode_document(doc_id: str, doc: Document) -> str:
    """The canonical JSON text of ``doc``; checks the id, the size and reserved keys."""
    check_doc_id(doc_id)
    if not isinstance(doc, dict):
        raise BadRequest(f"document {doc_id!r} must be a JSON object")
    reserved = sorted(k for k in doc if not isinstance(k, str) or k.startswith("_"))
    if reserved:
        raise BadRequest(f"document {doc_id!r}: top-level keys may not start with '_' "
                         f"(reserved by CouchDB): {reserved[:5]}")
    try:
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"document {doc_id!r} is not plain JSON: {exc}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise TooLarge(f"metadata document {doc_id!r} is {len(body)} bytes, "
                       f"limit {MAX_DOCUMENT_BYTES}")
    return body


class MetadataStore(Protocol):
    def get(self, doc_id: str) -> Document | None:
        """The document, or None when absent."""
        ...

    def put(self, doc_id: str, doc: Document, *, create_only: bool = False) -> None:
        """Write the whole document atomically; ``create_only`` raises Conflict if it exists."""
        ...

    def delete(self, doc_id: str) -> bool:
        """Remove the document; True if it existed."""
        ...

    def list_prefix(self, prefix: str) -> list[tuple[str, Document]]:
        """All documents whose id starts with ``prefix``, ordered by id."""
        ...

    # Local documents: this peer's own notes about the replicated ones (the last verified
    # revision of each signed document, docs/metadata.md). Never replicated, never listed.
    def get_local(self, key: str) -> Document | None:
        """The local document ``key`` (``kind:key`` like a document id), or None."""
        ...

    def put_local(self, key: str, doc: Document) -> None:
        """Write the local document ``key`` whole, replacing any earlier one."""
        ...

    def delete_local(self, key: str) -> bool:
        """Remove the local document ``key``; True if it existed."""
        ...

    def close(self) -> None: ...
