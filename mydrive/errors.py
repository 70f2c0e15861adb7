"""Errors that reach users. Each names what went wrong precisely; none leaks secrets.

Exceptions are for what comes from outside (input, peers, disks); asserts are for our own bugs.
The gRPC servicers map these classes to status codes (see ``mydrive.transport.status``).
"""

from __future__ import annotations


class MydriveError(Exception):
    """Base class of every error mydrive reports to a user or a remote peer."""

    exit_code = 1


class BadRequest(MydriveError):
    """Malformed or out-of-range input (a request, a name, an option)."""

    exit_code = 2


class PathTraversal(BadRequest):
    """A file name or path that would escape its directory or is not a clean relative path."""


class TooLarge(MydriveError):
    """A message, chunk or request exceeds a configured limit."""

    exit_code = 2


class PeerBusy(TooLarge):
    """A peer runs as many uploads as it allows (from the caller, or in all): try another.
    RESOURCE_EXHAUSTED on the wire, like TooLarge, so the uploader fails over."""


class WrongPassphrase(MydriveError):
    """The passphrase did not unwrap the user's master key."""

    exit_code = 3


class UnknownUser(MydriveError):
    """No such user in this peer's metadata."""

    exit_code = 3


class UserExists(MydriveError):
    """A user of that name already exists."""

    exit_code = 3


class UnknownFile(MydriveError):
    """No such file for this user."""

    exit_code = 4


class FileExists(MydriveError):
    """A file is already stored at that remote path."""

    exit_code = 4


class TooFewPeers(MydriveError):
    """Not enough eligible peers to place a file's chunks under the placement rules."""

    exit_code = 5

    def __init__(self, eligible_peers: int, replicas: int, chunks: int, reason: str = "") -> None:
        self.eligible_peers = eligible_peers
        self.replicas = replicas
        self.chunks = chunks
        detail = f": {reason}" if reason else ""
        # chunks == 0 means "whatever the chunk count" (raised before a file is cut).
        chunk_text = f" and {chunks} chunk(s)" if chunks > 0 else ""
        super().__init__(
            f"too few peers: {eligible_peers} eligible peer(s) (owner's own peer excluded); "
            f"{replicas} replica(s) per chunk{chunk_text} need at least "
            f"{replicas + 1} eligible peers so that no peer holds every chunk{detail}"
        )


class PermissionDenied(MydriveError):
    """A request not signed by the owner, stale, replayed, or aimed at another peer."""

    exit_code = 6


class NotLoggedIn(PermissionDenied):
    """No valid login session: unknown id, expired after inactivity, or logged out."""


class DataLoss(MydriveError):
    """Data failed verification and no replica could supply a good copy."""

    exit_code = 7


class PeerUnavailable(MydriveError):
    """A peer could not be reached."""

    exit_code = 8


class MisbehavingPeer(MydriveError):
    """A peer broke the protocol: an answer no honest peer gives to a valid request
    (indices out of range, segments not asked for, missing or oversized, a nonsensical error
    class). The engine fails over from it like from an unreachable peer; it reaches the user
    only when no replica could stand in, and never as the user's own bad input."""

    exit_code = 11


class DecryptionFailed(MydriveError):
    """Authenticated decryption failed: wrong key or tampered data."""

    exit_code = 7


class UntrustedMetadata(DecryptionFailed):
    """A metadata document that is not signed by its owner's key (forged, tampered with, or
    from before metadata was signed), or that would undo what its owner signed later. It is
    never used: readers skip it or refuse with this error (docs/metadata.md, "Signed
    documents")."""


class ChunkNotFound(MydriveError):
    """This peer holds no committed chunk with that id."""

    exit_code = 4


class Conflict(MydriveError):
    """A metadata document changed underneath a write (revision mismatch)."""

    exit_code = 9


class MetadataUnavailable(MydriveError):
    """The metadata server (CouchDB) could not be reached or answered with a server error."""

    exit_code = 10


class MetadataAuthFailed(MetadataUnavailable):
    """The metadata server refused this peer's credentials."""
