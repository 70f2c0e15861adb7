"""What to tell a person about an error: HTTP status, a title and what to do next.

One table for the error pages and for the per-file status of uploads and downloads. The
messages come from mydrive's own exceptions, which never carry secrets (mydrive/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from mydrive.errors import (
    BadRequest,
    ChunkNotFound,
    Conflict,
    DataLoss,
    DecryptionFailed,
    FileExists,
    MetadataUnavailable,
    MisbehavingPeer,
    MydriveError,
    NotLoggedIn,
    PeerUnavailable,
    PermissionDenied,
    TooFewPeers,
    TooLarge,
    UnknownFile,
    UnknownUser,
    UntrustedMetadata,
    UserExists,
    WrongPassphrase,
)
from mydrive.ui.csrf import CsrfRejected


@dataclass(frozen=True)
class Problem:
    status: int
    kind: str    # stable short name, also used in JSON and by tests
    title: str
    advice: str


_TABLE: list[tuple[type[MydriveError], Problem]] = [
    (WrongPassphrase, Problem(401, "wrong-passphrase", "Wrong passphrase",
                              "The passphrase did not unlock this account. Check it (and "
                              "Caps Lock) and try again.")),
    (UnknownUser, Problem(404, "unknown-user", "Unknown user",
                          "There is no user of that name on this peer. Check the spelling, "
                          "or create the account first.")),
    (UserExists, Problem(409, "user-exists", "That user name is taken",
                         "Pick another user name, or log in if the account is yours.")),
    (NotLoggedIn, Problem(401, "not-logged-in", "Please log in",
                          "Your session ended (logged out or idle too long).")),
    (TooFewPeers, Problem(503, "peers-unavailable", "Not enough peers available",
                          "Too few other peers are online to store this file safely. Start "
                          "more peers (mydrive cluster status) and try again.")),
    (PeerUnavailable, Problem(503, "peers-unavailable", "Peers unavailable",
                              "The peers holding this data can't be reached right now. "
                              "Try again when they are back online.")),
    (MisbehavingPeer, Problem(503, "peers-misbehaving", "Peers misbehaving",
                              "Some peers answered in ways no honest peer does, and no other "
                              "peer could stand in. Try again later; this peer's log names "
                              "them.")),
    (UntrustedMetadata, Problem(502, "untrusted-metadata", "Untrusted file information",
                                "Information about this file is not signed by its owner "
                                "(forged or damaged in replication), so it was not used.")),
    (DataLoss, Problem(503, "cannot-fetch", "This file can't be fetched right now",
                       "No reachable peer could supply a verified copy of every part of it. "
                       "Try again later, when more peers are online.")),
    (DecryptionFailed, Problem(503, "cannot-fetch", "This file can't be fetched right now",
                               "Its data did not verify; nothing was written. Try again "
                               "later.")),
    (ChunkNotFound, Problem(503, "cannot-fetch", "This file can't be fetched right now",
                            "A peer no longer holds a part of it. Try again later, or run "
                            "mydrive check --repair.")),
    (MetadataUnavailable, Problem(503, "metadata-unavailable", "File information unavailable",
                                  "This peer's metadata server is not answering (or refused "
                                  "its credentials). Check mydrive cluster status.")),
    (Conflict, Problem(409, "conflict", "Changed meanwhile",
                       "Someone changed this at the same time. Reload and try again.")),
    (UnknownFile, Problem(404, "unknown-file", "No such file",
                          "It may have been removed. Reload the file list.")),
    (FileExists, Problem(409, "file-exists", "Already there",
                         "A file of that name already exists. Pick another name or folder, "
                         "or allow replacing it.")),
    (TooLarge, Problem(413, "too-large", "Too large",
                       "That is over one of this peer's limits.")),
    (PermissionDenied, Problem(403, "forbidden", "Not allowed",
                               "That request was refused.")),
    (BadRequest, Problem(400, "bad-request", "That didn't work",
                         "Please check what you entered.")),
]

CSRF = Problem(403, "csrf", "This form has expired",
               "The request did not carry this page's security token, so nothing was "
               "changed. Reload the page and try again.")
INTERNAL = Problem(500, "internal", "Something went wrong on this peer",
                   "The details are in the peer's logs/ui.log.")


def problem_for(exc: BaseException) -> Problem:
    if isinstance(exc, CsrfRejected):
        return CSRF
    for cls, problem in _TABLE:
        if isinstance(exc, cls):
            return problem
    return INTERNAL
