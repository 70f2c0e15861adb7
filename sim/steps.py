"""The chaos catalog's steps, mapped onto the simulated world (the table in docs/simulator.md).

A scenario is the harness's (chaos/scenario.py): the same files, parsed by the same parser.
The harness runs steps one after another while background operations run as processes;
here an operation runs on the engine in this thread, so the steps that follow a background
operation, up to the next ``wait``, operation or ``check``, become a *harness script* that
runs on the timeline while the operation runs: a ``when`` trigger waits for the transfer
event it names, a pause waits virtual time, and every fault lands between two messages of
the transfer, at the virtual time it would have on a real cluster. Two background
operations without a ``wait`` between them run one after the other, not overlapping.

Random choices are the harness's, drawn from the world's scenario generator in the
harness's order (owner, victim, rates, file bytes, flap timings, which chunks rot, restart
order), so one seed means the same in ``python -m chaos run`` and ``python -m sim run``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chaos.scenario import Step
from sim.network import TOXIC_KINDS, SimToxic
from sim.world import TRIGGER_TIMEOUT_MS, Await, Op, Script, Sleep, World

# Harness actions that may run while a background operation runs.
CONCURRENT = frozenset({"kill", "kill_op", "resume", "restart", "rolling_restart", "isolate",
                        "cut", "down", "up", "flap", "toxic", "heal", "sleep", "bitrot",
                        "powerloss", "disk_loss", "disk_full"})
# Simulator-only actions (sim/scenario.py): what a real cluster can't do on demand.
SIM_ONLY_ACTIONS: dict[str, set[str]] = {
    "powerloss": {"peer", "when", "op"},   # the machine dies: unsynced writes are lost
    "disk_loss": {"peer"},                 # the disk is gone; the peer comes back empty
    "disk_full": {"peer"},                 # no room for new chunks
    "rm": {"file", "expect"},              # the owner removes a file (mydrive.engine.gc)
    "gc": {"expect"},                      # the owner's collection pass (``mydrive gc``)
    # the owner's ``check --all --repair`` (the harness has it too once its parser does)
    "repair": {"dead_after_s", "expect"},
}

CheckHook = Callable[[str], bool]  # (label) -> False when a checker failed: stop


class StepRunner:
    def __init__(self, world: World, check: CheckHook) -> None:
        self.w = world
        self.check = check
        self.toxic_count = 0

    # ---- peers named by role -------------------------------------------------------------
    def resolve(self, ref: str) -> list[str]:
        w = self.w
        if ref == "*":
            return list(w.names)
        if ref == "owner":
            return [w.owner]
        if ref == "victim":
            return [w.victim]
        if ref == "bystander":
            return [w.bystander]
        if ref not in w.names:
            raise ValueError(f"no peer {ref!r} in this cluster")
        return [ref]

    def one(self, ref: str) -> str:
        (name,) = self.resolve(ref)
        return name

    # ---- the scenario --------------------------------------------------------------------
    def unresolved(self, steps: Sequence[Step]) -> list[str]:
        """Peer references no peer of this world answers to (checked before running, so a
        bad name can't surface in the middle of a transfer)."""
        bad = []
        for n, step in enumerate(steps, 1):
            for key in ("peer", "source", "target"):
                ref = step.get(key)
                if ref is None:
                    continue
                try:
                    self.resolve(str(ref))
                except ValueError as exc:
                    bad.append(f"step {n} ({step.do}): {exc}")
        return bad

    def run(self, steps: Sequence[Step]) -> bool:
        """Run every step, checking after each; False at the first failed check."""
        bad = self.unresolved(steps)
        if bad:
            for text in bad:
                self.w.problem(text)
            return self.check("before step 1 (the scenario names unknown peers)")
        i = 0
        while i < len(steps):
            step = steps[i]
            label = f"step {i + 1} ({step.do})"
            if step.do in ("put", "get"):
                op = self.w.new_op(step.do, str(step.get("file")), str(step.get("expect", "ok")),
                                   int(step.get("size_bytes", 0)))
                if not step.get("background", False):
                    self.w.run_op(op)
                    i += 1
                else:
                    script: list[Step] = []
                    j = i + 1
                    while j < len(steps) and steps[j].do in CONCURRENT:
                        script.append(steps[j])
                        j += 1
                        if steps[j - 1].do == "kill_op":
                            break  # the harness finishes the killed operation right there
                    self.section(op, script)
                    if j < len(steps) and steps[j].do == "wait":
                        j += 1
                    label = f"steps {i + 1}-{j} ({step.do} in the background)"
                    i = j
            elif step.do in ("rm", "gc", "repair"):
                op = self.w.new_op(step.do, str(step.get("file", "")),
                                   str(step.get("expect", "ok")))
                op.dead_after_s = float(step.get("dead_after_s", 0))
                self.w.run_op(op)
                i += 1
            elif step.do == "check":
                i += 1
                if not self.check(f"at {label}, mid-run"):
                    return False
                continue
            elif step.do == "wait":
                i += 1
            else:
                self.now(self.harness(step))
                i += 1
            if not self.check(f"after {label}"):
                return False
        return True

    def section(self, op: Op, script_steps: list[Step]) -> None:
        """A background operation with the harness steps that run while it runs."""
        w = self.w
        w.note("sim.section", op=op.name, steps=tuple(s.do for s in script_steps))
        w.start_script(self.script(script_steps))
        w.sleep_ms(w.client_start_ms())  # the CLI process starting, while faults go on
        w.run_op(op)
        w.drain_scripts()

    def script(self, steps: list[Step]) -> Script:
        for step in steps:
            yield from self.harness(step)

    def now(self, script: Script) -> None:
        """Run harness commands in the foreground: nothing else runs meanwhile."""
        for command in script:
            if isinstance(command, Sleep):
                self.w.sleep_ms(command.ms)
            else:  # no operation runs, so no transfer event can come: the harness waits
                self.w.sleep_ms(TRIGGER_TIMEOUT_MS)
                self.w.note("sim.fault", action="trigger-missed", event=command.event,
                            peer=command.peer)

    # ---- one harness action -------------------------------------------------------------------
    def trigger(self, when: str, *, peer: str | None = None, op: str | None = None) -> Script:
        if when == "receiving":
            yield Await("receiving", peer=peer, op_name=op)
        elif when == "downloading":
            yield Await("serving", op_kind="get", op_name=op)

    def harness(self, step: Step) -> Script:  # noqa: C901 - one branch per action, flat
        w, do = self.w, step.do
        if do == "kill":
            peer = self.one(str(step.get("peer", "victim")))
            yield from self.trigger(str(step.get("when", "now")), peer=peer, op=step.get("op"))
            w.kill(peer, step.get("service"))
            if step.get("wipe", False):
                w.wipe(peer)
        elif do == "powerloss":
            peer = self.one(str(step.get("peer", "victim")))
            yield from self.trigger(str(step.get("when", "now")), peer=peer, op=step.get("op"))
            w.power_loss(peer)
        elif do == "kill_op":
            name = str(step.get("op"))
            yield from self.trigger(str(step.get("when", "now")), op=name)
            w.kill_client(name)
        elif do == "resume":
            for peer in self.resolve(str(step.get("peer", "victim"))):
                w.resume(peer)
        elif do == "restart":
            peer = self.one(str(step.get("peer", "victim")))
            yield from self.restart(peer)
        elif do == "rolling_restart":
            order = list(w.names)
            w.rng.shuffle(order)  # the harness's draw
            for peer in order:
                yield from self.restart(peer)
                yield Sleep(float(step.get("pause_ms", 0)))
        elif do == "isolate":
            w.isolate(self.one(str(step.get("peer", "victim"))))
        elif do == "cut":
            w.cut(self.one(str(step.get("source", "owner"))),
                  self.one(str(step.get("target", "victim"))))
        elif do in ("down", "up"):
            for peer in self.resolve(str(step.get("peer", "victim"))):
                w.set_down(peer, do == "down")
        elif do == "flap":
            yield from self.flap(step)
        elif do == "toxic":
            self.toxic(step)
        elif do == "heal":
            w.heal()
        elif do == "sleep":
            yield Sleep(float(step.get("ms", 0)))
        elif do == "bitrot":
            w.bitrot(self.one(str(step.get("peer", "victim"))), int(step.get("chunks", 1)))
        elif do == "disk_loss":
            w.lose_disk(self.one(str(step.get("peer", "victim"))))
        elif do == "disk_full":
            w.fill_disk(self.one(str(step.get("peer", "victim"))))
        else:
            raise AssertionError(f"no mapping for action {do!r}")

    def restart(self, peer: str) -> Script:
        self.w.note("sim.fault", action="restart", peer=peer)
        self.w.kill(peer)
        yield Sleep(self.w.restart_ms())
        self.w.resume(peer)

    def toxic(self, step: Step) -> None:
        attributes = tuple(sorted((str(k), int(v))
                                  for k, v in dict(step.get("attributes", {})).items()))
        kind = str(step.get("type"))
        source = step.get("source")
        source_name = self.one(str(source)) if source else None
        for target in self.resolve(str(step.get("peer", "victim"))):
            if target == source_name:
                continue
            if kind not in TOXIC_KINDS:
                self.w.note("sim.unmapped", action="toxic", type=kind)
                continue
            self.toxic_count += 1
            self.w.add_toxic(SimToxic(name=f"t{self.toxic_count}", target=target, kind=kind,
                                      stream=str(step.get("stream", "downstream")),
                                      source=source_name, service=step.get("service"),
                                      attributes=attributes))

    def flap(self, step: Step) -> Script:
        w = self.w
        peer = self.one(str(step.get("peer", "victim")))
        down_lo, down_hi = step.get("down_ms", [200, 600])
        up_lo, up_hi = step.get("up_ms", [200, 600])
        mode = str(step.get("mode", "down"))
        for n in range(int(step.get("times", 3))):
            down_ms = w.rng.randint(int(down_lo), int(down_hi))  # the harness's draws
            up_ms = w.rng.randint(int(up_lo), int(up_hi))
            if mode == "reset_peer":
                name = f"flap{n}"
                w.add_toxic(SimToxic(name=name, target=peer, kind="reset_peer",
                                     stream="upstream", attributes=(("timeout", 0),)))
                yield Sleep(down_ms)
                w.remove_toxic(peer, name)
            else:
                w.set_down(peer, True)
                yield Sleep(down_ms)
                w.set_down(peer, False)
            yield Sleep(up_ms)
