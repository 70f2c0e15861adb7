"""Per-link Toxiproxy proxies between peers.

Every directed link (source peer → target peer, service) gets its own proxy, and each source
peer's metadata lists the *proxy* addresses of the others (``peer:<id>`` documents), while
the services still bind their own ports. So one link can be cut, slowed or reset without
touching the others: a partition is a set of disabled proxies. N peers make N·(N−1)·2
proxies (40 for 5 peers), which Toxiproxy handles easily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

from mydrive.formats.peerdoc import PeerDocument
from mydrive.node.peerdir import PeerDir, free_port

from .cluster import SERVICE_KINDS, ChaosPeer
from .toxiproxy import Proxy, Toxic, ToxiproxyClient, ToxiproxyError

PROXY_BIND_ATTEMPTS = 5


def proxy_name(source: str, target: str, service: str) -> str:
    return f"{source}__{target}__{service}"


def create_proxy(client: ToxiproxyClient, name: str, *, host: str, upstream: str,
                 pick_port: Callable[[], int]) -> Proxy:
    """A proxy listening on a port from ``pick_port``, never on an OS-chosen one.

    A cut disables a proxy, which releases its port, and heal binds it again. An OS-chosen
    (``:0``) port lies in the ephemeral range, where any process's outgoing connection may
    take it meanwhile (soak ``partition-and-heal`` seed 14: ``POST /reset: … bind: address
    already in use``); ports outside that range are taken only by an explicit bind.
    """
    for attempt in range(PROXY_BIND_ATTEMPTS):
        try:
            return client.create_proxy(name, listen=f"{host}:{pick_port()}", upstream=upstream)
        except ToxiproxyError as exc:
            if "address already in use" not in str(exc) or attempt == PROXY_BIND_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class LinkNetwork:
    client: ToxiproxyClient
    peers: list[ChaosPeer]
    host: str = "127.0.0.1"
    listen: dict[tuple[str, str, str], str] = field(default_factory=dict)
    cut_links: set[tuple[str, str]] = field(default_factory=set)
    toxic_count: int = 0

    def create(self) -> None:
        for src in self.peers:
            for dst in self.peers:
                if src.name == dst.name:
                    continue
                for service in SERVICE_KINDS:
                    upstream = (dst.receiver_address if service == "receiver"
                                else dst.sender_address)
                    proxy = create_proxy(self.client, proxy_name(src.name, dst.name, service),
                                         host=self.host, upstream=upstream,
                                         pick_port=lambda: free_port(self.host))
                    self.listen[(src.name, dst.name, service)] = proxy.listen

    def publish(self, peer_dirs: dict[str, Path]) -> None:
        """Point each peer's ``peer:<id>`` documents for the others at its own proxies."""
        publish_proxy_addresses(peer_dirs, self.peers, self.listen)

    def _links(self, *, source: str | None = None, target: str | None = None,
               service: str | None = None) -> list[tuple[str, str, str]]:
        return [k for k in self.listen
                if (source is None or k[0] == source) and (target is None or k[1] == target)
                and (service is None or k[2] == service)]

    def set_link(self, source: str, target: str, enabled: bool) -> None:
        for key in self._links(source=source, target=target):
            self.client.set_enabled(proxy_name(*key), enabled)
        if enabled:
            self.cut_links.discard((source, target))
        else:
            self.cut_links.add((source, target))

    def isolate(self, peer: str) -> None:
        for other in self.peers:
            if other.name != peer:
                self.set_link(other.name, peer, False)
                self.set_link(peer, other.name, False)

    def set_down(self, peer: str, down: bool) -> None:
        for other in self.peers:
            if other.name != peer:
                self.set_link(other.name, peer, not down)

    def add_toxic(self, target: str, toxic: Toxic, *, source: str | None = None,
                  service: str | None = None) -> None:
        for key in self._links(source=source, target=target, service=service):
            self.client.add_toxic(proxy_name(*key), toxic)
        self.toxic_count += 1

    def remove_toxic(self, target: str, name: str) -> None:
        for key in self._links(target=target):
            if any(t.name == name for t in self.client.toxics(proxy_name(*key))):
                self.client.remove_toxic(proxy_name(*key), name)

    def heal(self) -> None:
        self.client.reset()
        self.cut_links.clear()
        self.toxic_count = 0

    def link_open(self, source: str, target: str) -> bool:
        return (source, target) not in self.cut_links


def publish_proxy_addresses(peer_dirs: dict[str, Path], peers: Sequence[ChaosPeer],
                            listen: dict[tuple[str, str, str], str]) -> None:
    """Write, into each source peer's metadata, the proxy addresses it must dial for every
    other peer (``listen`` maps (source, target, service) to a proxy address)."""
    for src, root in peer_dirs.items():
        with closing(PeerDir(root).open_metadata()) as store:
            for dst in peers:
                if dst.name == src:
                    continue
                doc_id = f"peer:{dst.peer_id}"
                doc = store.get(doc_id)
                assert doc is not None, f"{src} does not know {dst.name}"
                # Unsigned documents (the test-bed runs without TLS): rewritable as written.
                proxied = replace(PeerDocument.from_doc(doc),
                                  receiver_address=listen[(src, dst.name, "receiver")],
                                  sender_address=listen[(src, dst.name, "sender")])
                store.put(doc_id, proxied.to_doc())
