"""`mydrive kubernetes generate`'s manifests, checked offline (no cluster can be reached here):

* against the Kubernetes OpenAPI schemas bundled in the `kubernetes-validate` package, in
  strict mode (an unknown field is an error), for the oldest version the pods need (1.29:
  sidecar init containers) and the newest the package holds;
* by checkers for what a schema can't see (every Secret, ConfigMap, key, volume and named
  port referenced exists; Services select the pods; no private key or password outside a
  Secret), each shown finding the mistake it exists for in a broken copy;
* against docker/compose.peer.yaml: every pod's containers are that file's pod services
  (commands, images, environment, mounts, health checks), as tests/unit/test_compose_files.py
  checks the generated compose pods.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_compose_files import expected_pod, load, nginx_binary

kubernetes_validate = pytest.importorskip("kubernetes_validate")  # dev extra (pyproject)

OLDEST = "1.29.0"   # sidecar containers (initContainers with restartPolicy: Always) on by default
NEWEST = kubernetes_validate.utils.latest_version()
NAMESPACE = "mydrive-test"
PEER_MOUNT = "/peer"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[dict[str, Any]]]:
    """A 4-peer project as `mydrive kubernetes generate` writes it: (project, documents)."""
    from mydrive.node.kubernetes import generate

    project = generate(tmp_path_factory.mktemp("k8s") / "net", peers=4, namespace=NAMESPACE)
    docs = [d for f in sorted(project.manifests.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    return project, docs


def schema_problems(docs: list[dict[str, Any]], version: str) -> list[str]:
    """What the bundled schemas of ``version`` say about each document (strict: no unknown
    fields)."""
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # the first error of the document
            where = "/".join(str(p) for p in exc.absolute_path)
            problems.append(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: "
                            f"{where}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            problems.append(exc.message)
    return problems


# ---- checkers for what a schema can't see ------------------------------------------------
def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def check_references(docs: list[dict[str, Any]]) -> list[str]:
    """Every Secret/ConfigMap (and key: in an environment variable, a sub-path or a file a
    command names), volume, claim, named port and governing Service a manifest refers to
    exists; every Service selects a pod; one namespace throughout."""
    problems = []
    secrets, configs = _by_kind(docs, "Secret"), _by_kind(docs, "ConfigMap")
    services = _by_kind(docs, "Service")
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") not in namespaces:
            problems.append(f"{d['kind']} {d['metadata']['name']}: namespace "
                            f"{d['metadata'].get('namespace')!r} is not created")
    pod_labels = []
    for name, sts in _by_kind(docs, "StatefulSet").items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        pod_labels.append(spec["template"]["metadata"]["labels"])
        if spec["selector"]["matchLabels"].items() - spec["template"]["metadata"]["labels"].items():
            problems.append(f"{name}: its selector does not match its pod's labels")
        governing = services.get(spec["serviceName"])
        if governing is None or governing["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: serviceName {spec['serviceName']} is no headless Service")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for v in volumes.values():
            if "secret" in v and v["secret"]["secretName"] not in secrets:
                problems.append(f"{name}: volume {v['name']}: no Secret "
                                f"{v['secret']['secretName']}")
            if "configMap" in v and v["configMap"]["name"] not in configs:
                problems.append(f"{name}: volume {v['name']}: no ConfigMap "
                                f"{v['configMap']['name']}")
        for c in _containers(pod):
            for m in c.get("volumeMounts", []):
                v = volumes.get(m["name"])
                if v is None and m["name"] not in claims:
                    problems.append(f"{name}/{c['name']}: mounts unknown volume {m['name']}")
                elif v is not None and "subPath" in m and "configMap" in v and \
                        m["subPath"] not in configs.get(v["configMap"]["name"], {}).get("data",
                                                                                       {}):
                    problems.append(f"{name}/{c['name']}: no key {m['subPath']} in "
                                    f"ConfigMap {v['configMap']['name']}")
            # Files a command names in a mounted Secret or ConfigMap are keys of it.
            sources = {}
            for m in c.get("volumeMounts", []):
                v = volumes.get(m["name"], {})
                obj = secrets.get(v["secret"]["secretName"]) if "secret" in v else \
                    configs.get(v["configMap"]["name"]) if "configMap" in v else None
                if obj is not None:
                    sources[m["mountPath"]] = set(obj.get("data", {}))
            for word in " ".join([*c.get("command", []), *c.get("args", [])]).split():
                for mount, keys in sources.items():
                    if word.startswith(mount + "/") and \
                            word[len(mount) + 1:].split("/")[0] not in keys:
                        problems.append(f"{name}/{c['name']}: {word} is no key of what "
                                        f"{mount} mounts")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], {}).get("data", {}):
                    problems.append(f"{name}/{c['name']}: {e['name']} from missing "
                                    f"{ref['name']}/{ref['key']}")
        ports = {p["name"] for c in _containers(pod) for p in c.get("ports", [])}
        for svc in services.values():
            if svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items():
                for p in svc["spec"]["ports"]:
                    target = p.get("targetPort", p["port"])
                    if isinstance(target, str) and target not in ports:
                        problems.append(f"Service {svc['metadata']['name']}: targetPort "
                                        f"{target} is no port of {name}'s pod")
    for svc in services.values():
        if not any(svc["spec"]["selector"].items() <= labels.items() for labels in pod_labels):
            problems.append(f"Service {svc['metadata']['name']} selects no pod")
    return problems


def check_secrets(docs: list[dict[str, Any]], root: Path) -> list[str]:
    """Private keys and passwords only in Secrets; the CA's key in none; peer files 0600."""
    problems = []
    ca_key = (root / "pki" / "ca.key").read_bytes().strip()
    passwords = set()
    for peer_json in (root / "peers").glob("*/peer.json"):
        cfg = json.loads(peer_json.read_text())
        passwords |= {cfg["couchdb_password"], cfg["couchdb_member_password"]}
    for d in docs:
        values = [str(v) for v in (d.get("data") or {}).values()]
        if d["kind"] == "Secret":
            values = [base64.b64decode(v).decode(errors="replace") for v in values]
            if any(ca_key.decode() in v for v in values):
                problems.append(f"Secret {d['metadata']['name']}: holds the network CA's key")
            continue
        text = json.dumps(d)
        if re.search(r"PRIVATE KEY", text) or any(p in text for p in passwords):
            problems.append(f"{d['kind']} {d['metadata']['name']}: a private key or password "
                            f"outside a Secret")
    for f in (root / "kubernetes").glob("*.yaml"):
        if "kind: \"Secret\"" in f.read_text() and f.stat().st_mode & 0o077:
            problems.append(f"{f.name}: holds Secrets but is readable by others")
    return problems


def compose_differences(docs: list[dict[str, Any]], project: Any) -> list[str]:
    """Each pod's containers against docker/compose.peer.yaml's pod for that peer."""
    from mydrive.node.compose import ComposePeer
    from mydrive.node.kubernetes import COUCHDB_PORT, PEER_PORT, UI_PORT

    problems = []
    names = [p.name for p in project.peers]
    for peer in project.peers:
        pod = expected_pod(load("compose.peer.yaml"), ComposePeer(
            name=peer.name, peer_id="", directory=Path(), pod_address="", peer_port=PEER_PORT,
            ui_port=UI_PORT, couchdb_port=COUCHDB_PORT), names)
        spec = _by_kind(docs, "StatefulSet")[peer.name]["spec"]["template"]["spec"]
        got = {c["name"]: c for c in _containers(spec)}
        for service, svc in pod.items():
            role = "nginx" if service == peer.name else service.removeprefix(f"{peer.name}-")
            c = got.get(role)
            if c is None:
                problems.append(f"{peer.name}: no container for {service}")
                continue
            args = c.get("args", [])
            if role == "render":
                args = args[:-2] if args[-2:] == ["--resolver", "system"] else args + ["?"]
            want = {"command": [str(a) for a in svc.get("command", [])],
                    "entrypoint": svc.get("entrypoint"),
                    "image": re.sub(r"\$\{MYDRIVE_IMAGE:-([^}]*)\}", r"\1", svc["image"]),
                    "env": sorted(svc.get("environment") or {}),
                    "mounts": sorted(str(v).split(":")[1] for v in svc.get("volumes", [])),
                    "health": (svc.get("healthcheck") or {}).get("test", ["CMD"])[1:]
                    or None,
                    "one-shot": svc.get("restart") == "no"}
            have = {"command": args, "entrypoint": c.get("command"),
                    "image": c["image"], "env": sorted(e["name"] for e in c.get("env", [])),
                    "mounts": sorted(m["mountPath"].removesuffix("/10-mydrive.ini")
                                     for m in c.get("volumeMounts", [])),
                    "health": c.get("startupProbe", {}).get("exec", {}).get("command"),
                    "one-shot": c in spec.get("initContainers", [])
                    and c.get("restartPolicy") != "Always"}
            problems += [f"{peer.name}/{role}.{k}: {have[k]!r}, compose.peer.yaml's pod says "
                         f"{want[k]!r}" for k in want if want[k] != have[k]]
    return problems


# ---- the generated manifests pass -----------------------------------------------------
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_manifests_pass_the_kubernetes_schemas(generated: Any, version: str) -> None:
    """Every document validates (strict) against the schemas of that Kubernetes version."""
    _, docs = generated
    assert {d["kind"] for d in docs} == {"Namespace", "Service", "NetworkPolicy", "ConfigMap",
                                         "Secret", "StatefulSet"}
    assert schema_problems(docs, version) == []


def _receiver(sts: dict[str, Any]) -> dict[str, Any]:
    return sts["spec"]["template"]["spec"]["containers"][0]


BREAKAGES = {
    "field name": (lambda sts: _receiver(sts).update(volumeMount=_receiver(sts).pop(
        "volumeMounts")), "'volumeMount' was unexpected"),
    "type": (lambda sts: sts["spec"].update(replicas="1"), "'1' is not of type 'integer'"),
    "required field": (lambda sts: sts["spec"]["template"]["spec"]["initContainers"][1].pop(
        "name"), "'name' is a required property"),
    "nested field": (lambda sts: sts["spec"]["template"]["spec"]["securityContext"].update(
        fsGroupp=1), "'fsGroupp' was unexpected"),
    "kind": (lambda sts: sts.update(kind="StatefulSets"), "Couldn't find schema for kind"),
}


@pytest.mark.parametrize("what", list(BREAKAGES))
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_schema_validation_catches_broken_manifests(generated: Any, what: str,
                                                    version: str) -> None:
    """A wrong field name, a wrong type, a missing required field, a misspelt nested field
    and an unknown kind in a StatefulSet are each reported."""
    _, docs = generated
    sts = copy.deepcopy(_by_kind(docs, "StatefulSet")["peer-0"])
    breakage, needle = BREAKAGES[what]
    breakage(sts)
    problems = schema_problems([sts], version)
    assert len(problems) == 1 and needle in problems[0], problems


def test_schema_validation_catches_a_wrong_port_type(generated: Any) -> None:
    _, docs = generated
    svc = copy.deepcopy(_by_kind(docs, "Service")["peer-0"])
    svc["spec"]["ports"][0]["port"] = "seven"
    assert any("'seven' is not of type 'integer'" in p for p in schema_problems([svc], OLDEST))


def test_validation_needs_no_network() -> None:
    """The schemas come from the installed package: validating in a network namespace with
    no interface but loopback down works the same (CI has no network after set-up)."""
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-n", "true"], capture_output=True, timeout=30).returncode:
        pytest.skip("can't make a network namespace here (unshare -n)")
    code = ("import kubernetes_validate as k; print(k.validate({'apiVersion': 'v1', "
            "'kind': 'ConfigMap', 'metadata': {'name': 'x'}, 'data': {}}, "
            f"'{OLDEST}', strict=True))")
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "1.29", r.stderr


def test_manifest_references_resolve(generated: Any) -> None:
    _, docs = generated
    assert check_references(docs) == []


def test_checkers_find_dangling_references(generated: Any) -> None:
    """A missing Secret key (in an environment variable or a file a command reads), a
    missing ConfigMap key, an unknown volume, a Service selecting nothing, a wrong targetPort
    and a missing governing Service are reported."""
    _, docs = generated
    broken = copy.deepcopy(docs)
    secret = _by_kind(broken, "Secret")["peer-0-couchdb"]
    del secret["data"]["password"]
    sts = _by_kind(broken, "StatefulSet")["peer-1"]
    sts["spec"]["template"]["spec"]["containers"][1]["volumeMounts"][0]["name"] = "peerr"
    sts["spec"]["serviceName"] = "nobody"
    svc = _by_kind(broken, "Service")["peer-2"]
    svc["spec"]["selector"]["app.kubernetes.io/instance"] = "peer-9"
    _by_kind(broken, "Service")["peer-3"]["spec"]["ports"][0]["targetPort"] = "peers"
    del _by_kind(broken, "ConfigMap")["public-peers"]["data"]["peer-2.json"]
    del _by_kind(broken, "Secret")["peer-3-tls"]["data"]["ca.crt"]
    problems = check_references(broken)
    for needle in ("from missing peer-0-couchdb/password", "mounts unknown volume peerr",
                   "serviceName nobody", "Service peer-2 selects no pod",
                   "targetPort peers is no port",
                   "peer-0/register: /public/peer-2.json is no key",
                   "peer-3/seed: /seed-tls/ca.crt is no key"):
        assert any(needle in p for p in problems), (needle, problems)


def test_no_private_key_or_password_outside_secrets(generated: Any) -> None:
    """ConfigMaps (and everything else but Secrets) hold no private key or password; no
    Secret holds the CA's key; the files with Secrets are 0600."""
    project, docs = generated
    assert check_secrets(docs, project.root) == []
    broken = copy.deepcopy(docs)
    public = _by_kind(broken, "ConfigMap")["public-peers"]
    public["data"]["peer.key"] = (project.peers[0].directory / "tls" / "peer.key").read_text()
    tls = _by_kind(broken, "Secret")["peer-1-tls"]
    tls["data"]["ca.key"] = base64.b64encode((project.root / "pki" / "ca.key").read_bytes()
                                             ).decode()
    problems = check_secrets(broken, project.root)
    assert any("ConfigMap public-peers" in p for p in problems), problems
    assert any("Secret peer-1-tls: holds the network CA's key" in p for p in problems), problems


def test_pods_are_the_compose_peer_pod(generated: Any) -> None:
    """Each pod runs docker/compose.peer.yaml's pod: the same commands, images, environment,
    mounts and health checks; one-shots as init containers; render adds --resolver."""
    project, docs = generated
    assert compose_differences(docs, project) == []
    drifted = copy.deepcopy(docs)
    sts = _by_kind(drifted, "StatefulSet")["peer-2"]["spec"]["template"]["spec"]
    sts["containers"][1]["args"].append("--verbose")
    register = next(c for c in sts["initContainers"] if c["name"] == "register")
    register["restartPolicy"] = "Always"
    problems = compose_differences(drifted, project)
    assert any("peer-2/sender.command" in p for p in problems), problems
    assert any("peer-2/register.one-shot" in p for p in problems), problems


def test_peers_dialed_at_their_service(generated: Any) -> None:
    """Each peer's host (its certificate, its peer document) is its own Service's DNS name
    on the peer port, every pod's register step introduces every peer, and each peer offers
    80% of its volume to the others."""
    from mydrive.node.peerdir import PeerDir

    project, docs = generated
    public = _by_kind(docs, "ConfigMap")["public-peers"]["data"]
    for p in project.peers:
        cfg = PeerDir(p.directory).config
        assert cfg.host == f"{p.name}.{NAMESPACE}.svc.cluster.local" == p.host
        assert json.loads(public[f"{p.name}.json"])["receiver_address"] == f"{p.host}:7443"
        svc = _by_kind(docs, "Service")[p.name]
        assert svc["spec"]["ports"][0]["port"] == cfg.nginx_port == 7443
        claims = _by_kind(docs, "StatefulSet")[p.name]["spec"]["volumeClaimTemplates"]
        assert claims[0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert cfg.capacity_bytes == int(0.8 * 10 * 1024**3), "offers 80% of its volume"


def test_render_with_the_system_resolver_passes_nginx_t(generated: Any, tmp_path: Path) -> None:
    """The pod's render command (with `--resolver system`, here a resolv.conf naming the
    cluster DNS) writes a config that nginx accepts, resolving with that server."""
    from mydrive.node.container import system_resolver

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search mydrive.svc.cluster.local\nnameserver 10.96.0.10\n")
    assert system_resolver(resolv) == "10.96.0.10"
    project, docs = generated
    peer = project.peers[1]
    copy_dir = tmp_path / peer.name
    shutil.copytree(peer.directory, copy_dir)
    spec = _by_kind(docs, "StatefulSet")[peer.name]["spec"]["template"]["spec"]
    render = next(c for c in spec["initContainers"] if c["name"] == "render")["args"]
    args = [a.replace(PEER_MOUNT, str(copy_dir)) for a in render]
    args[args.index("system")] = "10.96.0.10"  # the test machine's resolv.conf is not a pod's
    done = subprocess.run([sys.executable, "-m", "mydrive", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    conf = (copy_dir / "nginx" / "nginx.conf").read_text()
    assert "resolver 10.96.0.10 ipv6=off valid=30s;" in conf
    nginx = next(c for c in spec["initContainers"] if c["name"] == "nginx")
    r = subprocess.run([nginx_binary(), "-t", *[a.replace(PEER_MOUNT, str(copy_dir))
                                                for a in nginx["args"]]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_kubernetes_cli_generate(tmp_path: Path) -> None:
    """`mydrive kubernetes generate --peers 4 OUT --json` writes the manifests and describes
    them; a non-empty OUT, a bad namespace and a bad size are refused (exit 2)."""
    def mydrive(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mydrive", "kubernetes", "generate", *args],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    r = mydrive("--peers", "4", str(tmp_path / "net"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [p["pod"] for p in doc["peers"]] == ["peer-0-0", "peer-1-0", "peer-2-0", "peer-3-0"]
    assert sorted(f.name for f in (tmp_path / "net" / "kubernetes").iterdir()) == [
        "00-namespace.yaml", "10-network.yaml", *[f"20-peer-{i}.yaml" for i in range(4)]]
    again = mydrive(str(tmp_path / "net"))
    assert again.returncode == 2 and "not empty" in again.stderr
    bad = mydrive("--namespace", "My_NS", str(tmp_path / "other"))
    assert bad.returncode == 2 and "DNS label" in bad.stderr
    bad = mydrive("--storage", "10GB", str(tmp_path / "other"))
    assert bad.returncode == 2 and "--storage '10GB'" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_pods_start_with_the_networks_revocation_list(generated: Any) -> None:
    """Each peer's TLS Secret carries the network's CA-signed CRL, so nginx starts with
    ssl_crl; the seed installs it only when the volume has none (a newer list the peer
    installed at run time survives restarts)."""
    from mydrive.crypto.primitives import read_revocation_list

    _, docs = generated
    secrets = _by_kind(docs, "Secret")
    for name, sts in _by_kind(docs, "StatefulSet").items():
        tls = secrets[f"{name}-tls"]["data"]
        read_revocation_list(base64.b64decode(tls["crl.pem"]), base64.b64decode(tls["ca.crt"]))
        seed = next(c for c in sts["spec"]["template"]["spec"]["initContainers"]
                    if c["name"] == "seed")
        script = seed["command"][-1]
        assert f"[ -f {PEER_MOUNT}/tls/crl.pem ] || install" in script
