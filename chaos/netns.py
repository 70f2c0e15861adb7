"""The network-namespace backend: each peer's processes in its own Linux network namespace.

Root on Linux only (``ip netns``, veth, a bridge, ``nft``; kernel netem is not available).

    bridge mdb<tag> 10.215.X.1/24 (the harness, in the root namespace)
      ├─ veth ─ namespace mdc-<tag>-0: peer-0 at 10.215.X.10 (receiver, sender, toxiproxy)
      ├─ veth ─ namespace mdc-<tag>-1: peer-1 at 10.215.X.11
      └─ …

Every peer's ``PeerConfig.host`` is its namespace address; its receiver and sender run as
``ip netns exec NS python -m mydrive serve …`` and so do the harness's ``mydrive put/get``
acting for a peer. Traffic between peers crosses the bridge with the source namespace's
address. Each target namespace runs its own Toxiproxy with one proxy per (source, service) in
front of its services (for latency/bandwidth/reset toxics, which need a proxy without netem);
the source's ``peer:<id>`` documents point at those proxies.

Cuts are nftables ``reject with tcp reset`` rules in the *target* namespace (table
``inet mydrive_chaos``): a cut link ``S → T`` rejects every TCP packet from S's address on
connections S opened (``ct direction original``: T's own connections to S still work), and
every packet to the two proxy ports reserved for S (so the harness, which acts for the owner
from the root namespace when it checks, is cut along with the owner). Established
connections get reset too. Health probes from the harness (metrics ports, from the bridge
address) are never cut, so ``running`` stays true for a cut-off peer, as on the local backend.

Ports and peer ids come from the seed (``init_peer``'s ``ports`` and ``new_peer_id``): a
namespace holds only our processes, so any port is free there, and the same seed makes the
same peers. Services are started, recognised and stopped by mydrive.node.supervisor.

What the backend creates it records in ``HOME/netns.json`` and removes in ``stop`` (only
those namespaces, that bridge, the processes it started); a harness killed before ``stop``
leaves them, and ``python -m chaos.netns --cleanup HOME`` removes them from that file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from mydrive.node import supervisor
from mydrive.node.cluster import HEALTH_TIMEOUT_S
from mydrive.node.compose import TOXIPROXY_API_PORT
from mydrive.node.peerdir import PeerDir, init_peer, register_peer
from mydrive.node.serve import SERVICES, serve_command, serve_words, service_healthy
from mydrive.node.supervisor import Service

from .cluster import SERVICE_KINDS, ChaosPeer
from .local import cli_process, seeded_peer_ids
from .network import create_proxy, publish_proxy_addresses
from .toxiproxy import Toxic, ToxiproxyClient, ToxiproxyServer

STATE_NAME = "netns.json"
SUBNET_PREFIX = "10.215"
HOST_OCTET, FIRST_PEER_OCTET = 1, 10
MAX_PEERS = 64

PORT_RANGE = (10000, 32000)  # below Linux's default ephemeral range (32768-60999)
NFT_TABLE = "mydrive_chaos"
CMD_TIMEOUT_S = 20.0


class NetnsUnavailable(Exception):
    """This machine can't run the netns backend (not root, not Linux, a tool missing)."""


def unavailable_reason() -> str | None:
    """Why the netns backend can't run here, or None if it can."""
    if sys.platform != "linux":
        return f"the netns backend needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the netns backend needs root (ip netns, veth, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            hint = " (run scripts/setup.d/40-nftables.sh)" if tool == "nft" else ""
            return f"the netns backend needs `{tool}` on PATH{hint}"
    return None


def _run(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                          timeout=CMD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(args)}` failed: {proc.stderr.strip()}")


def _forward_rule(bridge: str, action: str) -> list[str]:
    """The iptables command that inserts (``-I``) or deletes (``-D``) our rule letting the
    traffic between the ports of ``bridge`` through the root namespace's FORWARD chain.

    Docker on the machine sets that chain's policy to DROP and has bridged traffic pass
    iptables (``bridge-nf-call-iptables``): without the rule every packet between two of our
    namespaces is dropped (peers time out, "0 eligible peers")."""
    return ["iptables", action, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def _used_subnets() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         timeout=CMD_TIMEOUT_S, check=False).stdout
    used = set()
    for word in out.split():
        if word.startswith(SUBNET_PREFIX + "."):
            used.add(int(word.split(".")[2]))
    return used


class NetnsCluster:
    """N peers, each in its own network namespace behind a bridge; cuts with nftables."""

    def __init__(self, home: Path, peers: int, *, seed: int, replicas: int = 2,
                 service_env: dict[str, str] | None = None,
                 peer_fault_plan: dict[str, Path] | None = None, **overrides: Any) -> None:
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        if not 1 <= peers <= MAX_PEERS:
            raise ValueError(f"peers must be between 1 and {MAX_PEERS}, got {peers}")
        self.home = home
        self.count = peers
        self.replicas = replicas
        self.seed = seed
        self.service_env = dict(service_env or {})
        self.peer_fault_plan = dict(peer_fault_plan or {})
        self.overrides = overrides
        tag = f"{os.getpid() % 10000:04d}{random.SystemRandom().randrange(36 ** 2):03x}"[-6:]
        self.tag = tag
        self.bridge = f"mdb{tag}"  # interface names: at most 15 characters
        self.subnet = -1
        self._netns: dict[str, str] = {}  # peer name -> namespace
        self._ip: dict[str, str] = {}
        self._dirs: dict[str, Path] = {}
        self._peers: list[ChaosPeer] = []
        self._services: dict[str, dict[str, Service]] = {}  # peer name -> kind -> process
        self._toxiproxy: dict[str, ToxiproxyServer] = {}
        self._clients: dict[str, ToxiproxyClient] = {}
        self.listen: dict[tuple[str, str, str], str] = {}
        self.cut_links: set[tuple[str, str]] = set()
        self._port_rng = random.Random(seed)
        self._ports_used: set[int] = set()

    # ---- network set-up ----------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.{HOST_OCTET}"

    def _record(self) -> None:
        processes = [Service(s.pid, (str(s.binary), "-host", s.host, "-port", str(s.port)))
                     for s in self._toxiproxy.values() if s.pid]
        processes += [s for kinds in self._services.values() for s in kinds.values()]
        state = {"bridge": self.bridge, "namespaces": sorted(self._netns.values()),
                 "subnet": f"{SUBNET_PREFIX}.{self.subnet}.0/24",
                 "processes": [{"pid": s.pid, "expect": list(s.expect)} for s in processes]}
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / STATE_NAME).write_text(json.dumps(state, indent=2))

    def _make_network(self) -> None:
        free = sorted(set(range(1, 255)) - _used_subnets())
        if not free:
            raise NetnsUnavailable(f"no free {SUBNET_PREFIX}.X.0/24 subnet")
        self.subnet = random.Random(self.seed).choice(free)
        names = [f"peer-{i}" for i in range(self.count)]
        self._netns = {n: f"mdc-{self.tag}-{i}" for i, n in enumerate(names)}
        self._ip = {n: f"{SUBNET_PREFIX}.{self.subnet}.{FIRST_PEER_OCTET + i}"
                    for i, n in enumerate(names)}
        self._record()  # before creating anything, so stop() can clean a half-made network
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        if shutil.which("iptables"):
            _run(*_forward_rule(self.bridge, "-I"))
        for i, name in enumerate(names):
            ns = self._netns[name]
            host_if, ns_if = f"mdh{self.tag}{i}", f"mdn{self.tag}{i}"
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _run("ip", "link", "set", ns_if, "netns", ns)
            _run("ip", "link", "set", host_if, "master", self.bridge)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self._ip[name]}/24", "dev", ns_if)
            _run("ip", "-n", ns, "link", "set", ns_if, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            self._apply_rules(name)

    def _in_ns(self, peer: str) -> list[str]:
        return ["ip", "netns", "exec", self._netns[peer]]

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._make_network()
            dirs = []
            new_peer_id = seeded_peer_ids(self.seed)
            for name in self._netns:
                dirs.append(init_peer(self.home / name, name=name, host=self._ip[name],
                                      replicas=self.replicas, ports=self._port,
                                      new_peer_id=new_peer_id, **self.overrides))
            for peer in dirs:
                with closing(peer.open_metadata()) as store:
                    for other in dirs:
                        register_peer(store, other.config)
            self._dirs = {d.config.name: d.root for d in dirs}
            self._peers = [ChaosPeer(name=d.config.name, peer_id=d.config.peer_id,
                                     receiver_address=d.config.receiver_address,
                                     sender_address=d.config.sender_address) for d in dirs]
            for name in self._dirs:
                self._spawn_services(name)
            self._wait_healthy(list(self._dirs))
            self._make_proxies()
            self._publish()
        except BaseException:
            self.stop()
            raise

    def _make_proxies(self) -> None:
        for target in self._peers:
            t = target.name
            server = ToxiproxyServer(self.home / f"toxiproxy-{t}.log", seed=self.seed,
                                     host=self._ip[t], port=TOXIPROXY_API_PORT,
                                     prefix=tuple(self._in_ns(t)))
            self._toxiproxy[t] = server
            client = server.start()
            self._record()
            self._clients[t] = client
            for source in self._peers:
                if source.name == t:
                    continue
                for service in SERVICE_KINDS:
                    upstream = (target.receiver_address if service == "receiver"
                                else target.sender_address)
                    proxy = create_proxy(client, f"{source.name}__{t}__{service}",
                                         host=self._ip[t], upstream=upstream,
                                         pick_port=self._port)
                    self.listen[(source.name, t, service)] = proxy.listen

    def _port(self, host: str = "") -> int:
        """A port from the seed, below the ephemeral range (see ``network.create_proxy``),
        not one this cluster used yet: for services and proxies alike. A namespace holds
        only our processes, so no bind probe."""
        low, high = PORT_RANGE
        assert len(self._ports_used) < (high - low) // 2, "port range nearly used up"
        while True:
            port = self._port_rng.randint(low, high)
            if port not in self._ports_used and port != TOXIPROXY_API_PORT:
                self._ports_used.add(port)
                return port

    def _publish(self) -> None:
        publish_proxy_addresses(self._dirs, self._peers, self.listen)

    def _spawn_services(self, peer: str, kinds: tuple[str, ...] = SERVICES) -> None:
        services = self._services.setdefault(peer, {})
        root = self._dirs[peer]
        for kind in kinds:
            running = services.get(kind)
            if running is not None and supervisor.is_ours(running):
                continue
            # `ip netns exec` execs the command: the PID and command line are mydrive's own.
            argv = serve_command(kind, root, fault_plan=self.peer_fault_plan.get(peer))
            services[kind] = supervisor.spawn(
                [*self._in_ns(peer), *argv], log_path=PeerDir(root).logs_dir / f"{kind}.log",
                expect=serve_words(kind, root), env=self.service_env)
        self._record()

    def _wait_healthy(self, peers: list[str]) -> None:
        supervisor.wait_healthy(lambda: [p for p in peers if not self.running(p)],
                                timeout_s=HEALTH_TIMEOUT_S)

    def _stop_services(self, peer: str, *, hard: bool, kinds: tuple[str, ...] | None = None,
                       ) -> None:
        services = self._services.get(peer, {})
        chosen = [services.pop(k) for k in list(services) if kinds is None or k in kinds]
        try:
            supervisor.stop(chosen, hard=hard)
        finally:
            self._record()

    def stop(self) -> None:
        try:
            for peer in list(self._services):
                self._stop_services(peer, hard=False)
            for server in self._toxiproxy.values():
                server.stop()
            self._toxiproxy.clear()
        finally:
            for ns in self._netns.values():  # deleting a namespace deletes its veth pair
                subprocess.run(["ip", "netns", "del", ns], capture_output=True,
                               timeout=CMD_TIMEOUT_S, check=False)
            if self.subnet >= 0:
                _remove_bridge(self.bridge)

    def kill(self, peer: str, service: str | None = None) -> None:
        self._stop_services(peer, hard=True, kinds=None if service is None else (service,))

    def restart(self, peer: str, *, graceful: bool = True) -> None:
        self._stop_services(peer, hard=not graceful)
        self.resume(peer)

    def resume(self, peer: str) -> None:
        self._spawn_services(peer)
        self._wait_healthy([peer])

    # ---- network -----------------------------------------------------------------------
    def _apply_rules(self, target: str) -> None:
        """Rewrite ``target``'s nft table from ``cut_links`` in one atomic ``nft -f``."""
        rules = []
        for source, t in sorted(self.cut_links):
            if t != target:
                continue
            rules.append(f"add rule inet {NFT_TABLE} input ip saddr {self._ip[source]} "
                         f"meta l4proto tcp ct direction original reject with tcp reset")
            ports = sorted(self.listen[(source, t, s)].rsplit(":", 1)[1]
                           for s in SERVICE_KINDS if (source, t, s) in self.listen)
            if ports:
                rules.append(f"add rule inet {NFT_TABLE} input tcp dport {{ {', '.join(ports)} }}"
                             f" reject with tcp reset")
        script = "\n".join([
            f"table inet {NFT_TABLE} {{}}",
            f"delete table inet {NFT_TABLE}",
            f"table inet {NFT_TABLE} {{",
            "  chain input { type filter hook input priority 0; policy accept; }",
            "}", *rules, ""])
        _run(*self._in_ns(target), "nft", "-f", "-", stdin=script)

    def _set_links(self, links: list[tuple[str, str]], cut: bool) -> None:
        for link in links:
            if cut:
                self.cut_links.add(link)
            else:
                self.cut_links.discard(link)
        for target in sorted({t for _, t in links}):
            self._apply_rules(target)

    def isolate(self, peer: str) -> None:
        others = [p.name for p in self._peers if p.name != peer]
        self._set_links([(o, peer) for o in others] + [(peer, o) for o in others], True)

    def cut(self, source: str, target: str) -> None:
        self._set_links([(source, target)], True)

    def set_down(self, peer: str, down: bool) -> None:
        self._set_links([(p.name, peer) for p in self._peers if p.name != peer], down)

    def _proxies(self, target: str, source: str | None, service: str | None) -> list[str]:
        return [f"{s}__{t}__{svc}" for (s, t, svc) in self.listen
                if t == target and (source is None or s == source)
                and (service is None or svc == service)]

    def add_toxic(self, target: str, toxic: Toxic, *, source: str | None = None,
                  service: str | None = None) -> None:
        for name in self._proxies(target, source, service):
            self._clients[target].add_toxic(name, toxic)

    def remove_toxic(self, target: str, name: str) -> None:
        client = self._clients[target]
        for proxy in self._proxies(target, None, None):
            if any(t.name == name for t in client.toxics(proxy)):
                client.remove_toxic(proxy, name)

    def heal(self) -> None:
        for client in self._clients.values():
            client.reset()
        targets = {t for _, t in self.cut_links}
        self.cut_links.clear()
        for target in sorted(targets):
            self._apply_rules(target)

    # ---- what is where -----------------------------------------------------------------
    def peers(self) -> list[ChaosPeer]:
        return list(self._peers)

    def namespace(self, peer: str) -> str:
        return self._netns[peer]

    def dialed_address(self, source: str, target: str, service: str) -> str:
        assert service in SERVICE_KINDS
        return self.listen[(source, target, service)]

    def running(self, peer: str) -> bool:
        services = self._services.get(peer, {})
        cfg = PeerDir(self._dirs[peer]).config
        return all(kind in services and supervisor.is_ours(services[kind])
                   and service_healthy(cfg, kind) for kind in SERVICES)

    def running_services(self) -> dict[str, bool]:
        return {p: all(k in self._services.get(p, {}) and supervisor.is_ours(self._services[p][k])
                       for k in SERVICES) for p in self._dirs}

    def reachable(self, source: str, target: str) -> bool:
        return self.running(target) and (source, target) not in self.cut_links

    def peer_dir(self, peer: str) -> Path:
        return self._dirs[peer]

    def peer_config(self, peer: str) -> PeerDir:
        return PeerDir(self._dirs[peer])

    def run_cli(self, peer: str, args: list[str], *, env: dict[str, str],
                log_path: Path) -> subprocess.Popen[bytes]:
        return cli_process(self._dirs[peer], args, env=env, log_path=log_path,
                           prefix=self._in_ns(peer))


def cleanup(home: Path) -> list[str]:
    """Remove what a ``NetnsCluster`` in ``home`` left behind when its harness died before
    ``stop`` (SIGKILL): its recorded processes (only if they still run what we started), its
    namespaces, its bridge and the FORWARD rule for it. Returns what it removed."""
    path = home / STATE_NAME
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    done = []
    for entry in state.get("processes", []):
        service = Service(pid=int(entry["pid"]), expect=tuple(map(str, entry["expect"])))
        if supervisor.send_signal(service, hard=True):  # only if it still runs our command
            done.append(f"process {service.pid}")
    for ns in state.get("namespaces", []):
        if subprocess.run(["ip", "netns", "del", ns], capture_output=True,
                          timeout=CMD_TIMEOUT_S, check=False).returncode == 0:
            done.append(f"namespace {ns}")
    bridge = state.get("bridge")
    if bridge:
        done += _remove_bridge(str(bridge))
    return done


def _remove_bridge(bridge: str) -> list[str]:
    """Delete our FORWARD rule and the bridge; what was there to remove."""
    done = []
    if shutil.which("iptables") and subprocess.run(
            _forward_rule(bridge, "-D"), capture_output=True, timeout=CMD_TIMEOUT_S,
            check=False).returncode == 0:
        done.append(f"iptables rule for {bridge}")
    if subprocess.run(["ip", "link", "del", bridge], capture_output=True,
                      timeout=CMD_TIMEOUT_S, check=False).returncode == 0:
        done.append(f"bridge {bridge}")
    return done


if __name__ == "__main__":
    # python -m chaos.netns --cleanup HOME: after a harness that was SIGKILLed mid-run.
    if len(sys.argv) != 3 or sys.argv[1] != "--cleanup":
        sys.exit("usage: python -m chaos.netns --cleanup CLUSTER_HOME")
    for item in cleanup(Path(sys.argv[2])):
        print("removed", item)
