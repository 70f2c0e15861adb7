"""The docker deployment files (docker/) and the projects `mydrive compose generate` writes,
checked without a Docker engine (tests/integration/test_compose_cluster.py runs them).

These tests parse the YAML and check the properties the deployment relies on; each checker
returns a list of problems, and the mutation tests show every checker finding the problem it
exists for in a broken copy of the files. A generated project must pass the same checkers,
and its pods must be docker/compose.peer.yaml's pod with only the differences
mydrive/node/compose.py lists.
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
              "MYDRIVE_COUCHDB_PASSWORD_0": "p0", "MYDRIVE_COUCHDB_PASSWORD_1": "p1",
              "MYDRIVE_COUCHDB_PASSWORD_2": "p2",
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


TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"


def check_images(compose: dict[str, Any], version: str) -> list[str]:
    """Images are pinned: couchdb:3, nginx:1.2x, mydrive at the project's version (and the
    test-bed's Toxiproxy at 2.12.0)."""
    problems = []
    for name, svc in compose["services"].items():
        image = str(svc.get("image", ""))
        if "toxiproxy" in image:
            ok = image == TOXIPROXY_IMAGE
        elif image.startswith("couchdb"):
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


def check_volumes(compose: dict[str, Any], *, project_relative: bool = False) -> list[str]:
    """Named volumes exist; bind mounts come from the env file (or, ``project_relative``,
    from the generated project's own directory); a pod shares one peer dir."""
    problems = []
    declared = set((compose.get("volumes") or {}).keys())
    pod_dirs: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []) or []:
            source, target = split_volume(v)
            if source.startswith("${") or source.startswith("/") or source.startswith("."):
                inside = project_relative and source.startswith("./") and ".." not in source
                if not source.startswith("${MYDRIVE_") and not inside:
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


# ---- projects from `mydrive compose generate` ------------------------------------------
POD_SUFFIX = {"render": "-render", "nginx": "", "couchdb": "-couchdb", "register": "-register",
              "receiver": "-receiver", "sender": "-sender", "ui": "-ui"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], str]:
    """A 5-peer project as `mydrive compose generate` writes it: (project, parsed, text)."""
    from mydrive.node.compose import generate

    project = generate(tmp_path_factory.mktemp("gen") / "net", peers=5,
                       subnet="10.219.7.0/24")
    text = project.compose_file.read_text()
    return project, yaml.safe_load(text), text


def _only(text: str, env: dict[str, str]) -> str:
    """Substitute only the variables in ``env``; leave the others as compose will see them."""
    return INTERP.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _sub_all(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _only(value, env)
    if isinstance(value, list):
        return [_sub_all(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _sub_all(v, env) for k, v in value.items()}
    return value


def _own_password(value: Any, peer: str) -> Any:
    """The pod's CouchDB admin password comes from its own variable (one per pod)."""
    var = f"MYDRIVE_COUCHDB_PASSWORD_{peer.rsplit('-', 1)[1]}"
    if isinstance(value, str):
        return (value.replace("${MYDRIVE_COUCHDB_PASSWORD:?set MYDRIVE_COUCHDB_PASSWORD in the "
                              "env file}", f"${{{var}:?set {var} ({peer}'s own) in the env file}}")
                .replace("${MYDRIVE_COUCHDB_PASSWORD}", f"${{{var}}}"))
    if isinstance(value, list):
        return [_own_password(v, peer) for v in value]
    if isinstance(value, dict):
        return {k: _own_password(v, peer) for k, v in value.items()}
    return value


def expected_pod(peer_file: dict[str, Any], peer: Any, all_peers: list[str]) -> dict[str, Any]:
    """docker/compose.peer.yaml's pod as the generator must write it for ``peer``: renamed
    and with exactly the differences listed in mydrive/node/compose.py applied."""
    rename = {svc: f"{peer.name}{suffix}" for svc, suffix in POD_SUFFIX.items()}
    env = {"MYDRIVE_PEER_PORT": str(peer.peer_port), "MYDRIVE_UI_PORT": str(peer.ui_port),
           "MYDRIVE_PEER_DIR": f"./peers/{peer.name}"}
    pod: dict[str, Any] = {}
    for name, svc in peer_file["services"].items():
        svc = _own_password(_sub_all(copy.deepcopy(svc), env), peer.name)
        if str(svc.get("network_mode", "")).startswith("service:"):
            svc["network_mode"] = f"service:{rename[svc['network_mode'][8:]]}"
        if "depends_on" in svc:
            svc["depends_on"] = {rename[d]: spec for d, spec in svc["depends_on"].items()}
        svc["volumes"] = [v.replace("couchdb-data:", f"couchdb-{peer.name}:")
                          for v in svc.get("volumes", [])]
        pod[rename[name]] = svc
    # The differences, one by one.
    nginx = pod[peer.name]
    nginx["ports"] = [f"127.0.0.1:{peer.ui_port}:{peer.ui_port}",
                      f"127.0.0.1:{peer.couchdb_port}:{peer.couchdb_port}"]
    nginx["networks"] = {"mesh": {"ipv4_address": peer.pod_address}}
    couchdb = pod[f"{peer.name}-couchdb"]
    couchdb["volumes"].append(f"./couchdb/{peer.name}:/opt/couchdb/etc/local.d")
    couchdb["healthcheck"]["test"][-1] = couchdb["healthcheck"]["test"][-1].replace(
        "/5984 ", f"/{peer.couchdb_port} ")
    register = pod[f"{peer.name}-register"]
    register["volumes"].append("./public:/public:ro")
    register["command"] += [f"/public/{n}.json" for n in all_peers]
    return pod


def pod_differences(expected: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in expected.items():
        got = compose["services"].get(name)
        if got is None:
            problems.append(f"{name}: missing")
            continue
        for key in sorted(set(svc) | set(got)):
            if svc.get(key) != got.get(key):
                problems.append(f"{name}.{key}: {got.get(key)!r}, compose.peer.yaml's pod "
                                f"says {svc.get(key)!r}")
    return problems


def test_generated_pods_are_the_peer_pod(generated: tuple[Any, dict[str, Any], str]) -> None:
    """Every generated pod is docker/compose.peer.yaml's pod, renamed, with only the
    documented differences (no CouchDB or peer port published beyond 127.0.0.1, the
    network address, CouchDB's port, every peer introduced)."""
    project, compose, _ = generated
    names = [p.name for p in project.peers]
    for peer in project.peers:
        assert pod_differences(expected_pod(load("compose.peer.yaml"), peer, names),
                               compose) == []
    assert set(compose["services"]) == {f"{n}{s}" for n in names for s in POD_SUFFIX.values()} \
        | {"toxiproxy"}


def test_checkers_find_a_pod_that_drifted(generated: tuple[Any, dict[str, Any], str]) -> None:
    """A change to compose.peer.yaml's pod that the generator does not make is reported."""
    project, compose, _ = generated
    peer_file = mutated("compose.peer.yaml")
    peer_file["services"]["sender"]["command"] = ["serve", "sender", "/peer", "--verbose"]
    peer_file["services"]["couchdb"]["healthcheck"]["retries"] = 9
    problems = pod_differences(expected_pod(peer_file, project.peers[0],
                                            [p.name for p in project.peers]), compose)
    assert any("peer-0-sender.command" in p for p in problems), problems
    assert any("peer-0-couchdb.healthcheck" in p for p in problems), problems


def test_generated_compose_passes_the_checkers(generated: tuple[Any, dict[str, Any], str],
                                              version: str) -> None:
    """The generated file passes every checker the hand-written ones pass (bind mounts are
    relative to the project directory)."""
    _, compose, text = generated
    assert check_commands(compose) == []
    assert check_images(compose, version) == []
    assert check_ports(compose) == []
    assert check_secrets(text, compose) == []
    assert check_volumes(compose, project_relative=True) == []
    assert check_dependencies(compose) == []
    assert check_volumes(compose) != [], "relative mounts are refused in docker/ files"


def test_generated_yaml_is_the_model(generated: tuple[Any, dict[str, Any], str]) -> None:
    """The YAML written is exactly the compose model (the product's small emitter)."""
    from mydrive.node.compose import compose_model, to_yaml

    project, compose, _ = generated
    assert compose == compose_model(project)
    tricky = {"a": ["x: y", "#no", "it's", "${V:?a b}", 'q"q', "\\"], "b": {"c": []},
              "d": [{"e": 1, "f": [True, "no"]}], "g": {}, "with space": "v"}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


def test_generated_toxiproxy_fronts_every_peer(
        generated: tuple[Any, dict[str, Any], str]) -> None:
    """Every peer is dialed at Toxiproxy's address and its own port (its peer document,
    its certificate's host), and Toxiproxy forwards that port to the pod's own address."""
    import json as json_

    from mydrive.node.peerdir import PeerDir

    project, compose, _ = generated
    proxies = json_.loads((project.root / "toxiproxy.json").read_text())
    assert [(p["name"], p["listen"], p["upstream"]) for p in proxies] == [
        (p.name, f"0.0.0.0:{p.peer_port}", f"{p.pod_address}:{p.peer_port}")
        for p in project.peers]
    toxi = compose["services"]["toxiproxy"]
    assert toxi["networks"]["mesh"]["ipv4_address"] == project.toxiproxy_address
    assert "-config=/config/toxiproxy.json" in toxi["command"]
    for p in project.peers:
        cfg = PeerDir(p.directory).config
        assert (cfg.host, cfg.nginx_port, cfg.tls, cfg.metadata) == (
            project.toxiproxy_address, p.peer_port, True, "couchdb")
        doc = json_.loads((project.root / "public" / f"{p.name}.json").read_text())
        assert doc["peer_id"] == p.peer_id
        assert doc["receiver_address"] == f"{project.toxiproxy_address}:{p.peer_port}"
        ini = (project.root / "couchdb" / p.name / "10-mydrive-port.ini").read_text()
        assert f"port = {cfg.couchdb_port}" in ini
    assert len({p.pod_address for p in project.peers} | {project.toxiproxy_address}) == 6


def test_generated_env_file_private_and_complete(
        generated: tuple[Any, dict[str, Any], str], version: str) -> None:
    """.env is 0600, sets every variable the file requires, gives every pod a CouchDB admin
    password of its own; ca.key stays in pki/."""
    project, _, text = generated
    env_path = project.root / ".env"
    assert env_path.stat().st_mode & 0o077 == 0
    env = dict(line.split("=", 1) for line in env_path.read_text().splitlines()
               if line and not line.startswith("#"))
    required = {m.group(1) for m in re.finditer(r"\$\{([A-Z0-9_]+):\?", text)}
    assert required and required - set(env) == set()
    passwords = [env[f"MYDRIVE_COUCHDB_PASSWORD_{i}"] for i in range(len(project.peers))]
    assert len(set(passwords)) == len(passwords), "no two pods share a CouchDB password"
    assert (project.root / "pki" / "ca.key").exists() and "pki" not in text
    assert substitute("${MYDRIVE_IMAGE:-x}", env) == f"mydrive:{version}"


def test_generate_refuses_bad_input(tmp_path: Path) -> None:
    """Fewer than 4 peers (R = 2 needs them), a non-empty directory or a bad subnet are
    refused with a message naming the problem, and nothing is written."""
    from mydrive.errors import BadRequest
    from mydrive.node.compose import generate

    with pytest.raises(BadRequest, match="between 4 and"):
        generate(tmp_path / "few", peers=3)
    assert not (tmp_path / "few").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BadRequest, match="not empty"):
        generate(tmp_path / "full", peers=4)
    with pytest.raises(BadRequest, match="subnet"):
        generate(tmp_path / "net", peers=4, subnet="10.219.7.0/30")


def test_generated_render_passes_nginx_t(generated: tuple[Any, dict[str, Any], str],
                                         tmp_path: Path) -> None:
    """A generated pod's render command writes a config the local nginx accepts with the
    pod's nginx arguments, listening on the port Toxiproxy forwards to and the UI port."""
    project, compose, _ = generated
    peer = project.peers[2]
    copy_dir = tmp_path / peer.name
    shutil.copytree(peer.directory, copy_dir)
    render = compose["services"][f"{peer.name}-render"]["command"]
    done = mydrive(*[a.replace(PEER_MOUNT, str(copy_dir)) for a in render], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    conf = (copy_dir / "nginx" / "nginx.conf").read_text()
    assert f"listen 0.0.0.0:{peer.peer_port} ssl" in conf
    assert f"listen 0.0.0.0:{peer.ui_port} ssl" in conf
    args = [a.replace(PEER_MOUNT, str(copy_dir))
            for a in compose["services"][peer.name]["command"]]
    r = subprocess.run([nginx_binary(), "-t", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_compose_cli_generate_json(tmp_path: Path) -> None:
    """`mydrive compose generate --peers 4 OUT --json` writes the project and describes it."""
    import json as json_

    r = mydrive("compose", "generate", "--peers", "4", str(tmp_path / "net"), "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json_.loads(r.stdout)
    assert [p["name"] for p in doc["peers"]] == ["peer-0", "peer-1", "peer-2", "peer-3"]
    assert (tmp_path / "net" / "compose.yaml").exists()
    again = mydrive("compose", "generate", str(tmp_path / "net"), cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


@pytest.mark.parametrize("which", ["generated", "compose.peer.yaml", "compose.local.yaml"])
def test_compose_config_accepts_the_files(which: str, tmp_path: Path,
                                          generated: tuple[Any, dict[str, Any], str]) -> None:
    """Compose v2 itself (`docker compose config -q`, no engine needed) accepts the files."""
    if not shutil.which("docker") or subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("no Compose v2 plugin here (scripts/containers.sh compose builds it)")
    if which == "generated":
        project = generated[0]
        args = ["-f", str(project.compose_file)]
    else:
        env = tmp_path / "test.env"
        env.write_text("".join(f"{k}={v}\n" for k, v in SAMPLE_ENV.items()))
        args = ["-f", str(DOCKER / which), "--env-file", str(env)]
    r = subprocess.run(["docker", "compose", *args, "config", "-q"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_compose_nginx_gets_the_local_peers_allocator_settings() -> None:
    """nginx in a container keeps its stream buffers in the heap as a local peer's does
    (mydrive.node.nginx.GLIBC_MALLOC_ENVIRONMENT): the hand-written files and the generated
    project say the same."""
    from mydrive.node.nginx import GLIBC_MALLOC_ENVIRONMENT
    nginx_services = [s for name in COMPOSE_FILES for s in load(name)["services"].values()
                      if str(s.get("image", "")).startswith("nginx")]
    assert len(nginx_services) >= 2
    for service in nginx_services:
        assert {k: str(v) for k, v in service["environment"].items()} == \
            GLIBC_MALLOC_ENVIRONMENT
