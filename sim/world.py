"""The simulated world of one run: N peers, the network, the disks, the clock, the owner.

Built from one seed the way the chaos harness builds a cluster (chaos/runner.py), so one
(scenario, seed) names the same owner, victim, corruption rates and file bytes in both:
every such draw comes from ``random.Random(derive_seed(scenario, seed))`` in the harness's
order. What the harness leaves to the real world (timing, packet loss, which unsynced bytes a
power loss takes, key material) comes from separate seeded streams derived from the same
seed, so adding a draw to one never shifts another.

The owner's operations are the product's engine functions, unchanged: ``upload_file`` and
``download_file`` with the simulator's transport, clock, randomness and event trace, the
inline executor (one thread: scheduling decides nothing) and the harness's fault hooks.
File records stay in memory (the metadata store is not simulated). Faults are methods that
change the network, the peers or their disks; none of them moves time, so they can run from
the timeline in the middle of a transfer.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mydrive.crypto.keys import create_user
from mydrive.crypto.primitives import new_kdf_params
from mydrive.engine.download import download_file
from mydrive.engine.durability import DurabilitySettings, run_check
from mydrive.engine.gc import bury, collect
from mydrive.engine.settings import TransferSettings
from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.errors import FileExists, MydriveError, UnknownFile
from mydrive.formats.digest import DIGEST_ALG
from mydrive.formats.filerecord import FileRecord
from mydrive.metadata.signed import verify_file
from mydrive.metadata.sqlite import SqliteStore
from mydrive.metadata.trusted import write_signed
from mydrive.runtime.executor import inline_executor
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.testing.faults import FaultPlan, SeededFaults
from mydrive.testing.randomness import SeededRandomness
from mydrive.transport.base import PeerAddress
from sim import disk
from sim.clock import SimClock
from sim.faults import FaultLog, RecordingFaults
from sim.network import LinkSpec, Network, SimToxic
from sim.peer import SimPeer
from sim.trace import Trace
from sim.transport import ClientKilled, Hooks, SimTransport

USER, PASSPHRASE = "chaos-owner", "chaos-passphrase"  # noqa: S105 - the harness's test user
FAST_KDF: dict[str, int] = {"time_cost": 1, "memory_kib": 8 * 1024, "parallelism": 1}
TRIGGER_TIMEOUT_MS = 30_000       # chaos/runner.py TRIGGER_TIMEOUT_S
TRIGGER_POLL_MS = 5.0             # chaos/runner.py POLL_S: a trigger acts within a poll
CLIENT_START_MS = (200.0, 1000.0)  # a CLI process starting (imports, login), drawn per op
RESTART_MS = (500.0, 2000.0)      # a peer's services stopping and answering again
MAX_OPS = 1_000
MAX_PROBLEMS = 100


def derive_seed(scenario: str, seed: int) -> int:
    """The chaos harness's per-scenario seed (chaos/runner.py ``derive_seed``; a test
    checks they agree)."""
    return int.from_bytes(hashlib.sha256(f"{scenario}|{seed}".encode()).digest()[:8], "big")


def stream_seed(scenario: str, seed: int, stream: str) -> int:
    """A seed for one of the simulator's own random streams."""
    return int.from_bytes(hashlib.sha256(f"sim|{scenario}|{seed}|{stream}".encode())
                          .digest()[:8], "big")


@dataclass(frozen=True)
class SimConfig:
    peers: int = 5
    seed: int = 1
    # chaos/runner.py CHAOS_OVERRIDES: the harness's sizes, so corruption lands alike
    chunk_size_bytes: int = 256 * 1024
    segment_size_bytes: int = 16 * 1024
    max_inflight_chunks: int = 4
    replicas: int = 2
    rpc_timeout_s: float = 15.0
    capacity_bytes: int = 8 * 2**30
    link: LinkSpec = field(default_factory=LinkSpec)

    def settings(self) -> TransferSettings:
        return TransferSettings(chunk_size_bytes=self.chunk_size_bytes,
                                segment_size_bytes=self.segment_size_bytes,
                                replicas=self.replicas,
                                max_inflight_chunks=self.max_inflight_chunks)


@dataclass
class Op:
    name: str
    kind: str          # put | get
    file: str
    expect: str        # ok | any | killed
    size_bytes: int = 0
    dead_after_s: float = 0.0  # repair: unreachable this long = dead
    outcome: str = "pending"   # ok | failed | killed
    error: str = ""
    t_start_ms: int = 0
    t_end_ms: int = 0
    transfer: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        totals = self.transfer.get("totals", {})
        return {"op": self.name, "kind": self.kind, "file": self.file, "expect": self.expect,
                "outcome": self.outcome, "error": self.error,
                "duration_ms": self.t_end_ms - self.t_start_ms, "totals": totals}


@dataclass
class Trigger:
    event: str               # receiving | serving
    peer: str | None
    op_kind: str | None
    op_name: str | None
    fire: Callable[[], None]


@dataclass(frozen=True)
class Sleep:
    """A harness script waits ``ms`` of virtual time."""

    ms: float


@dataclass(frozen=True)
class Await:
    """A harness script waits for a transfer event (the chaos ``when`` triggers)."""

    event: str
    peer: str | None = None
    op_kind: str | None = None
    op_name: str | None = None


Script = Generator[Sleep | Await, None, None]


class World:
    def __init__(self, scenario: str, config: SimConfig, work: Path, *,
                 corrupt_upload_rate: tuple[float, float] = (0.0, 0.0),
                 corrupt_serve_rate: tuple[float, float] = (0.0, 0.0),
                 corrupt_serve_peers: str = "victim", trace: Trace | None = None) -> None:
        assert 3 <= config.peers <= 64
        self.scenario = scenario
        self.config = config
        self.seed = config.seed
        self.work = work
        self.settings = config.settings()
        # The harness's draws, in the harness's order (chaos/runner.py Run.__init__).
        self.rng = random.Random(derive_seed(scenario, config.seed))
        self.names = [f"peer-{i}" for i in range(config.peers)]
        self.owner = self.rng.choice(self.names)
        self.victim = self.rng.choice([n for n in self.names if n != self.owner])
        self.bystander = self.rng.choice(
            [n for n in self.names if n not in (self.owner, self.victim)] or [self.victim])
        self.rates = {"corrupt_upload_rate": round(self.rng.uniform(*corrupt_upload_rate), 4),
                      "corrupt_serve_rate": round(self.rng.uniform(*corrupt_serve_rate), 4)}
        # The simulator's own streams.
        self.timing_rng = random.Random(stream_seed(scenario, config.seed, "timing"))
        self.disk_rng = random.Random(stream_seed(scenario, config.seed, "disk"))
        engine_seed = stream_seed(scenario, config.seed, "engine")
        self.engine_randomness = SeededRandomness(engine_seed)
        self.check_randomness = SeededRandomness(stream_seed(scenario, config.seed, "check"))
        self.clock = SimClock()
        self.trace = trace or Trace()
        self.net = Network(config.link, random.Random(stream_seed(scenario, config.seed,
                                                                  "net")))
        self.fault_log = FaultLog(trace=self.trace, now_ms=self.clock.now_ms)
        up, serve = self.rates["corrupt_upload_rate"], self.rates["corrupt_serve_rate"]
        self.client_faults: FaultHooks = NO_FAULTS
        if up > 0:
            self.client_faults = RecordingFaults(
                SeededFaults(FaultPlan(seed=config.seed, corrupt_upload_rate=up)),
                self.fault_log)
        serve_targets = self.names if corrupt_serve_peers == "*" else [self.victim]
        self.peers: dict[str, SimPeer] = {}
        for name in self.names:
            faults: FaultHooks = NO_FAULTS
            if serve > 0 and name in serve_targets:
                faults = RecordingFaults(
                    SeededFaults(FaultPlan(seed=config.seed, corrupt_serve_rate=serve)),
                    self.fault_log)
            self.peers[name] = SimPeer(name, work / "peers" / name, clock=self.clock,
                                       capacity_bytes=config.capacity_bytes, faults=faults)
            self.peers[name].start()
        hooks = Hooks(observe=self.observe, client_killed=self._client_killed,
                      peer_error=self._peer_error)
        self.transport = SimTransport(source=self.owner, peers=self.peers, net=self.net,
                                      clock=self.clock, trace=self.trace,
                                      fault_log=self.fault_log, hooks=hooks,
                                      rpc_timeout_s=config.rpc_timeout_s)
        self.quiet_transport = SimTransport(source=self.owner, peers=self.peers, net=self.net,
                                            clock=self.clock, trace=self.trace,
                                            fault_log=self.fault_log, hooks=hooks,
                                            rpc_timeout_s=config.rpc_timeout_s, quiet=True)
        _, self.keys = create_user(
            USER, PASSPHRASE, random_bytes=self.engine_randomness.random_bytes,
            kdf_params=new_kdf_params(self.engine_randomness.random_bytes, **FAST_KDF))
        _, self.intruder = create_user(
            "chaos-intruder", "other", random_bytes=self.check_randomness.random_bytes,
            kdf_params=new_kdf_params(self.check_randomness.random_bytes, **FAST_KDF))
        self.download_dir = work / "downloads"
        self.sources: dict[str, bytes] = {}         # logical file -> bytes
        self.expected: dict[str, bytes] = {}        # acknowledged remote path -> bytes
        self.stored_ever: dict[str, bytes] = {}     # the same, removed files included
        self.records: dict[str, FileRecord] = {}    # acknowledged remote path -> record
        # The owner's metadata store: file documents (so a collection pass sees what is
        # live) and tombstones, for the product's deletion (mydrive.engine.gc).
        self.meta = SqliteStore(work / "owner-metadata.sqlite")
        # Removed files: file id hex -> (record, peers still pending in its tombstone).
        self.removed: dict[str, tuple[FileRecord, frozenset[str]]] = {}
        self.ops: dict[str, Op] = {}
        self.current_op: Op | None = None
        self.killed_op: str | None = None
        self.triggers: list[Trigger] = []
        self.active_scripts = 0
        self.rotted: list[tuple[str, bytes]] = []      # (peer id, chunk id) rotted on purpose
        self.destroyed: set[tuple[str, bytes]] = set()  # (peer, chunk) a fault destroyed
        self.problems: list[str] = []
        self.peer_errors: list[str] = []
        self.note("sim.start", scenario=scenario, seed=config.seed, peers=config.peers,
                  owner=self.owner, victim=self.victim, upload_rate=str(up),
                  serve_rate=str(serve))

    # ---- bookkeeping -----------------------------------------------------------------------
    def note(self, kind: str, **fields: str | int | bool | None | tuple[str | int, ...]) -> None:
        self.trace.record(kind, t_ms=self.clock.now_ms(), **fields)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        self.note("sim.problem", text=text)

    def _peer_error(self, peer: str, exc: BaseException) -> None:
        text = f"{peer}: {type(exc).__name__}: {exc}"
        if len(self.peer_errors) < MAX_PROBLEMS:
            self.peer_errors.append(text)
        self.note("sim.peer.error", peer=peer, error=type(exc).__name__)

    def _client_killed(self) -> bool:
        return self.current_op is not None and self.current_op.name == self.killed_op

    def peer_infos(self) -> list[PeerInfo]:
        return [PeerInfo(address=self.address(n), capacity_bytes=self.config.capacity_bytes)
                for n in self.names]

    def address(self, name: str) -> PeerAddress:
        return PeerAddress(peer_id=name, receiver_address=f"sim:{name}/receiver",
                           sender_address=f"sim:{name}/sender")

    def reachable(self, name: str) -> bool:
        """The harness's ``cluster.reachable(owner, peer)`` (running, link not cut), and
        also no half-open or resetting link to its sender (the harness only asks after a
        heal, when there is none; the simulator also checks mid-run)."""
        return (self.peers[name].running()
                and self.net.breakage(self.owner, name, "sender") is None)

    # ---- triggers and harness scripts ----------------------------------------------------------
    def observe(self, event: str, peer: str) -> None:
        op = self.current_op
        for trig in list(self.triggers):
            if trig.event != event or (trig.peer is not None and trig.peer != peer):
                continue
            if trig.op_kind is not None and (op is None or op.kind != trig.op_kind):
                continue
            if trig.op_name is not None and (op is None or op.name != trig.op_name):
                continue
            self.triggers.remove(trig)
            trig.fire()

    def start_script(self, script: Script) -> None:
        """Run a harness script on the timeline, concurrently with the operations."""
        self.active_scripts += 1
        self._step_script(script)

    def _step_script(self, script: Script) -> None:
        try:
            command = next(script)
        except StopIteration:
            self.active_scripts -= 1
            return
        if isinstance(command, Sleep):
            self.clock.at_ms(command.ms, lambda: self._step_script(script), "script sleep")
            return
        done = [False]

        def fire() -> None:
            if done[0]:
                return
            done[0] = True
            timeout.cancel()
            self.note("sim.trigger", event=command.event, peer=command.peer)
            self.clock.at_ms(self.timing_rng.uniform(0, TRIGGER_POLL_MS),
                             lambda: self._step_script(script), "trigger")

        def expire() -> None:
            if done[0]:
                return
            done[0] = True
            self.triggers[:] = [t for t in self.triggers if t.fire is not fire]
            self.note("sim.fault", action="trigger-missed", event=command.event,
                      peer=command.peer)
            self._step_script(script)

        self.triggers.append(Trigger(command.event, command.peer, command.op_kind,
                                     command.op_name, fire))
        timeout = self.clock.at_ms(TRIGGER_TIMEOUT_MS, expire, "trigger timeout")

    def drain_scripts(self) -> None:
        """Let every running harness script finish (time moves to its next entry)."""
        while self.active_scripts > 0:
            due = self.clock.next_due_ns()
            assert due is not None, "a harness script waits on nothing"
            self.clock.run_until_ns(due)

    def sleep_ms(self, ms: float) -> None:
        self.clock.advance_ms(ms)

    # ---- operations (the owner's CLI) ----------------------------------------------------------
    def new_op(self, kind: str, file: str, expect: str, size_bytes: int = 0) -> Op:
        assert len(self.ops) < MAX_OPS
        if kind == "put" and file not in self.sources:
            self.sources[file] = self.rng.randbytes(size_bytes)  # the harness's draw
        base = f"{kind}-{file}" if file else kind
        name, n = base, 2
        while name in self.ops:  # the harness's names: get-a.bin, get-a.bin-2, ...
            name, n = f"{base}-{n}", n + 1
        op = Op(name=name, kind=kind, file=file, expect=expect, size_bytes=size_bytes)
        self.ops[name] = op
        return op

    def run_op(self, op: Op) -> None:
        """Run one operation to its end on the engine; judge it like the harness does."""
        assert self.current_op is None
        self.current_op = op
        op.t_start_ms = self.clock.now_ms()
        self.note("sim.op.start", op=op.name)
        try:
            {"put": self._put, "get": self._get, "rm": self._rm, "gc": self._gc,
             "repair": self._repair}[op.kind](op)
            op.outcome = "ok"
        except ClientKilled:
            op.outcome, op.error = "killed", "killed by the scenario"
        except MydriveError as exc:
            op.outcome, op.error = "failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the engine crashed: a finding
            op.outcome, op.error = "failed", f"{type(exc).__name__}: {exc}"
            self.problem(f"{op.name} crashed the engine with {type(exc).__name__}: {exc}")
        finally:
            self.current_op = None
            if self.killed_op == op.name:
                self.killed_op = None
        op.t_end_ms = self.clock.now_ms()
        self.note("sim.op.done", op=op.name, outcome=op.outcome,
                  error=op.error.split(":", 1)[0] or None)
        if op.expect == "ok" and op.outcome != "ok":
            self.problem(f"{op.name} failed: {op.error}")
        if op.expect == "killed" and op.outcome == "ok":
            self.problem(f"{op.name} finished before it could be killed")

    def _put(self, op: Op) -> None:
        path = f"/{op.file}"
        if path in self.records:
            raise FileExists(f"{path!r} already exists; remove it first or pick another name")
        src = self.work / "sources" / op.file
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(self.sources[op.file])
        result = upload_file(src, keys=self.keys, owner_peer_id=self.owner,
                             peers=self.peer_infos(), settings=self.settings,
                             transport=self.transport, clock=self.clock,
                             faults=self.client_faults, randomness=self.engine_randomness,
                             executor=inline_executor, events=self.trace)
        op.transfer = result.ledger.to_json()
        now_ms = self.clock.now_ms()
        record = FileRecord(file_id=result.file_id, owner_id=self.keys.user_id,
                            path_tag=path, encrypted_path=b"", plan=result.plan,
                            wrapped_file_key=result.wrapped_file_key, digest_alg=DIGEST_ALG,
                            created_ms=now_ms, chunks=result.chunks,
                            transfer={"upload": op.transfer}, updated_ms=now_ms)
        # Signed like the client's (the repairer verifies what it rewrites).
        write_signed(self.meta, record.doc_id, record.to_doc(), self.keys.identity)
        self.records[path] = record        # acknowledged: the file exists for its owner
        self.expected[path] = self.sources[op.file]
        self.stored_ever[path] = self.sources[op.file]

    def _rm(self, op: Op) -> None:
        """The client's ``remove``: tombstone, file document gone, one collection pass."""
        path = f"/{op.file}"
        record = self.records.get(path)
        if record is None:
            raise UnknownFile(f"no file or folder {path!r} for this user")
        bury(self.meta, self.keys, record, self.clock.now_ms())
        del self.records[path]
        del self.expected[path]
        self.removed[record.file_id.hex()] = (record, frozenset(
            p for c in record.chunks for p in c.replicas))
        self._gc(op)

    def _repair(self, op: Op) -> None:
        """The client's ``check --all --repair --dead-after-s S``: audit every replica,
        restore every chunk to R (mydrive.engine.durability, .repair, .repair_policy)."""
        settings = DurabilitySettings(dead_after_s=op.dead_after_s,
                                      min_failed_probes=1 if op.dead_after_s == 0 else 3)
        files = [(path, self.records[path]) for path in sorted(self.records)]
        report = run_check(files, keys=self.keys, store=self.meta, peers=self.peer_infos(),
                           owner_peer_id=self.owner, transport=self.transport,
                           clock=self.clock, randomness=self.engine_randomness,
                           transfer=self.settings, settings=settings, repair=True,
                           executor=inline_executor, events=self.trace)
        for path, record in files:  # the records as the repair rewrote them
            doc = self.meta.get(record.doc_id)
            if doc is not None:
                self.records[path] = verify_file(record.doc_id, doc,
                                                 owner_key=self.keys.identity.public_bytes())
        op.transfer = {"check": report.to_json()}

    def _gc(self, op: Op) -> None:
        """The client's ``collect_garbage``: deliver the pending owner-signed deletes."""
        report = collect(self.meta, self.keys,
                         peers={n: self.address(n) for n in self.names},
                         transport=self.transport, clock=self.clock,
                         random_bytes=self.engine_randomness.random_bytes)
        for file_hex, (record, _) in list(self.removed.items()):
            self.removed[file_hex] = (record, frozenset(report.pending.get(file_hex, ())))
        op.transfer = {"gc": report.to_json()}
        self.note("sim.gc", removed=report.chunks_removed, absent=report.chunks_absent,
                  pending=tuple(sorted(report.pending)))

    def _get(self, op: Op) -> None:
        path = f"/{op.file}"
        record = self.records.get(path)
        if record is None:
            raise UnknownFile(f"no file or folder {path!r} for this user")
        destination = self.download_dir / op.file
        destination.parent.mkdir(parents=True, exist_ok=True)
        ledger = download_file(record, destination, keys=self.keys,
                               peers={n: self.address(n) for n in self.names},
                               settings=self.settings, transport=self.transport,
                               clock=self.clock, overwrite=True,
                               randomness=self.engine_randomness, executor=inline_executor,
                               events=self.trace)
        op.transfer = ledger.to_json()
        if destination.read_bytes() != self.expected[path]:
            self.problem(f"{op.name}: the downloaded bytes differ from what was stored")

    def close(self) -> None:
        self.meta.close()

    def path_of(self, record: FileRecord) -> str:
        return record.path_tag

    def kill_client(self, op_name: str) -> None:
        self.killed_op = op_name
        self.note("sim.fault", action="kill-client", op=op_name)

    # ---- faults (none of them moves time) ------------------------------------------------------
    def kill(self, peer: str, service: str | None = None) -> None:
        self.peers[peer].kill(service)
        self.note("sim.fault", action="kill", peer=peer, service=service or "all")

    def resume(self, peer: str) -> None:
        self.peers[peer].start()
        self.note("sim.fault", action="resume", peer=peer)

    def power_loss(self, peer: str) -> None:
        """The machine loses power: services die, unsynced writes are lost."""
        self.peers[peer].kill()
        lost = disk.power_loss(self.peers[peer].store_dir, self.disk_rng)
        self.note("sim.fault", action="power-loss", peer=peer, segments_lost=lost)

    def wipe(self, peer: str) -> None:
        """The disk of a (killed) peer is gone for good: it will come back empty."""
        store_dir = self.peers[peer].store_dir
        held = disk.committed_chunks(store_dir)
        self.destroyed.update((peer, chunk_id) for chunk_id in held)
        disk.wipe(store_dir)
        self.note("sim.fault", action="wipe", peer=peer, chunks=len(held))

    def lose_disk(self, peer: str) -> None:
        """The disk is gone (its chunks with it): the peer restarts on a new, empty one."""
        was_running = self.peers[peer].running()
        self.peers[peer].kill()
        store_dir = self.peers[peer].store_dir
        held = disk.committed_chunks(store_dir)
        self.destroyed.update((peer, chunk_id) for chunk_id in held)
        disk.wipe(store_dir)
        if was_running:
            self.peers[peer].start()
        self.note("sim.fault", action="disk-loss", peer=peer, chunks=len(held))

    def fill_disk(self, peer: str) -> None:
        """No room left for new chunks (other data filled the disk)."""
        p = self.peers[peer]
        p.capacity_bytes = 0
        if p.receiver is not None:
            p.receiver.store.capacity_bytes = 0
        self.note("sim.fault", action="disk-full", peer=peer)

    def bitrot(self, peer: str, count: int) -> None:
        rotted = disk.bitrot(self.peers[peer].store_dir, self.rng, count)
        for chunk_id, offset in rotted:
            self.rotted.append((peer, chunk_id))
            self.destroyed.add((peer, chunk_id))
            self.note("sim.fault", action="bitrot", peer=peer, chunk=chunk_id.hex()[:12],
                      offset=offset)
        if not rotted:
            self.note("sim.fault", action="bitrot-nothing-to-rot", peer=peer)

    def isolate(self, peer: str) -> None:
        self.net.isolate(peer, self.names)
        self.note("sim.fault", action="isolate", peer=peer)

    def cut(self, source: str, target: str) -> None:
        self.net.cut(source, target)
        self.note("sim.fault", action="cut", source=source, target=target)

    def set_down(self, peer: str, down: bool) -> None:
        self.net.set_down(peer, self.names, down)
        self.note("sim.fault", action="down" if down else "up", peer=peer)

    def add_toxic(self, toxic: SimToxic) -> None:
        self.net.add_toxic(toxic)
        self.note("sim.fault", action="toxic", peer=toxic.target, source=toxic.source,
                  type=toxic.kind, stream=toxic.stream, service=toxic.service or "both",
                  attributes=tuple(f"{k}={v}" for k, v in toxic.attributes))

    def remove_toxic(self, target: str, name: str) -> None:
        self.net.remove_toxic(target, name)
        self.note("sim.fault", action="remove-toxic", peer=target, name=name)

    def heal(self) -> None:
        self.net.heal()
        self.note("sim.fault", action="heal")

    def restart_ms(self) -> float:
        return self.timing_rng.uniform(*RESTART_MS)

    def client_start_ms(self) -> float:
        return self.timing_rng.uniform(*CLIENT_START_MS)

