"""Per-link proxies (chaos/network.py) against a real Toxiproxy server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import ChaosPeer
from chaos.network import LinkNetwork, create_proxy
from chaos.toxiproxy import ToxiproxyClient, ToxiproxyServer


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


@pytest.fixture
def toxiproxy(tmp_path: Path, toxiproxy_binary: str) -> Iterator[ToxiproxyClient]:
    server = ToxiproxyServer(tmp_path / "toxiproxy.log", seed=1)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.chaos
def test_link_network_proxies_listen_outside_ephemeral_range(
        toxiproxy: ToxiproxyClient) -> None:
    """No proxy port is one an outgoing connection could take while the link is cut
    (a cut releases the port; heal binds it again)."""
    peers = [ChaosPeer(f"peer-{i}", f"{i:016x}", f"127.0.0.1:{20000 + i}",
                       f"127.0.0.1:{21000 + i}") for i in range(3)]
    net = LinkNetwork(toxiproxy, peers)
    net.create()
    low, high = ephemeral_range()
    ports = [int(a.rsplit(":", 1)[1]) for a in net.listen.values()]
    assert len(ports) == 12
    assert not [p for p in ports if low <= p <= high], (ports, (low, high))
    net.set_link("peer-0", "peer-1", False)
    net.heal()  # binds the released ports again
    assert all(p.enabled for p in toxiproxy.proxies().values())


@pytest.mark.chaos
def test_create_proxy_takes_another_port_when_one_is_taken(
        toxiproxy: ToxiproxyClient) -> None:
    """A port taken meanwhile makes the proxy try the next port instead of failing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        ports = iter([busy, free])
        proxy = create_proxy(toxiproxy, "p", host="127.0.0.1", upstream="127.0.0.1:9",
                             pick_port=lambda: next(ports))
    assert proxy.listen == f"127.0.0.1:{free}"
