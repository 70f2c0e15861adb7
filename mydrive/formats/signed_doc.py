"""The signed metadata document: the canonical bytes an owner signs, and the signature field.

Metadata documents replicate through every peer, and every peer may be dishonest, so a
``user:``, ``file:`` or ``tomb:`` document is trusted only if its owner signed all of it. This
module owns the byte format of that signature (docs/metadata.md, "Signed documents"):

    signed bytes = b"mydrive-signed-doc-v1" || 0x00 || UTF-8 document id || 0x00
                   || canonical JSON of the document without its "signature" field

and the field itself, ``"signature": {"version": 1, "alg": "ed25519", "public_key": hex,
"value": hex}``. The document id is signed too, so a body moved under another id fails.

Canonical JSON: objects with keys sorted by code point, no whitespace, every non-ASCII
character as a ``\\uXXXX`` escape; integers only (within +-(2^53 - 1), what a JavaScript
CouchDB server keeps exact), never floats; at most 32 levels deep. A document that can't be
put in this form can't be signed, and one that arrives in another form (a float, a huge
integer) simply fails verification.

Pure data: signing and verifying with Ed25519 happen in ``mydrive.metadata.signed``.
Nothing here writes anything, so a crash leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mydrive.errors import UntrustedMetadata

CONTEXT = b"mydrive-signed-doc-v1"
SIGNATURE_FIELD = "signature"
SIGNATURE_VERSION = 1
SIGNATURE_ALG = "ed25519"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32
MAX_CANONICAL_BYTES = 16 * 1024 * 1024  # the metadata store's own document limit


@dataclass(frozen=True)
class DocSignature:
    """Who signed a document (an Ed25519 public key) and the signature bytes."""

    public_key: bytes
    value: bytes

    def to_json(self) -> dict[str, Any]:
        return {"version": SIGNATURE_VERSION, "alg": SIGNATURE_ALG,
                "public_key": self.public_key.hex(), "value": self.value.hex()}

    @classmethod
    def from_json(cls, doc_id: str, value: object) -> DocSignature:
        if not isinstance(value, Mapping):
            raise UntrustedMetadata(f"{doc_id}: its signature field is not an object")
        if value.get("version") != SIGNATURE_VERSION or value.get("alg") != SIGNATURE_ALG:
            raise UntrustedMetadata(
                f"{doc_id}: unsupported signature (version {value.get('version')!r:.20}, "
                f"alg {value.get('alg')!r:.20}); expected version 1, ed25519")
        public_key = _hex(doc_id, value.get("public_key"), PUBLIC_KEY_BYTES, "public key")
        signature = _hex(doc_id, value.get("value"), SIGNATURE_BYTES, "signature")
        return cls(public_key=public_key, value=signature)


def _hex(doc_id: str, value: object, length: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != length:
        raise UntrustedMetadata(f"{doc_id}: the signature's {what} is not {length} bytes of hex")
    return raw


def _check(value: object, depth: int) -> None:
    """Raise ValueError unless ``value`` is JSON of the canonical subset."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside +-(2^53 - 1)")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r:.40} is not a string")
            _check(item, depth + 1)
        return
    raise ValueError(f"{type(value).__name__} values are not canonical JSON")


def canonical_json(value: object) -> bytes:
    """The canonical JSON bytes of ``value``; ValueError if it has no canonical form."""
    _check(value, 0)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    if len(text) > MAX_CANONICAL_BYTES:
        raise ValueError(f"canonical form is {len(text)} bytes, limit {MAX_CANONICAL_BYTES}")
    return text.encode("ascii")


def signing_bytes(doc_id: str, doc: Mapping[str, Any]) -> bytes:
    """What the owner signs for ``doc`` stored under ``doc_id`` (its signature left out).

    UntrustedMetadata if the document has no canonical form (it then cannot verify).
    """
    if not isinstance(doc_id, str) or not doc_id or "\x00" in doc_id:
        raise UntrustedMetadata(f"document id {doc_id!r:.80} can't be signed")
    if not isinstance(doc, Mapping):
        raise UntrustedMetadata(f"{doc_id}: the document is not a JSON object")
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    try:
        canonical = canonical_json(body)
    except ValueError as exc:
        raise UntrustedMetadata(f"{doc_id}: not canonical JSON ({exc})") from None
    return CONTEXT + b"\x00" + doc_id.encode("utf-8") + b"\x00" + canonical


def read_signature(doc_id: str, doc: Mapping[str, Any]) -> DocSignature:
    """The document's signature field, parsed; UntrustedMetadata if absent or malformed."""
    if not isinstance(doc, Mapping) or SIGNATURE_FIELD not in doc:
        raise UntrustedMetadata(f"{doc_id} is not signed by its owner")
    return DocSignature.from_json(doc_id, doc[SIGNATURE_FIELD])


def attach(doc: Mapping[str, Any], signature: DocSignature) -> dict[str, Any]:
    """A copy of ``doc`` carrying ``signature`` (any earlier one replaced)."""
    return {**{k: v for k, v in doc.items() if k != SIGNATURE_FIELD},
            SIGNATURE_FIELD: signature.to_json()}
