"""Who is calling: the name a receiver counts a caller's streams under (stream_limits).

With TLS on, other peers reach the services only through this peer's nginx, which checked
their client certificate and passes it on in the ``x-mydrive-client-cert`` header (nginx's
``$ssl_client_escaped_cert``, replacing any header of that name the caller sent). The caller
is then the peer id of that certificate's key, so a peer is one caller whatever address or
connection it uses. Without TLS (local test networks) or for a call that did not come
through nginx, the caller is its remote address without the port.
"""

from __future__ import annotations

from urllib.parse import unquote

import grpc

from mydrive.errors import PermissionDenied
from mydrive.formats.peerdoc import PeerTrust, peer_id_from_key_digest

CLIENT_CERT_HEADER = "x-mydrive-client-cert"
MAX_HEADER_CHARS = 32 * 1024  # an escaped PEM certificate is a few KiB


class CallerIdentity:
    def __init__(self, trust: PeerTrust | None = None) -> None:
        """``trust``: believe nginx's certificate header (TLS on, services on loopback)."""
        self._trust = trust

    def __call__(self, context: grpc.ServicerContext) -> str:
        if self._trust is not None:
            for key, value in context.invocation_metadata() or ():
                if key == CLIENT_CERT_HEADER and isinstance(value, str):
                    return self.of_certificate(value)
        return address_of(context.peer())

    def of_certificate(self, escaped_pem: str) -> str:
        """``peer:<id>`` of nginx's escaped client certificate; PermissionDenied if it is
        not one the network CA issued (nginx checked it; this is the second look)."""
        assert self._trust is not None
        if len(escaped_pem) > MAX_HEADER_CHARS:
            raise PermissionDenied("client certificate header too large")
        key_digest, _ = self._trust.check_certificate(unquote(escaped_pem).encode())
        return f"peer:{peer_id_from_key_digest(key_digest)}"


def address_of(grpc_peer: str) -> str:
    """``ipv4:127.0.0.2:41234`` → ``ipv4:127.0.0.2`` (a caller's connections share it)."""
    kind, sep, rest = grpc_peer.partition(":")
    if sep and kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return grpc_peer
