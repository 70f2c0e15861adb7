"""The metadata store interface: JSON documents by id, the same shape on every backend.

Document ids are ``peer:<id>``, ``user:<name>`` and ``file:<id>`` (see docs/metadata.md).
Every backend passes tests/contract/test_store_contract.py.
"""

from __future__ import annotations

from typing import Any, Protocol

Document = dict[str, Any]

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # a file doc for a 1 TiB file stays well below this


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

    def close(self) -> None: ...
