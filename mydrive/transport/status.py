"""Mapping between mydrive errors and gRPC status codes, both ways.

The error's class name travels in trailing metadata so the caller re-raises the precise
class (PeerBusy vs TooLarge, say); the status code alone stays meaningful to any other gRPC
client. Another peer is not trusted to name the class: it may only name what a peer can mean
about a request it served (PEER_ERRORS). A class only the user's own side can mean
(WrongPassphrase, UnknownUser, FileExists, ...) named by a peer is a lie about the user,
and becomes MisbehavingPeer, so the engine fails over instead of blaming the user. Only this
peer's own control socket (``trusted=True``) may name any class.
"""

from __future__ import annotations

import grpc

from mydrive import errors

ERROR_CLASS_KEY = "mydrive-error"

_CODES: list[tuple[type[errors.MydriveError], grpc.StatusCode]] = [
    (errors.TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ChunkNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.DataLoss, grpc.StatusCode.DATA_LOSS),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE),
]

_BY_NAME: dict[str, type[errors.MydriveError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.MydriveError)
    and cls is not errors.TooFewPeers  # needs constructor arguments; never crosses the wire
}


# What a storage peer may say about a request it served. A class a peer legitimately raises
# must be listed here, or callers hear MisbehavingPeer instead.
PEER_ERRORS: frozenset[type[errors.MydriveError]] = frozenset({
    errors.TooLarge, errors.PeerBusy, errors.BadRequest, errors.PermissionDenied,
    errors.ChunkNotFound, errors.DataLoss, errors.Conflict, errors.PeerUnavailable,
    errors.MisbehavingPeer,
})


def code_for(exc: errors.MydriveError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def abort(context: grpc.ServicerContext, exc: errors.MydriveError) -> None:
    """End the call with the error's status; never returns."""
    context.set_trailing_metadata(((ERROR_CLASS_KEY, type(exc).__name__),))
    context.abort(code_for(exc), str(exc))


def error_from_rpc(exc: grpc.RpcError, peer: str, *,
                   trusted: bool = False) -> errors.MydriveError:
    """Turn a failed call into the mydrive error the remote peer meant, as far as a peer
    can mean it (any class only if ``trusted``: this peer's own services)."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(code)
    name = None
    if isinstance(exc, grpc.Call):
        for key, value in exc.trailing_metadata() or ():
            if key == ERROR_CLASS_KEY:
                name = value
    if name in _BY_NAME:
        cls = _BY_NAME[str(name)]
        if trusted or cls in PEER_ERRORS:
            return cls(f"peer {peer}: {details}")
        return errors.MisbehavingPeer(f"peer {peer} answered {name}, which no peer can "
                                      f"mean: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED):
        return errors.PeerUnavailable(f"peer {peer} unreachable: {details}")
    for cls, mapped in _CODES:
        if mapped == code:
            return cls(f"peer {peer}: {details}")
    return errors.PeerUnavailable(f"peer {peer} failed: {code.name}: {details}")
