"""Run one scenario on a fresh cluster from one seed, then run every checker.

Every random choice (owner, victim, rates, file bytes, which chunk rots, flap timing)
comes from ``random.Random`` seeded by (scenario name, seed); Toxiproxy gets toxicity 1 and
jitter 0 only. The report lists the faults applied with their times, the checkers'
verdicts, the transfer accounting of every operation, the timings, and the command that
replays the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mydrive.client import PeerClient
from mydrive.crypto.keys import UserKeys, create_user
from mydrive.crypto.primitives import new_kdf_params
from mydrive.errors import PeerUnavailable
from mydrive.formats.filerecord import FileRecord
from mydrive.metadata.trusted import write_user
from mydrive.node.local_client import open_client
from mydrive.testing.faults import FaultPlan, read_fault_log
from mydrive.transport.base import PeerAddress

from . import checkers
from .checkers import PeerView, Verdict, open_store
from .local import LocalCluster
from .netns import NetnsCluster
from .scenario import SCENARIO_DIR, Scenario, Step
from .toxiproxy import Toxic

if TYPE_CHECKING:
    from .compose import ComposeCluster

USER, PASSPHRASE = "chaos-owner", "chaos-passphrase"  # noqa: S105 - a throwaway test user
FAST_KDF: dict[str, Any] = {"time_cost": 1, "memory_kib": 8 * 1024, "parallelism": 1}
CHAOS_OVERRIDES: dict[str, Any] = {"chunk_size_bytes": 256 * 1024,
                                   "segment_size_bytes": 16 * 1024,
                                   "rpc_timeout_s": 15.0, "max_inflight_chunks": 4}
OP_TIMEOUT_S = 120.0
TRIGGER_TIMEOUT_S = 30.0
POLL_S = 0.005


def derive_seed(scenario: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{scenario}|{seed}".encode()).digest()[:8], "big")


BACKENDS = ("local", "netns", "compose")


def replay_command(scenario: str, peers: int, seed: int, backend: str = "local") -> str:
    extra = "" if backend == "local" else f" --backend {backend}"
    return f"python -m chaos run {scenario} --peers {peers} --seed {seed}{extra}"


def make_cluster(backend: str, home: Path, peers: int, *, seed: int,
                 peer_fault_plan: dict[str, Path]) -> LocalCluster | NetnsCluster | ComposeCluster:
    """A cluster of the chosen backend: ``local`` processes on loopback, ``netns``, or
    ``compose`` (a generated docker compose project, chaos/compose.py)."""
    if backend == "compose":
        from .compose import ComposeCluster

        return ComposeCluster(home, peers, seed=seed, peer_fault_plan=peer_fault_plan,
                              **CHAOS_OVERRIDES)
    if backend == "netns":
        return NetnsCluster(home, peers, seed=seed, peer_fault_plan=peer_fault_plan,
                            **CHAOS_OVERRIDES)
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    return LocalCluster(home, peers, seed=seed, peer_fault_plan=peer_fault_plan,
                        **CHAOS_OVERRIDES)


@dataclass
class Op:
    name: str
    kind: str
    file: str
    proc: subprocess.Popen[bytes]
    started_s: float
    expect: str
    done: bool = False
    rc: int | None = None
    duration_s: float = 0.0
    transfer: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        totals = self.transfer.get("totals", {})
        return {"op": self.name, "kind": self.kind, "file": self.file, "rc": self.rc,
                "expect": self.expect, "duration_s": round(self.duration_s, 3),
                "totals": totals, "resent": len(self.transfer.get("resent", [])),
                "bad_fetched": len(self.transfer.get("bad_fetched", [])),
                "error": self.error}


@dataclass
class Report:
    scenario: str
    seed: int
    peers: int
    owner: str = ""
    victim: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    workdir: str = ""
    backend: str = "local"
    scenario_ref: str = ""  # what `python -m chaos run` takes: the name, or the file's path

    @property
    def ok(self) -> bool:
        return not self.problems and not any(v.failed for v in self.verdicts)

    @property
    def replay(self) -> str:
        return replay_command(self.scenario_ref or self.scenario, self.peers, self.seed,
                              self.backend)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "seed": self.seed, "peers": self.peers,
                "ok": self.ok, "owner": self.owner, "victim": self.victim, "rates": self.rates,
                "faults": self.faults, "operations": [o.to_json() for o in self.ops],
                "problems": self.problems, "checkers": [v.to_json() for v in self.verdicts],
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "replay": self.replay, "workdir": self.workdir, "backend": self.backend}


class Run:
    def __init__(self, scenario: Scenario, *, peers: int, seed: int, work: Path,
                 backend: str = "local") -> None:
        self.scenario = scenario
        self.backend = backend
        self.rng = random.Random(derive_seed(scenario.name, seed))
        self.seed = seed
        self.work = work
        self.report = Report(scenario.name, seed, peers, workdir=str(work), backend=backend)
        if scenario.path is not None and scenario.path.parent != SCENARIO_DIR:
            self.report.scenario_ref = str(scenario.path)
        names = [f"peer-{i}" for i in range(peers)]
        self.owner = self.rng.choice(names)
        self.victim = self.rng.choice([n for n in names if n != self.owner])
        self.bystander = self.rng.choice([n for n in names if n not in (self.owner, self.victim)]
                                         or [self.victim])
        self.report.owner, self.report.victim = self.owner, self.victim
        up = round(self.rng.uniform(*scenario.corrupt_upload_rate), 4)
        serve = round(self.rng.uniform(*scenario.corrupt_serve_rate), 4)
        self.report.rates = {"corrupt_upload_rate": up, "corrupt_serve_rate": serve}
        self.fault_log = work / "faults.jsonl"
        self.client_env = {"MYDRIVE_PASSPHRASE": PASSPHRASE}
        # Seeded faults are switched on by --fault-plan FILE, never by the environment.
        work.mkdir(parents=True, exist_ok=True)
        self.client_fault_args: list[str] = []
        if up > 0:
            plan = FaultPlan(seed=seed, corrupt_upload_rate=up, log=self.fault_log)
            self.client_fault_args = ["--fault-plan", str(plan.write(work / "faults-put.json"))]
        peer_fault_plan: dict[str, Path] = {}
        if serve > 0:
            plan = FaultPlan(seed=seed, corrupt_serve_rate=serve, log=self.fault_log)
            serve_plan = plan.write(work / "faults-serve.json")
            targets = names if scenario.corrupt_serve_peers == "*" else [self.victim]
            peer_fault_plan = {n: serve_plan for n in targets}
        self.cluster = make_cluster(backend, work / "cluster", peers, seed=seed,
                                    peer_fault_plan=peer_fault_plan)
        self.download_dir = work / "downloads"
        self.sources: dict[str, bytes] = {}       # logical file -> bytes
        self.expected: dict[str, bytes] = {}      # acknowledged remote path -> bytes
        self.ops: dict[str, Op] = {}
        self.rotted: list[tuple[str, bytes]] = []
        self.keys: UserKeys | None = None
        self.t0 = time.monotonic()

    # ---- helpers -----------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def fault(self, action: str, **detail: Any) -> None:
        self.report.faults.append({"t_s": round(self.now(), 3), "action": action, **detail})

    def resolve(self, ref: str) -> list[str]:
        names = [p.name for p in self.cluster.peers()]
        if ref == "*":
            return names
        if ref == "owner":
            return [self.owner]
        if ref == "victim":
            return [self.victim]
        if ref == "bystander":
            return [self.bystander]
        if ref not in names:
            raise ValueError(f"no peer {ref!r} in this cluster")
        return [ref]

    def one(self, ref: str) -> str:
        (name,) = self.resolve(ref)
        return name

    def owner_client(self) -> PeerClient:
        return open_client(self.cluster.peer_dir(self.owner))

    # ---- set-up ------------------------------------------------------------------------
    def setup(self) -> None:
        try:
            self.cluster.start()
        except PeerUnavailable as exc:
            # A port chosen at creation was taken by another process before the service
            # bound it: build the cluster again with fresh ports, once.
            self.cluster.stop()
            self.fault("setup-retried", reason=str(exc)[:200])
            shutil.rmtree(self.cluster.home, ignore_errors=True)
            self.cluster = make_cluster(self.backend, self.cluster.home, self.cluster.count,
                                        seed=self.seed,
                                        peer_fault_plan=self.cluster.peer_fault_plan)
            self.cluster.start()
        record, keys = create_user(USER, PASSPHRASE, kdf_params=new_kdf_params(**FAST_KDF))
        with closing(self.cluster.peer_config(self.owner).open_metadata()) as store:
            write_user(store, record, keys, create_only=True)  # signed by the user
        self.keys = keys

    # ---- operations --------------------------------------------------------------------
    def start_op(self, kind: str, file: str, expect: str, size_bytes: int = 0) -> Op:
        if kind == "put":
            if file not in self.sources:
                self.sources[file] = self.rng.randbytes(size_bytes)
            src = self.work / "sources" / file
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(self.sources[file])
            args = ["put", "--user", USER, str(src), f"/{file}", "--json",
                    *self.client_fault_args]
        elif kind == "repair":  # the owner's check --repair of every file (docs/durability.md)
            args = ["check", "--user", USER, "--all", "--repair", "--json", "--dead-after-s",
                    file]
        else:
            args = ["get", "--user", USER, f"/{file}", "--out", str(self.download_dir),
                    "--overwrite", "--json"]
        name = f"{kind}-{file}" if kind != "repair" else "repair"
        n = 2
        while name in self.ops:
            name, n = f"{kind}-{file}-{n}", n + 1
        proc = self.cluster.run_cli(self.owner, args, env=self.client_env,
                                    log_path=self.work / "logs" / f"{name}.log")
        op = Op(name, kind, file, proc, self.now(), expect)
        self.ops[name] = op
        self.report.ops.append(op)
        return op

    def finish_op(self, op: Op, timeout_s: float = OP_TIMEOUT_S) -> None:
        if op.done:
            return
        try:
            out, _ = op.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            op.proc.kill()
            out, _ = op.proc.communicate()
            op.error = f"timed out after {timeout_s:.0f} s"
        op.done, op.rc = True, op.proc.returncode
        op.duration_s = self.now() - op.started_s
        if op.rc == 0:
            doc = json.loads(out)
            op.transfer = (doc["transfer"].get("upload", {}) if op.kind == "put"
                           else doc["transfer"])
            if op.kind == "put":
                self.expected[f"/{op.file}"] = self.sources[op.file]
        elif not op.error:
            log = self.work / "logs" / f"{op.name}.log"
            lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            op.error = lines[-1] if lines else f"exit code {op.rc}"
        if op.expect == "ok" and op.rc != 0:
            self.report.problems.append(f"{op.name} failed: {op.error}")
        if op.expect == "killed" and op.rc == 0:
            self.report.problems.append(f"{op.name} finished before it could be killed")

    def wait_trigger(self, when: str, *, peer: str | None = None, op: str | None = None) -> None:
        if when == "now":
            return
        deadline = time.monotonic() + TRIGGER_TIMEOUT_S
        if when == "receiving":
            assert peer is not None
            store = self.cluster.peer_dir(peer) / "store"
            before = set(store.glob("chunks/*/*.chunk"))
            while time.monotonic() < deadline:
                if any(store.glob("incoming/*.part")) or set(store.glob("chunks/*/*.chunk")) \
                        - before:
                    return
                time.sleep(POLL_S)
        elif when == "downloading":
            partial = self.download_dir / ".mydrive-partial"
            running = self.ops[op] if op else None
            while time.monotonic() < deadline:
                if any(p.stat().st_size > 0 for p in partial.glob("*.part")
                       if p.exists()):
                    return
                if running is not None and running.proc.poll() is not None:
                    break
                time.sleep(POLL_S)
        self.fault("trigger-missed", when=when, peer=peer, op=op)

    # ---- steps -------------------------------------------------------------------------
    def step(self, step: Step) -> None:
        do = step.do
        if do in ("put", "get"):
            op = self.start_op(do, str(step.get("file")), str(step.get("expect", "ok")),
                               int(step.get("size_bytes", 0)))
            if not step.get("background", False):
                self.finish_op(op)
        elif do == "wait":
            targets = [self.ops[step.get("op")]] if step.get("op") else list(self.ops.values())
            for op in targets:
                self.finish_op(op)
        elif do == "kill":
            peer = self.one(str(step.get("peer", "victim")))
            self.wait_trigger(str(step.get("when", "now")), peer=peer, op=step.get("op"))
            self.cluster.kill(peer, step.get("service"))
            if step.get("wipe", False):  # its disk is lost for good: it comes back empty
                shutil.rmtree(self.cluster.peer_dir(peer) / "store", ignore_errors=True)
            self.fault("kill", peer=peer, service=step.get("service", "all"),
                       wipe=bool(step.get("wipe", False)))
        elif do == "kill_op":
            op = self.ops[str(step.get("op"))]
            self.wait_trigger(str(step.get("when", "now")), op=op.name)
            with contextlib.suppress(ProcessLookupError):
                op.proc.kill()
            self.fault("kill-client", op=op.name)
            self.finish_op(op)
        elif do == "resume":
            for peer in self.resolve(str(step.get("peer", "victim"))):
                self.cluster.resume(peer)
                self.fault("resume", peer=peer)
        elif do == "restart":
            peer = self.one(str(step.get("peer", "victim")))
            self.cluster.restart(peer, graceful=bool(step.get("graceful", True)))
            self.fault("restart", peer=peer)
        elif do == "rolling_restart":
            order = [p.name for p in self.cluster.peers()]
            self.rng.shuffle(order)
            for peer in order:
                self.cluster.restart(peer, graceful=bool(step.get("graceful", True)))
                self.fault("restart", peer=peer)
                time.sleep(int(step.get("pause_ms", 0)) / 1000)
        elif do == "isolate":
            peer = self.one(str(step.get("peer", "victim")))
            self.cluster.isolate(peer)
            self.fault("isolate", peer=peer)
        elif do == "cut":
            source = self.one(str(step.get("source", "owner")))
            target = self.one(str(step.get("target", "victim")))
            self.cluster.cut(source, target)
            self.fault("cut", source=source, target=target)
        elif do in ("down", "up"):
            for peer in self.resolve(str(step.get("peer", "victim"))):
                self.cluster.set_down(peer, do == "down")
                self.fault(do, peer=peer)
        elif do == "flap":
            self.flap(step)
        elif do == "toxic":
            self.toxic(step)
        elif do == "heal":
            self.cluster.heal()
            self.fault("heal")
        elif do == "sleep":
            time.sleep(int(step.get("ms", 0)) / 1000)
        elif do == "bitrot":
            self.bitrot(self.one(str(step.get("peer", "victim"))), int(step.get("chunks", 1)))
        elif do == "repair":
            self.finish_op(self.start_op("repair", str(float(step.get("dead_after_s", 0))),
                                         str(step.get("expect", "ok"))))
        elif do == "check":
            for verdict in self.check():
                verdict.checker = f"{verdict.checker} (mid-run t={self.now():.1f}s)"
                self.report.verdicts.append(verdict)
        else:  # pragma: no cover - scenario.parse rejects unknown actions
            raise AssertionError(do)

    def toxic(self, step: Step) -> None:
        attributes = {k: int(v) for k, v in dict(step.get("attributes", {})).items()}
        source = step.get("source")
        source_name = self.one(str(source)) if source else None
        for target in self.resolve(str(step.get("peer", "victim"))):
            if target == source_name:
                continue
            name = f"t{len(self.report.faults)}"
            toxic = Toxic(name=name, type=str(step.get("type")),
                          stream=str(step.get("stream", "downstream")), attributes=attributes)
            self.cluster.add_toxic(target, toxic, source=source_name,
                                   service=step.get("service"))
            self.fault("toxic", peer=target, source=source_name, type=toxic.type,
                       stream=toxic.stream, service=step.get("service", "both"),
                       attributes=attributes)

    def flap(self, step: Step) -> None:
        peer = self.one(str(step.get("peer", "victim")))
        down_lo, down_hi = step.get("down_ms", [200, 600])
        up_lo, up_hi = step.get("up_ms", [200, 600])
        mode = str(step.get("mode", "down"))
        for n in range(int(step.get("times", 3))):
            down_ms = self.rng.randint(int(down_lo), int(down_hi))
            up_ms = self.rng.randint(int(up_lo), int(up_hi))
            if mode == "reset_peer":
                toxic = Toxic(name=f"flap{n}", type="reset_peer", stream="upstream",
                              attributes={"timeout": 0})
                self.cluster.add_toxic(peer, toxic)
                self.fault("flap-reset", peer=peer, for_ms=down_ms)
                time.sleep(down_ms / 1000)
                self.cluster.remove_toxic(peer, toxic.name)
            else:
                self.cluster.set_down(peer, True)
                self.fault("flap-down", peer=peer, for_ms=down_ms)
                time.sleep(down_ms / 1000)
                self.cluster.set_down(peer, False)
            self.fault("flap-up", peer=peer, for_ms=up_ms)
            time.sleep(up_ms / 1000)

    def bitrot(self, peer: str, count: int) -> None:
        """Flip one byte at a seeded offset in ``count`` seeded committed chunks of ``peer``."""
        store = open_store(self.cluster.peer_dir(peer) / "store")
        held = sorted(store.chunk_ids())
        peer_id = self.cluster.peer_config(peer).config.peer_id
        for chunk_id in self.rng.sample(held, min(count, len(held))):
            offset = self.rng.randrange(store.ciphertext_extent(chunk_id)[1])
            store.rot_ciphertext(chunk_id, offset)  # a ciphertext byte, as the store keeps it
            self.rotted.append((peer_id, chunk_id))
            self.fault("bitrot", peer=peer, chunk=chunk_id.hex()[:12], offset=offset)
        if not held:
            self.fault("bitrot-nothing-to-rot", peer=peer)

    # ---- checks ------------------------------------------------------------------------
    def check(self) -> list[Verdict]:
        assert self.keys is not None
        keys = self.keys
        peers = [PeerView(p.name, p.peer_id, self.cluster.peer_dir(p.name) / "store")
                 for p in self.cluster.peers()]
        by_id = {p.peer_id: p.name for p in peers}
        owner_id = next(p.peer_id for p in peers if p.name == self.owner)
        client = self.owner_client()
        try:
            records: list[FileRecord] = client._records(keys)

            def path_of(record: FileRecord) -> str:
                return client._decrypted_path(keys, record)

            def download(path: str, out: Path) -> Path:
                got, _ = client.get(keys, path, out_dir=out, overwrite=True)
                return got

            def reachable(peer_id: str) -> bool:
                return peer_id in by_id and self.cluster.reachable(self.owner, by_id[peer_id])

            def address_of(peer_id: str) -> PeerAddress | None:
                name = by_id[peer_id]
                if name == self.owner or not self.cluster.reachable(self.owner, name):
                    return None
                return PeerAddress(peer_id, self.cluster.dialed_address(self.owner, name,
                                                                        "receiver"),
                                   self.cluster.dialed_address(self.owner, name, "sender"))

            _, intruder = create_user("chaos-intruder", "other",
                                      kdf_params=new_kdf_params(**FAST_KDF))
            log = read_fault_log(self.fault_log)
            return [
                checkers.check_no_full_file(records, peers, owner_id),
                checkers.check_resent_equals_corrupted(records, log),
                checkers.check_downloads(records, self.expected, path_of, download, reachable),
                checkers.check_owner_only(records, peers, owner=keys, intruder=intruder,
                                          transport=client.transport, address_of=address_of),
                checkers.check_no_partial(
                    peers, [self.download_dir, self.cluster.peer_config(self.owner).download_dir],
                    self.expected, rotted=self.rotted),
            ]
        finally:
            client.close()


def run_scenario(scenario: Scenario, *, peers: int, seed: int, workdir: Path | None = None,
                 keep: bool = False, backend: str = "local") -> Report:
    """Run ``scenario`` on a fresh ``peers``-peer cluster from ``seed``; never raises for a
    failed guarantee (the report says), only for a broken harness."""
    work = workdir or Path(tempfile.mkdtemp(prefix=f"mydrive-chaos-{scenario.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    run = Run(scenario, peers=peers, seed=seed, work=work, backend=backend)
    report = run.report
    t_start = time.monotonic()
    try:
        run.setup()
        report.timings["setup_s"] = time.monotonic() - t_start
        t_steps = time.monotonic()
        try:
            for step in scenario.steps:
                run.step(step)
        except Exception as exc:  # a step that broke is a finding, checked like the rest
            report.problems.append(f"step raised {type(exc).__name__}: {exc}")
        for op in run.ops.values():
            run.finish_op(op)
        report.timings["scenario_s"] = time.monotonic() - t_steps
        # Checkers judge the final state: every fault undone, every peer running again.
        t_checks = time.monotonic()
        run.cluster.heal()
        for name, alive in run.cluster.running_services().items():
            if not alive:
                run.cluster.resume(name)
        report.verdicts.extend(run.check())
        report.timings["checks_s"] = time.monotonic() - t_checks
    finally:
        for op in run.ops.values():
            if op.proc.poll() is None:
                op.proc.kill()
                op.proc.wait()
        run.cluster.stop()
        report.timings["total_s"] = time.monotonic() - t_start
    if report.ok and not keep and workdir is None:
        shutil.rmtree(work, ignore_errors=True)
        report.workdir = ""
    return report


def format_report(report: Report) -> str:
    lines = [f"scenario {report.scenario}  peers {report.peers}  seed {report.seed}  "
             f"backend {report.backend}  "
             f"owner {report.owner}  victim {report.victim}",
             f"rates: upload corruption {report.rates.get('corrupt_upload_rate', 0):.2%}, "
             f"serve corruption {report.rates.get('corrupt_serve_rate', 0):.2%}",
             "faults applied:"]
    for f in report.faults:
        detail = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("t_s", "action")
                          and v is not None)
        lines.append(f"  {f['t_s']:>7.2f}s  {f['action']:<14} {detail}")
    if not report.faults:
        lines.append("  (none)")
    lines.append("operations (transfer accounting):")
    for op in report.ops:
        t = op.transfer.get("totals", {})
        lines.append(
            f"  {op.name:<18} rc={op.rc} {op.duration_s:6.2f}s  sent={t.get('segments_sent', 0)}"
            f" rejected={t.get('segments_rejected', 0)} resent={t.get('segments_resent', 0)}"
            f" fetched={t.get('segments_fetched', 0)} bad={t.get('segments_bad', 0)}"
            f" failures={t.get('failures', 0)}" + (f"  [{op.error}]" if op.error else ""))
    lines.append("checkers:")
    for v in report.verdicts:
        lines.append(f"  {v.verdict.upper():<4}  {v.checker}: {v.detail}")
        lines.extend(f"          - {p}" for p in v.problems[:checkers.MAX_PROBLEMS_LISTED])
    for p in report.problems:
        lines.append(f"PROBLEM  {p}")
    lines.append("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()))
    if report.ok:
        lines.append("result: OK")
    else:
        lines.append(f"result: FAILED; replay with: {report.replay}")
        if report.workdir:
            lines.append(f"work directory kept: {report.workdir}")
    return "\n".join(lines)
