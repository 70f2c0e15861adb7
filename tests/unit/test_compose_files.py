"""The docker deployment files (docker/) checked without a Docker engine.

This machine has no Docker engine and no compose plugin, so `docker compose config` can't
run here. Instead these tests parse the YAML and check the properties the deployment relies
on; each checker returns a list of problems, and the mutation tests show every checker
finding the problem it exists for in a broken copy of the files.
"""

from __future__ import annotations

import copy
import http.server
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILES = ("compose.peer.yaml", "compose.local.yaml")
PEER_MOUNT = "/peer"
INTERP = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$", re.I)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


def is_mydrive(svc: dict[str, Any]) -> bool:
    return "mydrive" in str(svc.get("image", "")).split("/")[-1].split(":")[0] or \
        str(svc.get("image", "")).startswith("${MYDRIVE_IMAGE")


def is_nginx(svc: dict[str, Any]) -> bool:
    return str(svc.get("image", "")).startswith("nginx:")


def substitute(text: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} with ``env``."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in env:
            return env[name]
        default = re.match(r"\$\{[A-Z0-9_]+:?-(.*)\}", m.group(0))
        if default:
            return default.group(1)
        raise KeyError(f"{m.group(0)} has no value")
    return INTERP.sub(one, text)


SAMPLE_ENV = {"MYDRIVE_PEER_NAME": "alpha", "MYDRIVE_PEER_DIR": "/srv/mydrive/alpha",
              "MYDRIVE_PEER_PORT": "7443", "MYDRIVE_UI_PORT": "7444",
              "MYDRIVE_COUCHDB_USER": "u", "MYDRIVE_COUCHDB_PASSWORD": "p",
              "MYDRIVE_LOCAL_HOME": "/srv/mydrive-local"}


# ---- checkers: each returns the problems it found --------------------------------------
def check_commands(compose: dict[str, Any]) -> list[str]:
    """Every mydrive service runs a real `mydrive` subcommand with options it knows."""
    problems = []
    for name, svc in compose["services"].items():
        if not is_mydrive(svc):
            continue
        command = [substitute(str(a), SAMPLE_ENV) for a in svc.get("command", [])]
        if not command:
            problems.append(f"{name}: no command")
            continue
        problems += [f"{name}: {p}" for p in check_cli_args(command)]
    return problems


_HELP_CACHE: dict[tuple[str, ...], tuple[int, str]] = {}


def cli_help(words: tuple[str, ...]) -> tuple[int, str]:
    if words not in _HELP_CACHE:
        r = subprocess.run([sys.executable, "-m", "mydrive", *words, "--help"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        _HELP_CACHE[words] = (r.returncode, r.stdout + r.stderr)
    return _HELP_CACHE[words]


def check_cli_args(args: list[str]) -> list[str]:
    """``args`` (after the `mydrive` entry point) name a subcommand; its options exist."""
    words = []
    for a in args:
        if a.startswith("-") or a.startswith("/") or a.isdigit():
            break
        words.append(a)
    # The leading words up to the first argument that is not a subcommand: `serve receiver`
    # is command `serve` with argument `receiver`, so try the longest prefix that exists.
    while words:
        rc, text = cli_help(tuple(words))
        if rc == 0 and "Usage: mydrive " + " ".join(words) in text:
            break
        words.pop()
    if not words:
        return [f"`mydrive {' '.join(args)}` is not a mydrive subcommand"]
    problems = []
    for a in args[len(words):]:
        if a.startswith("--") and not re.search(rf"(^|[\s,]){re.escape(a)}[\s=/,]", text):
            problems.append(f"`mydrive {' '.join(words)}` has no option {a}")
    return problems


def check_images(compose: dict[str, Any], version: str) -> list[str]:
    """Images are pinned: couchdb:3, nginx:1.2x, mydrive at the project's version."""
    problems = []
    for name, svc in compose["services"].items():
        image = str(svc.get("image", ""))
        if image.startswith("couchdb"):
            ok = image == "couchdb:3"
        elif image.startswith("nginx"):
            ok = re.fullmatch(r"nginx:1\.2\d", image) is not None
        elif is_mydrive(svc):
            ok = substitute(image, {}) == f"mydrive:{version}"
        else:
            ok = False
        if not ok:
            problems.append(f"{name}: image {image!r} is not pinned as expected")
    return problems


def published(svc: dict[str, Any]) -> list[str]:
    return [substitute(str(p), SAMPLE_ENV) for p in svc.get("ports", [])]


def check_ports(compose: dict[str, Any]) -> list[str]:
    """Only nginx publishes; the UI port only on the host's 127.0.0.1; services stay in
    nginx's network namespace (so they never listen on the compose network themselves)."""
    problems = []
    for name, svc in compose["services"].items():
        ports = published(svc)
        if ports and not is_nginx(svc):
            problems.append(f"{name}: publishes {ports} but is not nginx")
        if "expose" in svc:
            problems.append(f"{name}: exposes ports")
        if is_nginx(svc):
            if not any(p.startswith("127.0.0.1:") for p in ports):
                problems.append(f"{name}: no UI port bound to 127.0.0.1")
            for p in ports:
                parts = p.split(":")
                if len(parts) == 3 and parts[0] != "127.0.0.1":
                    problems.append(f"{name}: {p} bound to {parts[0]}")
        mode = svc.get("network_mode", "")
        if (is_mydrive(svc) or str(svc.get("image", "")).startswith("couchdb")) and \
                mode != "none" and not (mode.startswith("service:")
                                        and is_nginx(compose["services"].get(mode[8:], {}))):
            problems.append(f"{name}: network_mode {mode!r} is not an nginx service's")
    ui_ports = {p.split(":")[1] for s in compose["services"].values() for p in published(s)
                if p.startswith("127.0.0.1:")}
    if not ui_ports:
        problems.append("no UI port published at all")
    return problems


def check_secrets(compose_text: str, compose: dict[str, Any]) -> list[str]:
    """No secret in the files: secret-named variables only ever come from the env file."""
    problems = []
    for name, svc in compose["services"].items():
        env = svc.get("environment", {}) or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for key, value in env.items():
            if SECRET_NAME.search(key) and not re.fullmatch(
                    r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", str(value)):
                problems.append(f"{name}: {key} is not taken from the env file: {value!r}")
        for v in svc.get("volumes", []) or []:
            if re.search(r"pki|ca\.key|network", str(v)):
                problems.append(f"{name}: mounts the network CA ({v}); peers never hold ca.key")
    for m in INTERP.finditer(compose_text):
        if SECRET_NAME.search(m.group(1)) and re.match(r"\$\{[A-Z0-9_]+:?-", m.group(0)):
            problems.append(f"{m.group(0)}: a secret with a default value")
    if re.search(r"BEGIN [A-Z ]*PRIVATE KEY", compose_text):
        problems.append("a private key in the file")
    return problems


def split_volume(v: Any) -> tuple[str, str]:
    """(source, target) of a short volume entry; colons inside ${VAR:?msg} don't split."""
    tokens: list[str] = []
    masked = INTERP.sub(lambda m: tokens.append(m.group(0)) or f"\0{len(tokens) - 1}\0",
                        str(v))
    source, target = masked.split(":")[:2]
    unmask = lambda t: re.sub(r"\0(\d+)\0", lambda m: tokens[int(m.group(1))], t)  # noqa: E731
    return unmask(source), unmask(target)


def check_volumes(compose: dict[str, Any]) -> list[str]:
    """Named volumes exist; bind mounts come from the env file; a pod shares one peer dir."""
    problems = []
    declared = set((compose.get("volumes") or {}).keys())
    pod_dirs: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []) or []:
            source, target = split_volume(v)
            if source.startswith("${") or source.startswith("/") or source.startswith("."):
                if not source.startswith("${MYDRIVE_"):
                    problems.append(f"{name}: bind mount {source} not from the env file")
            elif source not in declared:
                problems.append(f"{name}: volume {source!r} is not declared")
            if target == PEER_MOUNT:
                pod = svc.get("network_mode", "")[8:] or name
                if svc.get("network_mode") == "none":  # the render step of that pod
                    pod = next((n for n, s in compose["services"].items() if is_nginx(s)
                                and any(INTERP.sub(r"\1", split_volume(x)[0])
                                        == INTERP.sub(r"\1", source)
                                        for x in s.get("volumes", []))), name)
                pod_dirs.setdefault(pod, set()).add(INTERP.sub(r"\1", source))
        if (is_mydrive(svc) or is_nginx(svc)) and not any(
                split_volume(v)[1] == PEER_MOUNT for v in svc.get("volumes", []) or []):
            problems.append(f"{name}: does not mount the peer directory at {PEER_MOUNT}")
    for pod, dirs in pod_dirs.items():
        if len(dirs) != 1:
            problems.append(f"pod {pod}: its containers mount different peer dirs {dirs}")
    used = {split_volume(v)[0] for s in compose["services"].values()
            for v in s.get("volumes", []) or []}
    problems += [f"volume {v} declared but never used" for v in declared - used]
    return problems


def reachable(services: dict[str, Any], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(services.get(name, {}).get("depends_on", {}) or {})
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += list(services.get(n, {}).get("depends_on", {}) or {})
    return seen


def check_dependencies(compose: dict[str, Any]) -> list[str]:
    """depends_on names real services; conditions match what the target can report."""
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on", {}) or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        mode = svc.get("network_mode", "")
        if mode.startswith("service:") and mode[8:] not in reachable(services, name):
            problems.append(f"{name}: shares {mode[8:]}'s network but does not depend on it")
        for dep, spec in deps.items():
            target = services.get(dep)
            if target is None:
                problems.append(f"{name}: depends on unknown service {dep}")
                continue
            cond = spec.get("condition", "service_started")
            has_check = "healthcheck" in target and not target["healthcheck"].get("disable")
            if cond == "service_healthy" and not has_check:
                problems.append(f"{name}: waits for {dep} to be healthy; {dep} has no check")
            if cond == "service_completed_successfully" and target.get("restart") != "no":
                problems.append(f"{name}: waits for {dep} to finish; {dep} restarts forever")
            if cond == "service_healthy" and mode == f"service:{dep}" and \
                    not spec.get("restart"):
                problems.append(f"{name}: lives in {dep}'s network namespace but is not "
                                f"restarted with it (restart: true)")
        if is_mydrive(svc) and svc.get("restart") != "no":
            command = svc.get("command", [])
            env = svc.get("environment", {}) or {}
            if command[:1] != ["serve"] or env.get("MYDRIVE_SERVICE") != command[1]:
                problems.append(f"{name}: health check service {env.get('MYDRIVE_SERVICE')!r}"
                                f" is not what it serves ({command[:2]})")
    # no cycles
    def visit(n: str, path: tuple[str, ...]) -> None:
        if n in path:
            problems.append(f"dependency cycle: {' -> '.join((*path, n))}")
            return
        for d in services.get(n, {}).get("depends_on", {}) or {}:
            visit(d, (*path, n))
    for n in services:
        visit(n, ())
    return problems


def dockerfile_stages(text: str) -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by FROM."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def exec_form(instruction: str) -> list[str]:
    return list(yaml.safe_load(instruction[instruction.index("["):]))


def check_dockerfile(text: str) -> list[str]:
    """python:3.11-slim; non-root; no build tools; entry point and commands exist."""
    problems = []
    stages = dockerfile_stages(text)
    final = stages[-1]
    if not all(s[0].split()[1] == "python:3.11-slim" for s in stages):
        problems.append("every stage must be FROM python:3.11-slim")
    user = [i.split()[1] for i in final if i.upper().startswith("USER ")]
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problems.append("the image does not switch to a non-root user")
    body = "\n".join(final)
    if re.search(r"apt-get install|apk add|gcc|build-essential|\bmake\b", body):
        problems.append("the runtime stage installs build tools")
    if "--only-binary=:all:" not in body:
        problems.append("the runtime stage may compile dependencies (no --only-binary=:all:)")
    for instr in final:
        if instr.upper().startswith("COPY ") and "--from=" not in instr:
            problems.append(f"runtime stage copies sources directly: {instr}")
    for instr in stages[0]:
        if instr.upper().startswith("COPY "):
            for src in instr.split()[1:-1]:
                if not (ROOT / src).exists():
                    problems.append(f"COPY {src}: no such path in the repository")
    entry = [exec_form(i) for i in final if i.upper().startswith("ENTRYPOINT")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    if not entry or entry[-1] != ["mydrive"] or "mydrive" not in scripts:
        problems.append(f"ENTRYPOINT {entry} is not the mydrive console script")
    health = [i for i in final if i.upper().startswith("HEALTHCHECK")]
    if not health:
        problems.append("no HEALTHCHECK")
    else:
        args = exec_form(health[-1][health[-1].index("CMD"):].removeprefix("CMD").strip())
        if args[:1] != ["mydrive"]:
            problems.append(f"HEALTHCHECK runs {args[:1]}, not mydrive")
        problems += [f"HEALTHCHECK: {p}" for p in check_cli_args(args[1:])]
    cmd = [exec_form(i) for i in final if i.upper().startswith("CMD ")]
    if cmd:
        rc, _ = cli_help(tuple(a for a in cmd[-1] if a != "--help"))
        if rc != 0:
            problems.append(f"CMD {cmd[-1]} fails")
    return problems


# ---- the real files pass ---------------------------------------------------------------
@pytest.fixture(scope="module")
def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_commands_are_real_subcommands(name: str) -> None:
    """Every mydrive container runs a `mydrive` subcommand that exists, with real options."""
    assert check_commands(load(name)) == []


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_images_pinned(name: str, version: str) -> None:
    """couchdb:3, nginx:1.2x and mydrive:<project version>; nothing floating."""
    assert check_images(load(name), version) == []


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_only_nginx_publishes(name: str) -> None:
    """Only nginx publishes ports, the UI on 127.0.0.1 only; the rest share its netns."""
    assert check_ports(load(name)) == []


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_no_secrets(name: str) -> None:
    """Credentials come only from the env file; no CA key is mounted anywhere."""
    assert check_secrets((DOCKER / name).read_text(), load(name)) == []


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_volumes_consistent(name: str) -> None:
    """Named volumes are declared and used; each pod mounts one peer dir at /peer."""
    assert check_volumes(load(name)) == []


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_dependencies_consistent(name: str) -> None:
    """depends_on targets exist and can satisfy their condition; no cycles."""
    assert check_dependencies(load(name)) == []


def test_dockerfile_sound() -> None:
    """The Dockerfile is slim, non-root, compiler-free, and runs real mydrive commands."""
    assert check_dockerfile((DOCKER / "Dockerfile").read_text()) == []


def test_env_example_complete() -> None:
    """The env example sets every variable compose.peer.yaml requires, password a placeholder."""
    example = dict(line.split("=", 1) for line in
                   (DOCKER / "peer.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = {m.group(1) for m in re.finditer(r"\$\{([A-Z0-9_]+):\?",
                                                (DOCKER / "compose.peer.yaml").read_text())}
    assert required - set(example) == set()
    assert example["MYDRIVE_COUCHDB_PASSWORD"] == "CHANGE-ME"


# ---- the nginx config the containers run -----------------------------------------------
def mydrive(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mydrive", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if not found:
        pytest.skip("nginx not installed (scripts/setup.sh installs nginx-light)")
    return found


@pytest.mark.parametrize("name,pod", [("compose.peer.yaml", "nginx"),
                                      ("compose.local.yaml", "peer-1")])
def test_compose_nginx_config_passes_nginx_t(tmp_path: Path, name: str, pod: str) -> None:
    """The render step's own command, on a peer made as docs/deploy.md says, writes a config
    that the local nginx accepts (`nginx -t`) with the nginx service's own arguments."""
    compose = load(name)
    services = compose["services"]
    render = next(s for n, s in services.items() if is_mydrive(s)
                  and s.get("network_mode") == "none" and (pod == "nginx" or n.startswith(pod)))
    args = [substitute(str(a), SAMPLE_ENV) for a in render["command"]]
    peer_port = args[args.index("--expect-peer-port") + 1]
    ui_port = args[args.index("--expect-ui-port") + 1]
    assert mydrive("pki", "init", "pki", cwd=tmp_path).returncode == 0
    made = mydrive("peer", "init", "peer", "--network", "pki", "--host", pod,
                   "--metadata", "couchdb", "--couchdb-port", "5984",
                   "--peer-port", peer_port, "--ui-port", ui_port, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    peer = tmp_path / "peer"
    rendered = mydrive(*[a.replace(PEER_MOUNT, str(peer)) for a in args], cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    conf = (peer / "nginx" / "nginx.conf").read_text()
    assert f"listen 0.0.0.0:{peer_port} ssl" in conf and f"listen 0.0.0.0:{ui_port} ssl" in conf
    assert "resolver 127.0.0.11" in conf
    nginx = services[pod]
    assert nginx["entrypoint"] == ["nginx"]
    nginx_args = [a.replace(PEER_MOUNT, str(peer)) for a in nginx["command"]]
    r = subprocess.run([nginx_binary(), "-t", *nginx_args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    # What compose publishes is what nginx listens on.
    for p in published(nginx):
        assert f"listen 0.0.0.0:{p.split(':')[-1]} ssl" in conf, p


def test_render_refuses_ports_other_than_published(tmp_path: Path) -> None:
    """A peer whose peer.json ports differ from the published ones is refused at render."""
    assert mydrive("pki", "init", "pki", cwd=tmp_path).returncode == 0
    assert mydrive("peer", "init", "peer", "--network", "pki", "--host", "peer-0",
                   "--peer-port", "7443", "--ui-port", "7444", cwd=tmp_path).returncode == 0
    r = mydrive("peer", "render-nginx", "peer", "--container", "--expect-peer-port", "8443",
                "--expect-ui-port", "7444", cwd=tmp_path)
    assert r.returncode != 0 and "nginx_port 7443 but 8443 is published" in r.stderr


class _Up(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"status":"ok","seeds":{}}' if self.path == "/_up" else b"{}"
        self.send_response(200 if self.path == "/_up" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_couchdb_healthcheck_script(name: str) -> None:
    """The CouchDB health check (bash, no curl in couchdb:3) passes against a server
    answering /_up and fails with nothing listening."""
    svc = next(s for s in load(name)["services"].values()
               if str(s.get("image")).startswith("couchdb"))
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Up)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok = subprocess.run(["bash", "-c", test[3].replace("/5984", f"/{port}")], timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = subprocess.run(["bash", "-c", test[3].replace("/5984", f"/{closed_port}")],
                          capture_output=True, timeout=10)
    assert ok.returncode == 0 and down.returncode != 0


# ---- each checker fails when its property breaks ---------------------------------------
def mutated(name: str) -> dict[str, Any]:
    return copy.deepcopy(load(name))


def test_checkers_find_a_missing_subcommand() -> None:
    """A command naming no mydrive subcommand, or an unknown option, is reported."""
    c = mutated("compose.peer.yaml")
    c["services"]["receiver"]["command"] = ["serve-all", "/peer"]
    c["services"]["render"]["command"] = [*c["services"]["render"]["command"], "--no-such"]
    problems = check_commands(c)
    assert any("serve-all" in p for p in problems), problems
    assert any("--no-such" in p for p in problems), problems


def test_checkers_find_unpinned_images(version: str) -> None:
    """couchdb:latest, nginx:1.19 or a floating mydrive tag are reported."""
    c = mutated("compose.peer.yaml")
    c["services"]["couchdb"]["image"] = "couchdb:latest"
    c["services"]["nginx"]["image"] = "nginx:1.19"
    c["services"]["ui"]["image"] = "mydrive:latest"
    assert len(check_images(c, version)) == 3


def test_checkers_find_exposed_ports() -> None:
    """The UI published on every address, or a service publishing, is reported."""
    c = mutated("compose.peer.yaml")
    c["services"]["nginx"]["ports"] = ["${MYDRIVE_PEER_PORT}:${MYDRIVE_PEER_PORT}",
                                       "${MYDRIVE_UI_PORT}:${MYDRIVE_UI_PORT}"]
    assert any("127.0.0.1" in p for p in check_ports(c))
    c = mutated("compose.local.yaml")
    del c["services"]["peer-2-couchdb"]["network_mode"]
    c["services"]["peer-2-couchdb"]["ports"] = ["5984:5984"]
    problems = check_ports(c)
    assert any("peer-2-couchdb: publishes" in p for p in problems), problems
    assert any("peer-2-couchdb: network_mode" in p for p in problems), problems


def test_checkers_find_secrets() -> None:
    """A literal password, a defaulted secret or a mounted CA are reported."""
    c = mutated("compose.peer.yaml")
    c["services"]["couchdb"]["environment"]["COUCHDB_PASSWORD"] = "hunter2"
    c["services"]["ui"]["volumes"].append("./network:/network:ro")
    text = (DOCKER / "compose.peer.yaml").read_text().replace(
        "${MYDRIVE_COUCHDB_PASSWORD}", "${MYDRIVE_COUCHDB_PASSWORD:-admin}")
    problems = check_secrets(text, c)
    assert any("hunter2" in p for p in problems)
    assert any("network CA" in p for p in problems)
    assert any("default value" in p for p in problems)


def test_checkers_find_volume_mistakes() -> None:
    """An undeclared volume, a second peer dir in one pod, a missing /peer are reported."""
    c = mutated("compose.peer.yaml")
    c["services"]["couchdb"]["volumes"] = ["couch:/opt/couchdb/data"]
    c["services"]["sender"]["volumes"] = ["${MYDRIVE_OTHER_DIR}:/peer"]
    c["services"]["ui"]["volumes"] = []
    problems = check_volumes(c)
    assert any("'couch' is not declared" in p for p in problems), problems
    assert any("different peer dirs" in p for p in problems), problems
    assert any("ui: does not mount" in p for p in problems), problems


def test_checkers_find_dependency_mistakes() -> None:
    """Waiting on a check that doesn't exist, on a service that restarts forever, a wrong
    MYDRIVE_SERVICE, an unknown service and a cycle are all reported."""
    c = mutated("compose.peer.yaml")
    s = c["services"]
    del s["couchdb"]["healthcheck"]
    s["register"]["restart"] = "unless-stopped"
    s["sender"]["environment"] = {**s["sender"]["environment"], "MYDRIVE_SERVICE": "receiver"}
    s["ui"]["depends_on"] = {**s["ui"]["depends_on"], "redis": {"condition": "service_started"}}
    s["render"]["depends_on"] = {"ui": {"condition": "service_started"}}
    problems = check_dependencies(c)
    for needle in ("couchdb has no check", "register restarts forever", "sender: health check",
                   "unknown service redis", "dependency cycle"):
        assert any(needle in p for p in problems), (needle, problems)


def test_checkers_find_dockerfile_mistakes() -> None:
    """Root, build tools, a wrong base, a missing HEALTHCHECK command are reported."""
    text = (DOCKER / "Dockerfile").read_text()
    bad = (text.replace("USER 10001:10001", "USER root")
           .replace("FROM python:3.11-slim\n", "FROM python:3.11\nRUN apt-get install -y gcc\n")
           .replace('CMD ["mydrive", "peer", "health", "/peer"]',
                    'CMD ["mydrive", "healthz", "/peer"]'))
    problems = check_dockerfile(bad)
    for needle in ("non-root", "build tools", "python:3.11-slim", "HEALTHCHECK: "):
        assert any(needle in p for p in problems), (needle, problems)
