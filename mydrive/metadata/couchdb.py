"""CouchDB metadata store: the same interface as SQLite, over CouchDB's HTTP API (httpx).

Works against CouchDB 3 (compose) and pouchdb-server (local clusters, tests). Each peer talks to
its own server only; the servers replicate to each other (mydrive.metadata.replication). So a
document can come back with several live leaf revisions after a partition: every read applies
the conflict policy of mydrive.metadata.conflicts, so all peers see the same winner, and deletes
the losing leaves. Layout and policy: docs/metadata.md.

Errors: an unreachable server or a 5xx is MetadataUnavailable, refused credentials are
MetadataAuthFailed; both name the server (never the password) and what to check.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from mydrive.errors import BadRequest, Conflict, MetadataAuthFailed, MetadataUnavailable, TooLarge
from mydrive.metadata.base import Document, check_doc_id, encode_document
from mydrive.metadata.conflicts import Leaf, pick_winner
from mydrive.metadata.pins import pin_newer_revision

log = logging.getLogger("mydrive.metadata.couchdb")

DEFAULT_DB = "mydrive"
DEFAULT_TIMEOUT_S = 10.0
LIST_PAGE_DOCS = 500
MAX_LIST_DOCS = 1_000_000
MAX_WRITE_ATTEMPTS = 16  # 409s from concurrent writers of one document, then Conflict
MAX_WRITE_BACKOFF_S = 0.25
MAX_EARLIER_REVISIONS = 32  # earlier revisions the guard looks through (guard.py)
# Highest BMP code point that CouchDB and PouchDB collate after every printable id character.
_HIGH_KEY = "\ufff0"
# Sent on every request: CouchDB and pouchdb-server then answer JSON (never multipart) and
# stream continuous feeds unbuffered.
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}
# Members must be admins: CouchDB 3 has this by default; pouchdb-server needs it set.
# ``ensure_member`` then adds the one non-admin member replication uses.
_SECURITY = {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": ["_admin"]}}
MEMBER_DOC_PREFIX = "org.couchdb.user:"


def redact_url(url: str) -> str:
    """``url`` without user and password, for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Change:
    """One entry of a ``_changes`` feed."""

    seq: str
    doc_id: str
    deleted: bool
    doc: Document | None  # with CouchDB's _rev/_conflicts, as the server sent it
    conflicts: tuple[str, ...]


def strip_meta(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class CouchStore:
    """A MetadataStore on one CouchDB database. Thread-safe (httpx.Client is)."""

    def __init__(self, url: str, db: str = DEFAULT_DB, *, user: str = "", password: str = "",
                 timeout_s: float = DEFAULT_TIMEOUT_S, create: bool = True,
                 list_page_docs: int = LIST_PAGE_DOCS,
                 transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"CouchDB URL {redact_url(url)!r} must be http(s)://host:port")
        if not db or not db[0].isalpha() or not all(c.isalnum() or c in "_$()+-/" for c in db):
            raise BadRequest(f"bad CouchDB database name {db!r}")
        self.url = url.rstrip("/")
        self.db = db
        self.user = user
        assert list_page_docs >= 1
        self.list_page_docs = list_page_docs
        self._where = f"CouchDB at {redact_url(self.url)}"
        auth = httpx.BasicAuth(user, password) if user else None
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout,
                                  headers=_HEADERS, transport=transport)
        self._closed = threading.Event()
        self._random = random.Random()  # write back-off jitter only
        if create:
            self.ensure_database()

    # ---- HTTP ---------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                 body: Any = None, ok: tuple[int, ...] = (200, 201, 202)) -> httpx.Response:
        """One HTTP request to this server; a status outside ``ok`` raises a mydrive error."""
        content = None
        headers = {}
        if body is not None:
            content = body if isinstance(body, str) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, path, params=params, content=content,
                                          headers=headers)
        except httpx.TimeoutException as exc:
            raise MetadataUnavailable(f"{self._where} did not answer {method} in time "
                                      f"({type(exc).__name__}); is it overloaded?") from None
        except httpx.HTTPError as exc:
            raise MetadataUnavailable(f"{self._where} is unreachable ({type(exc).__name__}: "
                                      f"{exc}); is the metadata server running?") from None
        if response.status_code in ok:
            return response
        self._raise_for(response, method, path)

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> NoReturn:
        reason = _reason(response)
        if response.status_code == 401:
            raise MetadataAuthFailed(f"{self._where} refused the credentials of user "
                                     f"{self.user!r} (401 {reason}); check couchdb_user and "
                                     f"couchdb_password in peer.json")
        if response.status_code == 403:
            raise MetadataAuthFailed(f"{self._where}: user {self.user!r} may not {method} "
                                     f"{path} (403 {reason})")
        if response.status_code == 409:
            raise Conflict(f"{self._where}: {path} changed underneath this write ({reason})")
        if response.status_code == 413:
            raise TooLarge(f"{self._where} refused {path}: too large ({reason})")
        if response.status_code == 400:
            raise BadRequest(f"{self._where} rejected {method} {path}: {reason}")
        raise MetadataUnavailable(f"{self._where} answered {method} {path} with "
                                  f"{response.status_code} {reason}")

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise MetadataUnavailable(f"{self._where} sent a non-JSON answer "
                                      f"({response.status_code})") from None

    def _doc_path(self, doc_id: str) -> str:
        return f"/{self.db}/{quote(doc_id, safe='')}"

    def ensure_database(self) -> None:
        """Create the database (and restrict it to admins) unless it exists."""
        response = self.request("GET", f"/{self.db}", ok=(200, 404))
        if response.status_code == 404:
            self.request("PUT", f"/{self.db}", ok=(201, 202, 412))  # 412: created meanwhile
            self.request("PUT", f"/{self.db}/_security", body=_SECURITY)

    # ---- who may write: admins (this peer's services) and one member (replication) -----
    def ensure_member(self, user: str, password: str) -> None:
        """Make ``user`` (a non-admin) the database's only member, with ``password``.

        This peer's replicator writes what it pulls as the member, so a design document (code
        the server would run) can't arrive: only admins write those. This peer's nginx reads
        as the member for the other peers' pulls (docs/metadata.md). Needs admin rights.
        """
        if not user or not password:
            raise BadRequest("the CouchDB member user and password must be set (peer.json "
                             "couchdb_member_user / couchdb_member_password)")
        if not self._member_can_read(user, password):
            for db in ("_users",):  # CouchDB 3 starts without it; 412: it exists
                self.request("PUT", f"/{db}", ok=(201, 202, 412))
            doc_path = f"/_users/{quote(MEMBER_DOC_PREFIX + user, safe='')}"
            for attempt in range(MAX_WRITE_ATTEMPTS):
                current = self.request("GET", doc_path, ok=(200, 404))
                body: dict[str, Any] = {"_id": MEMBER_DOC_PREFIX + user, "name": user,
                                        "password": password, "roles": [], "type": "user"}
                if current.status_code == 200:
                    rev = self._json(current).get("_rev")
                    if isinstance(rev, str):
                        body["_rev"] = rev
                try:
                    self.request("PUT", doc_path, body=body, ok=(200, 201, 202))
                    break
                except Conflict:
                    self._backoff(attempt)
        security = {"admins": {"names": [], "roles": []},
                    "members": {"names": [user], "roles": ["_admin"]}}
        self.request("PUT", f"/{self.db}/_security", body=security)

    def _member_can_read(self, user: str, password: str) -> bool:
        try:
            response = self._http.get(f"/{self.db}/_security", auth=httpx.BasicAuth(
                user, password))
            security = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return False
        members = security.get("members", {}) if isinstance(security, dict) else {}
        names = members.get("names", []) if isinstance(members, dict) else []
        return isinstance(names, list) and names == [user]

    def remove_foreign(self, doc_id: str) -> bool:
        """Delete every live revision of a document mydrive never writes (a design document,
        an unknown kind) whatever its id; True if there was one. Needs admin rights."""
        found = False
        for _ in range(MAX_WRITE_ATTEMPTS):
            page = self._json(self.request("GET", f"/{self.db}/_all_docs",
                                           params={"key": json.dumps(doc_id)}))
            rows = page.get("rows") if isinstance(page, dict) else None
            row = rows[0] if isinstance(rows, list) and rows else None
            value = row.get("value") if isinstance(row, dict) else None
            rev = value.get("rev") if isinstance(value, dict) else None
            if not isinstance(rev, str) or (isinstance(value, dict) and value.get("deleted")):
                return found
            self._delete_revs(doc_id, [rev])
            found = True
        return found

    # ---- documents ----------------------------------------------------------------------
    def _get_raw(self, doc_id: str) -> Document | None:
        response = self.request("GET", self._doc_path(doc_id), params={"conflicts": "true"},
                                 ok=(200, 404))
        if response.status_code == 404:
            return None
        raw = self._json(response)
        if not isinstance(raw, dict) or not isinstance(raw.get("_rev"), str):
            raise MetadataUnavailable(f"{self._where} sent a malformed document for {doc_id!r}")
        return raw

    def get(self, doc_id: str) -> Document | None:
        check_doc_id(doc_id)
        raw = self._get_raw(doc_id)
        if raw is None:
            return None
        if raw.get("_conflicts"):
            return self.resolve(doc_id)
        return strip_meta(raw)

    def put(self, doc_id: str, doc: Document, *, create_only: bool = False) -> None:
        body = encode_document(doc_id, doc)
        if create_only:
            try:
                self.request("PUT", self._doc_path(doc_id), body=body, ok=(201, 202))
            except Conflict:
                raise Conflict(f"document {doc_id!r} already exists") from None
            return
        # The whole document replaces every live revision this server knows of.
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self._get_raw(doc_id)
            payload = dict(json.loads(body))
            if current is not None:
                payload["_rev"] = current["_rev"]
            try:
                self.request("PUT", self._doc_path(doc_id), body=payload, ok=(201, 202))
            except Conflict:
                # Another writer got in first: back off (jittered, so writers spread out),
                # read its revision and write again.
                self._backoff(attempt)
                continue
            if current is not None:
                self._delete_revs(doc_id, _conflict_revs(current))
            return
        raise Conflict(f"document {doc_id!r} kept changing; gave up after "
                       f"{MAX_WRITE_ATTEMPTS} attempts")

    def delete(self, doc_id: str) -> bool:
        check_doc_id(doc_id)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self._get_raw(doc_id)
            if current is None:
                return False
            try:
                self.request("DELETE", self._doc_path(doc_id),
                              params={"rev": current["_rev"]}, ok=(200, 202))
            except Conflict:
                self._backoff(attempt)
                continue
            self._delete_revs(doc_id, _conflict_revs(current))
            return True
        raise Conflict(f"document {doc_id!r} kept changing; gave up deleting after "
                       f"{MAX_WRITE_ATTEMPTS} attempts")

    def _backoff(self, attempt: int) -> None:
        time.sleep(self._random.uniform(0, min(MAX_WRITE_BACKOFF_S, 0.005 * 2**attempt)))

    def list_prefix(self, prefix: str) -> list[tuple[str, Document]]:
        out: list[tuple[str, Document]] = []
        params = {"include_docs": "true", "conflicts": "true",
                  "limit": str(self.list_page_docs),
                  "startkey": json.dumps(prefix), "endkey": json.dumps(prefix + _HIGH_KEY)}
        while True:
            page = self._json(self.request("GET", f"/{self.db}/_all_docs", params=params))
            rows = page.get("rows") if isinstance(page, dict) else None
            if not isinstance(rows, list):
                raise MetadataUnavailable(f"{self._where} sent a malformed _all_docs page")
            for row in rows:
                item = self._list_row(prefix, row)
                if item is not None:
                    out.append(item)
            if len(out) > MAX_LIST_DOCS:
                raise TooLarge(f"more than {MAX_LIST_DOCS} documents under {prefix!r}")
            if len(rows) < self.list_page_docs:
                break
            params["startkey"] = json.dumps(rows[-1].get("id"))
            params["skip"] = "1"
        out.sort(key=lambda item: item[0])
        return out

    def _list_row(self, prefix: str, row: Any) -> tuple[str, Document] | None:
        doc = row.get("doc") if isinstance(row, dict) else None
        doc_id = row.get("id") if isinstance(row, dict) else None
        if doc is None and isinstance(row, dict) and "id" in row:
            return None  # deleted
        if not isinstance(doc_id, str) or not isinstance(doc, dict):
            log.warning("%s: skipping malformed _all_docs row %.200r", self._where, row)
            return None
        if not doc_id.startswith(prefix):
            return None
        try:
            check_doc_id(doc_id)
        except BadRequest:
            log.warning("%s: skipping document with malformed id %r", self._where, doc_id)
            return None
        if doc.get("_conflicts"):
            try:
                winner = self.resolve(doc_id)
                return None if winner is None else (doc_id, winner)
            except MetadataUnavailable:
                raise
            except Exception:  # a replica's garbage must not stop a listing
                log.exception("%s: could not resolve conflicts of %r; skipped", self._where,
                              doc_id)
                return None
        return doc_id, strip_meta(doc)

    # ---- conflicts ----------------------------------------------------------------------
    def leaves(self, doc_id: str) -> list[Leaf]:
        """Every live leaf revision of ``doc_id`` on this server."""
        response = self.request("GET", self._doc_path(doc_id), params={"open_revs": "all"},
                                 ok=(200, 404))
        if response.status_code == 404:
            return []
        items = self._json(response)
        if not isinstance(items, list):
            raise MetadataUnavailable(f"{self._where} sent malformed open_revs for {doc_id!r}")
        out = []
        for item in items:
            doc = item.get("ok") if isinstance(item, dict) else None
            if not isinstance(doc, dict) or doc.get("_deleted"):
                continue
            rev = doc.get("_rev")
            if isinstance(rev, str):
                out.append(Leaf(rev=rev, body=strip_meta(doc)))
        return out

    def resolve(self, doc_id: str) -> Document | None:
        """Apply the conflict policy: delete every live leaf but the winner; return it."""
        live = self.leaves(doc_id)
        if not live:
            return None
        winner = pick_winner(doc_id, live)
        losers = [leaf.rev for leaf in live if leaf.rev != winner.rev]
        if losers:
            # The owner's newer revision must not vanish with the losers (pins.py).
            pin_newer_revision(self, doc_id, [leaf.body for leaf in live])
            log.info("%s: %r had %d live revisions; kept %s, deleting %s", self._where,
                     doc_id, len(live), winner.rev, ", ".join(losers))
            self._delete_revs(doc_id, losers)
        return winner.body

    def earlier_revisions(self, doc_id: str) -> list[Document]:
        """Bodies of the current revision's ancestors this server still holds, newest first
        (at most MAX_EARLIER_REVISIONS; replication brings only leaves, so these are the
        revisions that were current here at some point, until compaction)."""
        response = self.request("GET", self._doc_path(doc_id), params={"revs_info": "true"},
                                ok=(200, 404))
        if response.status_code == 404:
            return []
        raw = self._json(response)
        info = raw.get("_revs_info") if isinstance(raw, dict) else None
        if not isinstance(info, list):
            return []
        revs = [item["rev"] for item in info[1:]
                if isinstance(item, dict) and item.get("status") == "available"
                and isinstance(item.get("rev"), str)][:MAX_EARLIER_REVISIONS]
        out = []
        for rev in revs:
            body = self.request("GET", self._doc_path(doc_id), params={"rev": rev},
                                ok=(200, 404))
            doc = self._json(body) if body.status_code == 200 else None
            if isinstance(doc, dict) and not doc.get("_deleted"):
                out.append(strip_meta(doc))
        return out

    def _delete_revs(self, doc_id: str, revs: list[str]) -> None:
        if not revs:
            return
        docs = [{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in revs]
        try:
            self.request("POST", f"/{self.db}/_bulk_docs", body={"docs": docs})
        except (Conflict, BadRequest) as exc:
            # Another peer resolved the same conflict first; its deletions replicate here.
            log.info("%s: deleting losing revisions of %r: %s", self._where, doc_id, exc)

    # ---- local documents (``_local/``: never replicated, not in _all_docs or _changes) ---
    def _local_path(self, key: str) -> str:
        check_doc_id(key)
        return f"/{self.db}/_local/{quote(key, safe='')}"

    def _get_local_raw(self, key: str) -> Document | None:
        response = self.request("GET", self._local_path(key), ok=(200, 404))
        if response.status_code == 404:
            return None
        raw = self._json(response)
        if not isinstance(raw, dict):
            raise MetadataUnavailable(f"{self._where} sent a malformed local document {key!r}")
        return raw

    def get_local(self, key: str) -> Document | None:
        raw = self._get_local_raw(key)
        return None if raw is None else strip_meta(raw)

    def put_local(self, key: str, doc: Document) -> None:
        body = encode_document(key, doc)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self._get_local_raw(key)
            payload = dict(json.loads(body))
            if current is not None and isinstance(current.get("_rev"), str):
                payload["_rev"] = current["_rev"]
            try:
                self.request("PUT", self._local_path(key), body=payload, ok=(200, 201, 202))
                return
            except Conflict:
                self._backoff(attempt)
        raise Conflict(f"local document {key!r} kept changing; gave up after "
                       f"{MAX_WRITE_ATTEMPTS} attempts")

    def delete_local(self, key: str) -> bool:
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self._get_local_raw(key)
            if current is None:
                return False
            try:
                self.request("DELETE", self._local_path(key),
                             params={"rev": str(current.get("_rev", ""))}, ok=(200, 202, 404))
                return True
            except Conflict:
                self._backoff(attempt)
        raise Conflict(f"local document {key!r} kept changing; gave up deleting after "
                       f"{MAX_WRITE_ATTEMPTS} attempts")

    # ---- changes ------------------------------------------------------------------------
    def changes(self, since: str = "0", *, limit: int = 1000) -> tuple[list[Change], str]:
        """One page of the ``_changes`` feed after ``since``: (changes, last_seq)."""
        params = {"since": since, "limit": str(limit), "style": "all_docs",
                  "include_docs": "true", "conflicts": "true"}
        page = self._json(self.request("GET", f"/{self.db}/_changes", params=params))
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list):
            raise MetadataUnavailable(f"{self._where} sent a malformed _changes page")
        out = [c for c in (self._parse_change(r) for r in results) if c is not None]
        return out, _seq(page.get("last_seq", since))

    def _parse_change(self, row: Any) -> Change | None:
        if not isinstance(row, dict):
            log.warning("%s: skipping malformed change %.200r", self._where, row)
            return None
        if "last_seq" in row and "id" not in row:
            return None  # the end of a continuous feed
        doc_id, doc = row.get("id"), row.get("doc")
        if not isinstance(doc_id, str) or (doc is not None and not isinstance(doc, dict)):
            log.warning("%s: skipping malformed change %.200r", self._where, row)
            return None
        conflicts = doc.get("_conflicts", []) if isinstance(doc, dict) else []
        if not isinstance(conflicts, list):
            conflicts = []
        return Change(seq=_seq(row.get("seq")), doc_id=doc_id,
                      deleted=bool(row.get("deleted")), doc=doc,
                      conflicts=tuple(str(r) for r in conflicts))

    def close(self) -> None:
        self._closed.set()
        self._http.close()


def _conflict_revs(raw: Document) -> list[str]:
    revs = raw.get("_conflicts") or []
    return [r for r in revs if isinstance(r, str)] if isinstance(revs, list) else []


def _seq(value: Any) -> str:
    # CouchDB 3 sends opaque strings, pouchdb-server integers; both go back as text.
    return value if isinstance(value, str) else json.dumps(value)


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):
        return f"{data.get('error', '')}: {data.get('reason', '')}"[:200]
    return str(data)[:200]
