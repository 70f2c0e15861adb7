"""The fleet year: peers churning, chunks counted per replica, repair, from one seed.

State is arrays (numpy): for every chunk its holders (peer indices, ``-1`` for a free slot),
how many are online and how many still have the chunk on disk, since when it has been
below R online replicas; for every file how many of its chunks have no online replica. A
discrete-event loop (a heap ordered by (time, order scheduled)) applies the churn
(``sim.fleet.churn``): an outage takes a peer's chunks offline, its return brings them back,
a leave or a disk loss removes its copies for good; a chunk whose last copy goes is lost.
Repair (``sim.fleet.repair``) is asked ``grace_h`` after each outage or loss about the chunks
it left below R, and once a day about every chunk (a safety net).

Placement is the product's: every file's chunks are placed at the start by
``place_chunks`` over a seeded sample of ``2R + 2`` live peers (placing over all 10,000
would cost ~0.1 s per file: ``place_chunks`` scores every peer for every chunk), so the
product's rules (never the owner, no peer with every chunk, capacity weights) hold for
every file. Availability is integrated over time (the fraction of files whose every chunk
has an online replica); durability is the fraction of files with no chunk lost.
Deterministic: the same config and seed give the same result, bit for bit.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mydrive.formats.placement import PeerSlot, place_chunks
from sim.fleet.churn import DAYS_PER_YEAR, HOURS_PER_DAY, ChurnModel
from sim.fleet.repair import NoRepair, ProductRepair, RepairPolicy, RereplicateAfterGrace
from sim.world import stream_seed

Ints = npt.NDArray[np.int64]
DOWN, UP, LEAVE, DISK_LOSS, DISK_BACK, JOIN, CHECK, SWEEP, SAMPLE = range(9)
KINDS = ("down", "up", "leave", "disk_loss", "disk_back", "join", "repair_check", "sweep",
         "sample")
SWEEP_H = 24.0                   # the daily full repair scan
MAX_EXTRA_HOLDERS = 3            # copies beyond R a chunk may gain (a returning peer)
MAX_SAMPLES = 10_000
CAPACITY_CLASSES_BYTES = (1 << 40, 2 << 40, 4 << 40)  # 1, 2, 4 TiB, drawn per peer
INF = math.inf


@dataclass(frozen=True)
class FleetConfig:
    peers: int = 10_000
    chunks: int = 1_000_000
    days: float = 365.0
    replicas: int = 3
    seed: int = 1
    chunks_per_file: int = 4
    chunk_size_bytes: int = 4 * 1024 * 1024
    churn: ChurnModel = field(default_factory=ChurnModel)
    churn_scale: float = 1.0
    repair: str = "rereplicate"      # "none", "rereplicate" or "product"
    grace_h: float = 24.0
    sample_h: float = 24.0

    def policy(self) -> RepairPolicy:
        if self.repair == "none":
            return NoRepair()
        if self.repair == "product":
            return ProductRepair(grace_h=self.grace_h)
        assert self.repair == "rereplicate", self.repair
        return RereplicateAfterGrace(grace_h=self.grace_h)


@dataclass
class FleetCheck:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.name, "verdict": "pass" if self.ok else "fail",
                "detail": self.detail}


@dataclass
class FleetResult:
    config: FleetConfig
    policy: str
    files: int
    chunks: int
    lost_chunks: int
    lost_files: int
    availability_mean: float
    availability_min: float
    repairs: int
    peers_end: int
    events: dict[str, int]
    wall_s: float
    cpu_s: float
    place_s: float
    place_cpu_s: float
    # one a day: (day, available fraction, files lost so far, repairs so far)
    samples: list[tuple[float, float, int, int]]
    checks: list[FleetCheck]

    @property
    def durability(self) -> float:
        return 1.0 - self.lost_files / self.files

    @property
    def events_total(self) -> int:
        return sum(self.events.values())

    @property
    def events_per_s(self) -> float:
        return self.events_total / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {"peers": c.peers, "chunks": self.chunks, "files": self.files, "days": c.days,
                "replicas": c.replicas, "seed": c.seed, "churn_scale": c.churn_scale,
                "churn": c.churn.scaled(c.churn_scale).describe(), "repair": self.policy,
                "grace_h": c.grace_h, "lost_chunks": self.lost_chunks,
                "lost_files": self.lost_files, "durability": self.durability,
                "availability_mean": self.availability_mean,
                "availability_min": self.availability_min, "repairs": self.repairs,
                "repair_bytes": self.repairs * c.chunk_size_bytes,
                "peers_end": self.peers_end, "events": self.events,
                "events_total": self.events_total, "wall_s": round(self.wall_s, 2),
                "cpu_s": round(self.cpu_s, 2), "placement_s": round(self.place_s, 2),
                "placement_cpu_s": round(self.place_cpu_s, 2),
                "events_per_s": round(self.events_per_s),
                "checks": [x.to_json() for x in self.checks], "ok": self.ok,
                "samples": [list(x) for x in self.samples]}


class Fleet:
    """One fleet year (``run`` it once)."""

    def __init__(self, config: FleetConfig, *,
                 policy: RepairPolicy | None = None) -> None:
        assert config.peers >= 2 * config.replicas + 3, "too few peers to place on"
        assert config.chunks_per_file >= 2
        self.config = config
        self.replicas = config.replicas
        self.chunks_per_file = config.chunks_per_file
        self.policy = policy or config.policy()
        self.churn = config.churn.scaled(config.churn_scale)
        self.rng = np.random.Generator(np.random.PCG64(
            stream_seed("fleet", config.seed, "churn")))
        self.files = math.ceil(config.chunks / config.chunks_per_file)
        self.chunks = self.files * config.chunks_per_file
        years = config.days / DAYS_PER_YEAR
        joins = self.churn.join_per_year * years * config.peers
        self.max_peers = config.peers + int(3 * joins + 10 * math.sqrt(joins + 1)) + 16
        n = self.max_peers
        self.alive = np.zeros(n, dtype=bool)       # has its disk (has joined, not left)
        self.on = np.zeros(n, dtype=bool)          # reachable now
        self.epoch = np.zeros(n, dtype=np.int64)
        self.down_since = np.full(n, INF)          # when it went offline (inf: online)
        self.count = 0                             # peers created so far
        self.pool: list[int] = []                  # alive peers (for sampling)
        self.pool_pos: dict[int, int] = {}
        self.pid: list[str] = []
        self.by_pid: dict[str, int] = {}
        self.slots: list[PeerSlot] = []
        self.peer_chunks: list[Ints] = []
        self.peer_extra: list[list[int]] = []
        self.owners: Ints = np.zeros(0, dtype=np.int64)
        self.holders = np.zeros((0, 0), dtype=np.int64)
        self.online = np.zeros(0, dtype=np.int16)
        self.live = np.zeros(0, dtype=np.int16)
        self.below_since = np.zeros(0, dtype=np.float64)
        self.lost = np.zeros(0, dtype=bool)
        self.file_unavailable = np.zeros(self.files, dtype=np.int32)
        self.file_lost = np.zeros(self.files, dtype=bool)
        self.unavailable_files = 0
        self.lost_chunks = 0
        self.lost_files = 0
        self.repairs = 0
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.payload: dict[int, Ints] = {}
        self.seq = 0
        self.now_h = 0.0
        self.area = 0.0                            # unavailable-file hours
        self.samples: list[tuple[float, float, int, int]] = []
        self.events = dict.fromkeys(KINDS, 0)
        self.min_available = 1.0
        self.place_s = 0.0
        self.place_cpu_s = 0.0

    # ---- FleetView (what repair policies may ask) --------------------------------------------
    def file_id(self, file: int) -> bytes:
        return hashlib.blake2b(f"{self.config.seed}:{file}".encode(), digest_size=16).digest()

    def owner(self, file: int) -> int:
        return int(self.owners[file])

    def chunk_sizes(self, file: int) -> list[int]:
        return [self.config.chunk_size_bytes] * self.chunks_per_file

    def holders_of(self, chunk: int) -> list[int]:
        return [int(p) for p in self.holders[chunk] if p >= 0]

    def file_counts(self, file: int) -> dict[int, int]:
        counts: dict[int, int] = {}
        c = self.chunks_per_file
        for p in self.holders[file * c:(file + 1) * c].ravel():
            if p >= 0:
                counts[int(p)] = counts.get(int(p), 0) + 1
        return counts

    def online_sample(self, count: int, exclude: Sequence[int]) -> list[int]:
        chosen: list[int] = []
        seen = set(exclude)
        pool = self.pool
        for _ in range(8):  # rejection sampling over the alive pool, online ones kept
            need = count - len(chosen)
            if need <= 0 or not pool:
                break
            for i in self.rng.integers(0, len(pool), size=2 * need + 2):
                p = pool[int(i)]
                if p not in seen and self.on[p]:
                    seen.add(p)
                    chosen.append(p)
                    if len(chosen) == count:
                        break
        return chosen

    def is_online(self, peer: int) -> bool:
        return bool(self.on[peer])

    def offline_for_h(self, peer: int) -> float:
        return 0.0 if self.on[peer] else max(0.0, self.now_h - float(self.down_since[peer]))

    def slot(self, peer: int) -> PeerSlot:
        return self.slots[peer]

    def peer_of(self, peer_id: str) -> int:
        return self.by_pid[peer_id]

    # ---- set-up --------------------------------------------------------------------------------
    def _new_peer(self) -> int:
        p = self.count
        assert p < self.max_peers, "more joins than the arrays hold"
        self.count += 1
        capacity = CAPACITY_CLASSES_BYTES[int(self.rng.integers(0, len(CAPACITY_CLASSES_BYTES)))]
        pid = f"f{p}"
        self.pid.append(pid)
        self.by_pid[pid] = p
        self.slots.append(PeerSlot(peer_id=pid, capacity_bytes=capacity, free_bytes=capacity))
        self.peer_chunks.append(np.zeros(0, dtype=np.int64))
        self.peer_extra.append([])
        return p

    def _come_alive(self, p: int) -> None:
        self.alive[p] = True
        self.on[p] = True
        self.down_since[p] = INF
        self.epoch[p] += 1
        self.pool_pos[p] = len(self.pool)
        self.pool.append(p)
        self._schedule_life(p)

    def _leave_pool(self, p: int) -> None:
        i = self.pool_pos.pop(p)
        last = self.pool.pop()
        if last != p:
            self.pool[i] = last
            self.pool_pos[last] = i

    def _exp_h(self, rate_per_h: float) -> float:
        return float(self.rng.exponential(1.0 / rate_per_h)) if rate_per_h > 0 else INF

    def _schedule_life(self, p: int) -> None:
        ch = self.churn
        epoch = int(self.epoch[p])
        self._at(self._exp_h(ch.transient_per_day / HOURS_PER_DAY), DOWN, p, epoch)
        year_h = DAYS_PER_YEAR * HOURS_PER_DAY
        self._at(self._exp_h(ch.leave_per_year / year_h), LEAVE, p, epoch)
        self._at(self._exp_h(ch.disk_loss_per_year / year_h), DISK_LOSS, p, epoch)

    def _at(self, delay_h: float, kind: int, peer: int = -1, epoch: int = 0) -> int:
        self.seq += 1
        if delay_h < INF:
            heapq.heappush(self.heap, (self.now_h + delay_h, self.seq, kind, peer, epoch))
        return self.seq

    def place_initial(self) -> None:
        """Every file's chunks placed by the product's ``place_chunks``, R each."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        cfg = self.config
        for _ in range(cfg.peers):
            self._come_alive(self._new_peer())
        self.owners = self.rng.integers(0, cfg.peers, size=self.files).astype(np.int64)
        r, c = self.replicas, self.chunks_per_file
        k = 2 * r + 2
        flat: list[int] = []
        sizes = [cfg.chunk_size_bytes] * c
        slots, by_pid = self.slots, self.by_pid
        draws = self.rng.integers(0, cfg.peers, size=(self.files, 2 * k)).tolist()
        for f in range(self.files):
            owner = int(self.owners[f])
            pool = [p for p in dict.fromkeys(draws[f]) if p != owner][:k]
            if len(pool) < k:
                pool = self.online_sample(k, exclude=[owner])
            placement = place_chunks(self.file_id(f), sizes, [slots[p] for p in pool],
                                     replicas=r, owner_peer_id=self.pid[owner])
            for row in placement:
                flat.extend(by_pid[p] for p in row)
        held = np.array(flat, dtype=np.int64).reshape(self.chunks, r)
        self.holders = np.full((self.chunks, r + MAX_EXTRA_HOLDERS), -1, dtype=np.int64)
        self.holders[:, :r] = held
        self.online = np.full(self.chunks, r, dtype=np.int16)
        self.live = np.full(self.chunks, r, dtype=np.int16)
        self.below_since = np.full(self.chunks, INF)
        self.lost = np.zeros(self.chunks, dtype=bool)
        peers_flat = held.ravel()
        chunk_ids = np.repeat(np.arange(self.chunks, dtype=np.int64), r)
        order = np.argsort(peers_flat, kind="stable")
        bounds = np.searchsorted(peers_flat[order], np.arange(self.count + 1))
        for p in range(self.count):
            self.peer_chunks[p] = chunk_ids[order[bounds[p]:bounds[p + 1]]]
        self.place_s = time.perf_counter() - t0
        self.place_cpu_s = time.process_time() - cpu0

    # ---- churn ---------------------------------------------------------------------------------
    def _chunks_of(self, p: int) -> Ints:
        extra = self.peer_extra[p]
        if extra:
            self.peer_chunks[p] = np.concatenate(
                [self.peer_chunks[p], np.array(extra, dtype=np.int64)])
            extra.clear()
        return self.peer_chunks[p]

    def _integrate(self, t_h: float) -> None:
        self.area += self.unavailable_files * (t_h - self.now_h)
        self.now_h = t_h

    def _go_offline(self, p: int) -> Ints:
        self.on[p] = False
        self.down_since[p] = self.now_h
        arr = self._chunks_of(p)
        if arr.size == 0:
            return arr
        online = self.online
        online[arr] -= 1
        now = online[arr]
        dark = arr[now == 0]
        if dark.size:
            files, counts = np.unique(dark // self.chunks_per_file, return_counts=True)
            before = self.file_unavailable[files]
            self.file_unavailable[files] = before + counts
            self.unavailable_files += int(np.count_nonzero(before == 0))
        low = arr[(now < self.replicas) & np.isinf(self.below_since[arr])]
        self.below_since[low] = self.now_h
        return arr

    def _go_online(self, p: int) -> None:
        self.on[p] = True
        self.down_since[p] = INF
        arr = self._chunks_of(p)
        if arr.size == 0:
            return
        online = self.online
        online[arr] += 1
        now = online[arr]
        lit = arr[now == 1]
        if lit.size:
            files, counts = np.unique(lit // self.chunks_per_file, return_counts=True)
            after = self.file_unavailable[files] - counts
            self.file_unavailable[files] = after
            self.unavailable_files -= int(np.count_nonzero(after == 0))
        self.below_since[arr[now >= self.replicas]] = INF

    def _lose_disk(self, p: int) -> None:
        """The peer's copies are gone for good (it left, or its disk died)."""
        arr = self._go_offline(p) if self.on[p] else self._chunks_of(p)
        self.alive[p] = False
        self.epoch[p] += 1
        self._leave_pool(p)
        if arr.size == 0:
            return
        self.live[arr] -= 1
        gone = arr[self.live[arr] == 0]
        if gone.size:
            self.lost[gone] = True
            self.lost_chunks += int(gone.size)
            files = np.unique(gone // self.chunks_per_file)
            fresh = files[~self.file_lost[files]]
            self.file_lost[fresh] = True
            self.lost_files += int(fresh.size)
        rows = self.holders[arr]
        rows[rows == p] = -1
        self.holders[arr] = rows
        self.peer_chunks[p] = np.zeros(0, dtype=np.int64)
        self._check_later(arr)

    def _check_later(self, arr: Ints) -> None:
        grace = self.policy.grace_h
        if grace is None or arr.size == 0:
            return
        seq = self._at(grace, CHECK)
        self.payload[seq] = arr

    # ---- repair ------------------------------------------------------------------------------
    def _repair(self, candidates: Ints) -> None:
        grace = self.policy.grace_h
        assert grace is not None
        online, r = self.online, self.replicas
        due = candidates[(self.below_since[candidates] <= self.now_h - grace + 1e-9)
                         & (online[candidates] >= 1) & (online[candidates] < r)]
        for chunk in np.unique(due).tolist():
            wanted = r - int(online[chunk])
            if wanted <= 0:
                continue
            for target in self.policy.targets(self, chunk, wanted):
                row = self.holders[chunk]
                free = np.nonzero(row < 0)[0]
                if free.size == 0 or not self.on[target] or not self.alive[target]:
                    break
                row[free[0]] = target
                online[chunk] += 1
                self.live[chunk] += 1
                self.peer_extra[target].append(chunk)
                self.repairs += 1
            if online[chunk] >= r:
                self.below_since[chunk] = INF

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, progress: Callable[[str], None] | None = None) -> FleetResult:
        cfg = self.config
        wall0, cpu0 = time.perf_counter(), time.process_time()
        self.place_initial()
        end_h = cfg.days * HOURS_PER_DAY
        join_rate_h = self.churn.join_per_year * cfg.peers / (DAYS_PER_YEAR * HOURS_PER_DAY)
        self._at(self._exp_h(join_rate_h), JOIN)
        if self.policy.grace_h is not None:
            self._at(SWEEP_H, SWEEP)
        self._at(0.0, SAMPLE)
        heap = self.heap
        next_report = 30.0
        while heap and heap[0][0] <= end_h:
            t_h, seq, kind, p, epoch = heapq.heappop(heap)
            self._integrate(t_h)
            if p >= 0 and kind in (DOWN, UP, LEAVE, DISK_LOSS) and epoch != self.epoch[p]:
                continue  # planned for a life of this peer that already ended
            self.events[KINDS[kind]] += 1
            if kind == DOWN:
                arr = self._go_offline(p)
                self._at(self._exp_h(1.0 / self.churn.transient_mean_h), UP, p, epoch)
                self._check_later(arr)
            elif kind == UP:
                self._go_online(p)
                self._at(self._exp_h(self.churn.transient_per_day / HOURS_PER_DAY),
                         DOWN, p, epoch)
            elif kind == LEAVE:
                self._lose_disk(p)
            elif kind == DISK_LOSS:
                self._lose_disk(p)
                self._at(self.churn.disk_return_h, DISK_BACK, p, int(self.epoch[p]))
            elif kind == DISK_BACK:
                self._come_alive(p)
            elif kind == JOIN:
                self._come_alive(self._new_peer())
                self._at(self._exp_h(join_rate_h), JOIN)
            elif kind == CHECK:
                self._repair(self.payload.pop(seq))
            elif kind == SWEEP:
                self._repair(np.nonzero(self.online < self.replicas)[0].astype(np.int64))
                self._at(SWEEP_H, SWEEP)
            elif kind == SAMPLE:
                available = 1.0 - self.unavailable_files / self.files
                self.min_available = min(self.min_available, available)
                if len(self.samples) < MAX_SAMPLES:
                    self.samples.append((t_h / HOURS_PER_DAY, available, self.lost_files,
                                         self.repairs))
                self._at(cfg.sample_h, SAMPLE)
                if progress is not None and t_h / HOURS_PER_DAY >= next_report:
                    next_report += 30.0
                    progress(f"day {t_h / HOURS_PER_DAY:.0f}: {self.lost_files} file(s) "
                             f"lost, {self.repairs} repairs, {len(self.pool)} peers")
        self._integrate(end_h)
        checks = self.check()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return FleetResult(
            config=cfg, policy=self.policy.name, files=self.files, chunks=self.chunks,
            lost_chunks=self.lost_chunks, lost_files=self.lost_files,
            availability_mean=1.0 - self.area / (self.files * end_h) if end_h > 0 else 1.0,
            availability_min=self.min_available, repairs=self.repairs,
            peers_end=len(self.pool), events=self.events, wall_s=wall, cpu_s=cpu,
            place_s=self.place_s, place_cpu_s=self.place_cpu_s, samples=self.samples,
            checks=checks)

    # ---- checkers ----------------------------------------------------------------------------
    def check(self) -> list[FleetCheck]:
        """The fleet's invariants, recomputed from scratch at the end."""
        holders = self.holders
        present = holders >= 0
        safe = np.where(present, holders, 0)
        live = present.sum(axis=1)
        online = (present & self.on[safe]).sum(axis=1)
        accounting = bool(np.array_equal(live, self.live) and np.array_equal(online, self.online)
                          and np.array_equal(self.lost, live == 0))
        c = self.chunks_per_file
        rows = holders.reshape(self.files, c, -1)
        # A peer holding every chunk of a file appears in every one of its rows.
        first = rows[:, 0, :]
        in_all = np.ones(first.shape, dtype=bool)
        for j in range(1, c):
            in_all &= (first[:, :, None] == rows[:, j, None, :]).any(axis=2)
        full = int(np.count_nonzero(in_all & (first >= 0)))
        owned = int(np.count_nonzero(holders == self.owners[np.arange(self.chunks) // c, None]))
        return [
            FleetCheck("replica-accounting", accounting,
                       "per-chunk online/live counts equal a recount from the holders"),
            FleetCheck("no-full-file", full == 0,
                       f"{full} (file, peer) pair(s) where one peer holds every chunk"),
            FleetCheck("owner-never-holds", owned == 0,
                       f"{owned} chunk copies on their owner's own peer"),
        ]


def run_fleet(config: FleetConfig, *, policy: RepairPolicy | None = None,
              progress: Callable[[str], None] | None = None) -> FleetResult:
    return Fleet(config, policy=policy).run(progress)
