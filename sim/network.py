"""The simulated network: directed links between peers, their faults, and what a message costs.

Shaped like the chaos harness's Toxiproxy network (chaos/network.py) so the catalog's steps
map one to one: every directed link (source peer, target peer, service) can be cut; a peer
can be isolated (all its links, both ways) or set down (every link into it); toxics sit on
the links into a target (optionally from one source, optionally one service) and act on one
direction: ``upstream`` (towards the target's service) or ``downstream`` (its answers).
``heal`` removes every cut and toxic, like Toxiproxy's reset.

Costs, in virtual time: a message in one direction takes the link's latency (base plus
latency toxics) plus its bytes over the narrowest bandwidth (base or a bandwidth toxic's
``rate`` in KB/s, 1 KB = 1000 bytes as Toxiproxy counts). ``loss_rate`` is packet loss as TCP
sees it: a lost message arrives late, after a retransmission timeout, never corrupted or
missing. A ``timeout`` toxic makes a half-open link (nothing flows; the proxy closes the
connection after ``timeout`` ms, or never when 0: the caller's deadline ends it); a
``reset_peer`` toxic resets the connection after ``timeout`` ms. Every random draw (loss)
comes from the run's seeded ``random.Random``. Held in memory only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SERVICES = ("receiver", "sender")
STREAMS = ("upstream", "downstream")
TOXIC_KINDS = ("latency", "bandwidth", "timeout", "reset_peer")  # the ones the catalog uses
KB_BYTES = 1000
RTO_MS = 200.0                 # TCP's minimum retransmission timeout (Linux)
MAX_TOXICS = 10_000            # a scenario adding more is a loop
CONNECT_REFUSED_MS = 0.2       # a refused connection answers at once (RST from the proxy)


@dataclass(frozen=True)
class LinkSpec:
    """The healthy network every link starts from."""

    latency_ms: float = 0.5                  # one way
    bandwidth_bytes_per_s: float = 100e6     # each direction of each link
    loss_rate: float = 0.0                   # per message


@dataclass(frozen=True)
class SimToxic:
    name: str
    target: str
    kind: str
    stream: str
    source: str | None = None
    service: str | None = None
    attributes: tuple[tuple[str, int], ...] = ()

    def attr(self, key: str, default: int = 0) -> int:
        for k, v in self.attributes:
            if k == key:
                return v
        return default

    def applies(self, source: str, target: str, service: str) -> bool:
        return (self.target == target and (self.source is None or self.source == source)
                and (self.service is None or self.service == service))


@dataclass(frozen=True)
class Path:
    """What one direction of a link does to a message right now."""

    latency_ms: float
    bandwidth_bytes_per_s: float
    loss_rate: float


@dataclass(frozen=True)
class Breakage:
    """How a connection over a link fails: ``refused`` at once, or ``stall``/``reset`` after
    ``after_ms`` (``None``: never on its own; the caller's deadline decides)."""

    kind: str
    after_ms: float | None


@dataclass
class Network:
    spec: LinkSpec
    rng: random.Random
    cut_links: set[tuple[str, str]] = field(default_factory=set)
    toxics: list[SimToxic] = field(default_factory=list)
    epoch: int = 0   # grows with every change that closes connections (cut, down, heal...)

    # ---- faults (the catalog's network steps) -------------------------------------------
    def cut(self, source: str, target: str) -> None:
        self.cut_links.add((source, target))
        self.epoch += 1

    def restore(self, source: str, target: str) -> None:
        self.cut_links.discard((source, target))

    def isolate(self, peer: str, others: list[str]) -> None:
        for other in others:
            if other != peer:
                self.cut_links.add((other, peer))
                self.cut_links.add((peer, other))
        self.epoch += 1

    def set_down(self, peer: str, others: list[str], down: bool) -> None:
        for other in others:
            if other != peer:
                if down:
                    self.cut_links.add((other, peer))
                else:
                    self.cut_links.discard((other, peer))
        if down:
            self.epoch += 1

    def add_toxic(self, toxic: SimToxic) -> None:
        assert toxic.kind in TOXIC_KINDS and toxic.stream in STREAMS, toxic
        assert len(self.toxics) < MAX_TOXICS, "too many toxics: a scenario loop"
        self.toxics.append(toxic)
        if toxic.kind in ("timeout", "reset_peer"):
            self.epoch += 1  # existing connections are affected at once

    def remove_toxic(self, target: str, name: str) -> None:
        self.toxics = [t for t in self.toxics if not (t.target == target and t.name == name)]

    def heal(self) -> None:
        self.cut_links.clear()
        self.toxics.clear()
        self.epoch += 1

    # ---- what a message sees ------------------------------------------------------------
    def link_open(self, source: str, target: str) -> bool:
        return (source, target) not in self.cut_links

    def breakage(self, source: str, target: str, service: str) -> Breakage | None:
        if not self.link_open(source, target):
            return Breakage("refused", 0.0)
        for t in self.toxics:
            if not t.applies(source, target, service):
                continue
            if t.kind == "timeout":
                timeout = t.attr("timeout")
                return Breakage("stall", float(timeout) if timeout > 0 else None)
            if t.kind == "reset_peer":
                return Breakage("reset", float(t.attr("timeout")))
        return None

    def path(self, source: str, target: str, service: str, stream: str) -> Path:
        latency = self.spec.latency_ms
        bandwidth = self.spec.bandwidth_bytes_per_s
        for t in self.toxics:
            if t.stream != stream or not t.applies(source, target, service):
                continue
            if t.kind == "latency":
                latency += t.attr("latency")
            elif t.kind == "bandwidth" and t.attr("rate") > 0:
                bandwidth = min(bandwidth, float(t.attr("rate") * KB_BYTES))
        return Path(latency_ms=latency, bandwidth_bytes_per_s=bandwidth,
                    loss_rate=self.spec.loss_rate)

    def message_ms(self, path: Path, size_bytes: int, *, first: bool) -> float:
        """Virtual time for ``size_bytes`` in one direction; latency only on the first
        message of a burst (later ones are pipelined behind it)."""
        ms = (path.latency_ms if first else 0.0) + size_bytes * 1000.0 / path.bandwidth_bytes_per_s
        if path.loss_rate > 0 and self.rng.random() < path.loss_rate:
            ms += max(RTO_MS, 4 * path.latency_ms)
        return ms
