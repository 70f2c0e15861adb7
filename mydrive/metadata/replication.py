"""Master-master replication between the peers' CouchDB servers, and its supervision.

Every peer's server *pulls* from every other peer's server: one continuous replication per
other peer, declared as a document ``mydrive-pull-<peer id>-<generation>`` in its own
``_replicator`` database, so the server itself runs it and resumes it after a restart.
N peers pulling from each other is master-master replication among all of them.

Every other peer may be dishonest (docs/security.md), so a pull is read-only and can't
carry code: it is made only from peers whose ``peer:`` documents verify
(mydrive.formats.peerdoc); the source is read through that peer's nginx, which admits the
pull protocol's reads only, without any credentials of ours; what arrives is written as this
peer's database *member*, never an admin, so the server itself refuses design documents (the
only place CouchDB and pouchdb-server run stored code); and the supervisor deletes, as they
arrive, design documents and documents of kinds mydrive never writes.

CouchDB (and pouchdb-server) retry a failing replication with growing back-off, so after an
outage a returning peer could wait minutes for its updates. The supervisor watches the other
peers' servers; when one comes back it replaces (kicks) the pull document for it, which makes
the server restart that replication at once. It also follows the ``_changes`` feed and applies
the conflict policy (mydrive.metadata.conflicts) to every document that arrives with conflicts,
logs and skips malformed documents from replicas, and has the guard (mydrive.metadata.guard)
review every owner-signed document that changed. See docs/metadata.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from mydrive.errors import MetadataUnavailable, MydriveError
from mydrive.formats.peerdoc import PeerTrust, accept_peer_documents, verify_peer_document
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.couchdb import Change, CouchStore, redact_url
from mydrive.metadata.guard import MetadataGuard

log = logging.getLogger("mydrive.metadata.replication")

REPLICATOR_DB = "_replicator"
PULL_PREFIX = "mydrive-pull-"
MAX_REMOTE_PEERS = 1024
PROBE_TIMEOUT_S = 1.0
KNOWN_KINDS = ("peer", "user", "file", "tomb", "crl")  # crl: mydrive.node.revocation


@dataclass(frozen=True)
class RemotePeer:
    peer_id: str
    couchdb_url: str  # its server as other peers reach it (no credentials)


def with_credentials(url: str, user: str, password: str) -> str:
    if not user:
        return url
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def remote_peers(store: CouchStore, *, local_peer_id: str,
                 reach: Callable[[str, str], str] | None = None,
                 trust: PeerTrust | None = None) -> list[RemotePeer]:
    """The other peers that run a metadata server, from the ``peer:`` documents that verify
    (``trust``: this peer's network CA; mydrive.formats.peerdoc logs and skips the rest).

    ``reach`` turns a peer's published URL into the one this peer dials (behind nginx:
    through the local egress listener, which adds mutual TLS and checks that the server's
    certificate names that peer id; see docs/tls.md).
    """
    out = []
    for peer in accept_peer_documents(store.list_prefix("peer:"), trust):
        if peer.couchdb_url is None or peer.peer_id == local_peer_id:
            continue  # a peer on SQLite (nothing to replicate with), or ourselves
        url = peer.couchdb_url.rstrip("/")
        out.append(RemotePeer(peer_id=peer.peer_id,
                              couchdb_url=reach(url, peer.peer_id) if reach else url))
    if len(out) > MAX_REMOTE_PEERS:
        log.warning("%d peers with a metadata server; replicating with the first %d",
                    len(out), MAX_REMOTE_PEERS)
    return out[:MAX_REMOTE_PEERS]


class Replicator:
    """This peer's pull replications, as documents in its own server's ``_replicator``.

    ``member_user``/``member_password``: the database's member (not admin) as whom pulled
    documents are written here. With ``tls`` a source is read through its peer's nginx,
    which reads as *its* member, so the source URL carries no credentials (ours would be
    handed to that peer); without TLS (a local test network) the peers share one member
    password and pull from one another's servers directly with it. ``trust``: whose peer
    documents count (None without TLS).
    """

    def __init__(self, local: CouchStore, *, member_user: str, member_password: str,
                 tls: bool = False, trust: PeerTrust | None = None,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.local = local
        self._user = member_user
        self._password = member_password
        self.tls = tls
        self.trust = trust
        self._now_ms = now_ms
        self._generation = 0

    def _path(self, doc_id: str = "") -> str:
        return f"/{REPLICATOR_DB}/{quote(doc_id, safe='')}" if doc_id else f"/{REPLICATOR_DB}"

    def desired(self, remote: RemotePeer) -> Document:
        db = self.local.db
        source = f"{remote.couchdb_url}/{db}"
        if not self.tls:
            source = with_credentials(source, self._user, self._password)
        return {
            "source": source,
            "target": with_credentials(f"{self.local.url}/{db}", self._user, self._password),
            "continuous": True,
            # The source is read-only to us: checkpoints only on the target (pouchdb), or
            # none at all (CouchDB 3, which can't checkpoint on one side only).
            "checkpoint": "target",
            "use_checkpoints": False,
            "mydrive_peer_id": remote.peer_id,
        }

    def current(self) -> dict[str, list[Document]]:
        """The pull documents now in ``_replicator``, by remote peer id, oldest first."""
        params = {"include_docs": "true", "startkey": f'"{PULL_PREFIX}"',
                  "endkey": f'"{PULL_PREFIX}\ufff0"'}
        page = self.local.request("GET", f"{self._path()}/_all_docs", params=params).json()
        out: dict[str, list[Document]] = {}
        for row in page.get("rows", []) if isinstance(page, dict) else []:
            doc = row.get("doc") if isinstance(row, dict) else None
            if isinstance(doc, dict) and isinstance(doc.get("mydrive_peer_id"), str):
                out.setdefault(doc["mydrive_peer_id"], []).append(doc)
        for docs in out.values():
            docs.sort(key=lambda d: (d.get("generation", 0), str(d.get("_id"))))
        return out

    def ensure(self, remotes: list[RemotePeer]) -> list[str]:
        """Make ``_replicator`` pull from exactly ``remotes``; the peer ids (re)started."""
        existing = self.current()
        started = []
        for remote in remotes:
            docs = existing.pop(remote.peer_id, [])
            newest = docs[-1] if docs else None
            if newest is not None and _same(newest, self.desired(remote)) and newest.get(
                    "_replication_state") not in ("error", "failed", "completed"):
                self._delete(docs[:-1])
                continue
            self._start(remote, docs)
            started.append(remote.peer_id)
        for docs in existing.values():  # peers no longer known
            self._delete(docs)
        if started:
            log.info("replication from %s (re)started", ", ".join(started))
        return started

    def kick(self, remote: RemotePeer) -> None:
        """Restart the pull from ``remote`` now, skipping the server's retry back-off."""
        self._start(remote, self.current().get(remote.peer_id, []))
        log.info("replication from %s kicked (its server is back)", remote.peer_id)

    def remove_all(self) -> None:
        for docs in self.current().values():
            self._delete(docs)

    def _start(self, remote: RemotePeer, old: list[Document]) -> None:
        # A new document (new id, new generation) starts a new replication job on CouchDB 3
        # and on pouchdb-server alike; pouchdb-server refuses edits of a running job's
        # document and ignores a re-created id, so documents are never edited or reused.
        self._generation = max([self._generation + 1, self._now_ms()]
                               + [int(d.get("generation", 0)) + 1 for d in old])
        doc_id = f"{PULL_PREFIX}{remote.peer_id}-{self._generation}"
        body = {**self.desired(remote), "generation": self._generation}
        self.local.request("PUT", self._path(doc_id), body=body, ok=(200, 201, 202))
        self._delete(old)

    def _delete(self, docs: list[Document]) -> None:
        for doc in docs:
            self.local.request("DELETE", self._path(str(doc["_id"])),
                               params={"rev": str(doc["_rev"])}, ok=(200, 202, 404, 409))


def _same(have: Document, want: Document) -> bool:
    # CouchDB 3 hides passwords in what it returns, so compare the URLs without them.
    def norm(value: Any) -> Any:
        return redact_url(value) if isinstance(value, str) else value

    return all(norm(have.get(k)) == norm(v) for k, v in want.items())


def check_shape(change: Change) -> str | None:
    """Why a replicated document is malformed (logged and skipped by readers), or None."""
    if change.deleted or change.doc is None:
        return None
    kind, _, key = change.doc_id.partition(":")
    if kind not in KNOWN_KINDS:
        return None if change.doc_id.startswith("_design/") else f"unknown kind {kind!r:.40}"
    if not key:
        return "empty key"
    if change.doc.get("type") != kind:
        return f"type {change.doc.get('type')!r:.40} does not match its id"
    if not isinstance(change.doc.get("version"), int):
        return "no integer version"
    return None


class ReplicationSupervisor:
    """Keeps this peer's pulls in line with the known peers, kicks returning peers, and
    resolves conflicts as they replicate in. ``run`` never raises: a peer stays up whatever
    its metadata server or the replicas send."""

    def __init__(self, store: CouchStore, replicator: Replicator, *, local_peer_id: str,
                 probe: Callable[[str], bool] | None = None,
                 reach: Callable[[str, str], str] | None = None,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 on_change: Callable[[str], None] | None = None) -> None:
        """``on_change(doc id)``: told of every change that replicated in or was written
        here, after the checks below (the node layer adopts a new revocation list)."""
        self.reach = reach
        self.on_change = on_change
        self.store = store
        self.replicator = replicator
        self.local_peer_id = local_peer_id
        self._probe = probe or _probe
        self._up: dict[str, bool] = {}
        self.since = "0"
        self.malformed: dict[str, str] = {}  # doc id -> reason, bounded below
        self.guard = MetadataGuard(store, now_ms=now_ms)

    def step(self) -> None:
        """One round: ensure pulls, kick the peers that came back, resolve conflicts."""
        remotes = remote_peers(self.store, local_peer_id=self.local_peer_id, reach=self.reach,
                               trust=self._peer_trust())
        self.replicator.ensure(remotes)
        for remote in remotes:
            up = self._probe(remote.couchdb_url)
            was_up = self._up.get(remote.peer_id)
            self._up[remote.peer_id] = up
            if up and was_up is False:
                self.replicator.kick(remote)
        self.catch_up()

    def catch_up(self, *, max_pages: int = 100) -> None:
        """Read ``_changes`` since the last round; resolve conflicts, note malformed docs."""
        for _ in range(max_pages):
            changes, last_seq = self.store.changes(self.since, limit=500)
            for change in changes:
                if not self.refuse_foreign(change):
                    keep_peer_document(self.store, change.doc_id, self._peer_trust())
                    self.handle(change)
                    if self.on_change is not None:
                        self.on_change(change.doc_id)
            self.since = last_seq
            if not changes:
                return

    def _peer_trust(self) -> PeerTrust | None:
        # Whose peer documents count: the replicator's (tests may run without one).
        return None if self.replicator is None else self.replicator.trust

    def refuse_foreign(self, change: Change) -> bool:
        """Delete a document mydrive never writes (a design document: code the server would
        run; a kind it doesn't know) as soon as it shows up; True if ``change`` was one.

        Pulled documents are written as a member, so design documents can't arrive; this
        catches whatever got in anyway (an admin's hand, an older version)."""
        kind, sep, _ = change.doc_id.partition(":")
        if change.deleted or (sep and kind in KNOWN_KINDS):
            return False
        if change.doc_id.startswith("_local/"):
            return True  # never replicated; not a document of the database's content
        level = logging.ERROR if change.doc_id.startswith("_design/") else logging.WARNING
        if self.store.remove_foreign(change.doc_id):
            log.log(level, "deleted %r from the metadata database: mydrive never writes such "
                    "documents (design documents hold code the server would run)",
                    change.doc_id[:80])
        return True

    def handle(self, change: Change) -> None:
        reason = check_shape(change)
        if reason is not None:
            if change.doc_id not in self.malformed:
                log.warning("malformed document %r from a replica, skipped: %s",
                            change.doc_id, reason)
            if len(self.malformed) < 10_000:
                self.malformed[change.doc_id] = reason
        elif change.conflicts:
            self.store.resolve(change.doc_id)
        # Owner-signed kinds, malformed or not: keep the last verified revision, write it
        # back over what no owner signed, allow deletions only by tombstone (guard.py).
        self.guard.review(change.doc_id)

    def run(self, stop: threading.Event, *, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.step()
            except MydriveError as exc:
                log.warning("replication supervisor: %s", exc)
            except Exception:
                log.exception("replication supervisor round failed; trying again")
            stop.wait(interval_s)


KEPT_PEER_PREFIX = "kept-peer:"  # local document: the last verified revision of a peer


def keep_peer_document(store: MetadataStore, doc_id: str, trust: PeerTrust | None) -> str:
    """Keep the last verified revision of a ``peer:`` document and put it back when a
    replica replaces it with one that doesn't verify, with an older one, or deletes it.

    Readers already skip a document that doesn't verify; without this, a dishonest member
    that overwrites another peer's document in its own database (a newer revision, so no
    conflict) would make every reader drop that peer. The kept revision is a local document
    ``kept-peer:<id>`` (never replicated); the revision written back replicates like any
    write. A verified revision with an ``updated_ms`` at least the kept one's is the new kept
    revision, so peers that disagree converge on the newest verified one. Returns what it did.
    """
    if not doc_id.startswith("peer:"):
        return "not-a-peer"
    key = KEPT_PEER_PREFIX + doc_id.removeprefix("peer:")
    try:
        kept = store.get_local(key)
        current = store.get(doc_id)
        if current is not None:
            try:
                peer = verify_peer_document(current, trust, doc_id=doc_id)
            except MydriveError:
                peer = None
            newer = kept is None or peer is not None and peer.updated_ms >= int(
                kept.get("updated_ms", 0))
            if peer is not None and newer:
                if current != kept:
                    store.put_local(key, current)
                return "kept"
        if kept is None or current == kept:
            return "nothing-kept"
        store.put(doc_id, kept)
    except MetadataUnavailable:
        raise
    except MydriveError as exc:  # a replica's garbage must not stop the supervisor
        log.warning("peer document %r: %s", doc_id[:80], exc)
        return "error"
    log.warning("peer document %r was replaced by one that does not verify, an older one, "
                "or a deletion; wrote the last verified revision back", doc_id[:80])
    return "restored"


def _probe(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=PROBE_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False
