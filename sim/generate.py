"""Scenarios made up from a seed (``python -m sim run random --seed S``), VOPR style.

The catalog tests what someone thought of; a generated scenario mixes the same actions in
orders nobody wrote down: uploads and downloads, some in the background with faults landing
mid-transfer (kills on a trigger, restarts, flaps, cuts, isolation, toxics, power loss),
bit-rot, a full disk, removals, the owner's repair pass, checks, heals. Everything is drawn
from ``random.Random`` seeded by the seed alone, so ``random`` with seed S is one fixed
scenario (and its replay command is just that). Operations expect ``any`` outcome: under
these faults a transfer may fail honestly; what must hold is what the checkers check.
Destruction is kept to the victim (its chunks may rot, its disk may go), so every chunk
keeps an intact replica and the final download check applies to every acknowledged file.
"""

from __future__ import annotations

import random
from typing import Any

from chaos.scenario import Scenario, Step
from sim.world import stream_seed

RANDOM_NAME = "random"
MAX_FILE_BYTES = 1_500_000
MIN_STEPS, MAX_STEPS = 6, 24


def _pick(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    total = sum(w for _, w in choices)
    x = rng.randrange(total)
    for name, weight in choices:
        if x < weight:
            return name
        x -= weight
    raise AssertionError("unreachable")


def _peer(rng: random.Random, peers: int) -> str:
    return rng.choice(["victim", "bystander"] + [f"peer-{i}" for i in range(peers)])


def _fault(rng: random.Random, peers: int, *, during: str | None) -> Step:
    """One harness action; ``during`` is the kind of the background operation, if any."""
    kind = _pick(rng, [("kill", 4), ("restart", 3), ("flap", 3), ("toxic", 4), ("cut", 2),
                       ("isolate", 2), ("down", 1), ("powerloss", 2), ("bitrot", 2),
                       ("sleep", 1), ("heal", 2), ("resume", 2), ("disk_full", 1),
                       ("disk_loss", 1)])
    args: dict[str, Any] = {}
    if kind in ("kill", "powerloss"):
        args["peer"] = "victim" if rng.random() < 0.6 else _peer(rng, peers)
        if during == "put" and rng.random() < 0.7:
            args["when"] = "receiving"
        elif during == "get" and rng.random() < 0.7:
            args["when"] = "downloading"
        if kind == "kill" and rng.random() < 0.2:
            args["service"] = rng.choice(["receiver", "sender"])
        elif kind == "kill" and args["peer"] == "victim" and rng.random() < 0.2:
            args["wipe"] = True  # its disk is lost for good (destruction: the victim only)
    elif kind == "restart":
        args = {"peer": _peer(rng, peers), "graceful": rng.random() < 0.5}
    elif kind == "flap":
        args = {"peer": _peer(rng, peers), "times": rng.randint(1, 4),
                "down_ms": [50, rng.randint(60, 800)], "up_ms": [50, rng.randint(60, 800)],
                "mode": rng.choice(["down", "reset_peer"])}
    elif kind == "toxic":
        toxic = rng.choice(["latency", "bandwidth", "timeout", "reset_peer"])
        attributes = {"latency": {"latency": rng.randint(5, 200), "jitter": 0},
                      "bandwidth": {"rate": rng.choice([128, 256, 1024, 4096])},
                      "timeout": {"timeout": rng.choice([0, 100, 500])},
                      "reset_peer": {"timeout": rng.choice([0, 200])}}[toxic]
        args = {"peer": _peer(rng, peers), "type": toxic,
                "stream": rng.choice(["upstream", "downstream"]), "attributes": attributes}
        if rng.random() < 0.5:
            args["service"] = rng.choice(["receiver", "sender"])
    elif kind == "cut":
        args = {"source": "owner", "target": _peer(rng, peers)}
    elif kind in ("isolate", "down", "resume", "disk_full"):
        args = {"peer": _peer(rng, peers)}
    elif kind in ("bitrot", "disk_loss"):
        args = {"peer": "victim"}  # destruction only on the victim: see the module docstring
        if kind == "bitrot":
            args["chunks"] = rng.randint(1, 4)
    elif kind == "sleep":
        args = {"ms": rng.randint(10, 3000)}
    return Step(kind, args)


def generate(seed: int, peers: int) -> Scenario:
    """The scenario ``random`` names for ``seed`` on ``peers`` peers."""
    rng = random.Random(stream_seed(RANDOM_NAME, seed, "generate"))
    files: list[str] = []
    steps: list[Step] = []
    target = rng.randint(MIN_STEPS, MAX_STEPS)
    while len(steps) < target:
        what = "put" if not files else _pick(rng, [("put", 4), ("get", 4), ("fault", 3),
                                                    ("check", 1), ("rm", 1), ("gc", 1),
                                                    ("repair", 1)])
        if what == "repair":  # the owner's check --all --repair (mydrive.engine.durability)
            steps.append(Step("repair", {"dead_after_s": rng.choice([0, 0, 60]),
                                         "expect": "any"}))
        elif what == "rm":
            steps.append(Step("rm", {"file": rng.choice(files), "expect": "any"}))
        elif what == "gc":
            steps.append(Step("gc", {"expect": "any"}))
        elif what in ("put", "get"):
            if what == "put":
                name = f"f{len(files)}.bin"
                files.append(name)
                size = int(2 ** rng.uniform(10, 20.5))
                args: dict[str, Any] = {"file": name, "size_bytes": min(size, MAX_FILE_BYTES)}
            else:
                args = {"file": rng.choice(files)}
            args["expect"] = "any"
            background = rng.random() < 0.6
            if background:
                args["background"] = True
            steps.append(Step(what, args))
            if background:
                for _ in range(rng.randint(1, 3)):
                    steps.append(_fault(rng, peers, during=what))
                steps.append(Step("wait", {}))
        elif what == "fault":
            steps.append(_fault(rng, peers, during=None))
        else:
            steps.append(Step("check", {}))
    up = rng.choice([0.0, 0.0, rng.uniform(0.0, 0.2)])
    serve = rng.choice([0.0, 0.0, rng.uniform(0.0, 0.2)])
    return Scenario(name=RANDOM_NAME, summary=f"generated from seed {seed} for {peers} peers",
                    corrupt_upload_rate=(round(up, 4), round(up, 4)),
                    corrupt_serve_rate=(round(serve, 4), round(serve, 4)),
                    corrupt_serve_peers=rng.choice(["victim", "*"]), steps=tuple(steps))
