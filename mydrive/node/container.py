"""What running a peer in a container pod changes, for the host's CLI and for nginx.

* Where the receiver sees the peer directory. A pod mounts the peer directory at ``/peer``;
  the host's ``mydrive --peer OUT/peers/peer-0`` sees the same directory at its own path and
  reaches the pod's receiver through its control socket (a unix socket in that directory).
  A download job names the file the receiver writes, so the destination must be a path the
  receiver can see: ``serve receiver`` records the peer directory as it sees it
  (PEER_DIR/receiver-root.json, on every start), and ``receiver_destination`` rebases a
  destination under the caller's peer directory onto it, or refuses one the receiver can't
  see, naming ``--local``. On a bare machine both see the same path and nothing changes.
* Which name server nginx asks: Docker's (127.0.0.11) in a compose project; in Kubernetes
  the cluster's DNS, which the pod's /etc/resolv.conf names (``--resolver system``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from mydrive.errors import BadRequest
from mydrive.runtime.disk import atomic_write_bytes

RECEIVER_ROOT_NAME = "receiver-root.json"
RESOLV_CONF = Path("/etc/resolv.conf")
SYSTEM_RESOLVER = "system"


def record_receiver_root(peer_root: Path) -> None:
    """Write, from the receiver, the path at which it sees its peer directory."""
    root = peer_root.resolve()
    atomic_write_bytes(peer_root / RECEIVER_ROOT_NAME, json.dumps(
        {"root": str(root), "windows": os.name == "nt"}).encode())


def _receiver_root(peer_root: Path) -> PurePath | None:
    try:
        doc = json.loads((peer_root / RECEIVER_ROOT_NAME).read_text(encoding="utf-8"))
        root = (PureWindowsPath if doc["windows"] else PurePosixPath)(str(doc["root"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no receiver recorded one (an older one): paths are taken as they are
    return root if root.is_absolute() else None


def receiver_destination(peer_root: Path, destination: Path) -> str:
    """``destination`` (a path as this process sees it) as the peer's receiver sees it."""
    seen_by_receiver = _receiver_root(peer_root)
    here = peer_root.resolve()
    if seen_by_receiver is None or str(seen_by_receiver) == str(here):
        return str(destination)
    try:
        inside = destination.resolve().relative_to(here)
    except ValueError:
        raise BadRequest(
            f"this peer's receiver runs in a container and sees only the peer directory "
            f"({here} there is {seen_by_receiver}); it can't write {destination}: download "
            f"under {here} (e.g. its downloads/) or in this process with --local") from None
    return str(seen_by_receiver.joinpath(*inside.parts))


def system_resolver(resolv_conf: Path = RESOLV_CONF) -> str:
    """The first name server of ``resolv_conf``, as nginx's ``resolver`` wants it."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadRequest(f"--resolver system: can't read {resolv_conf}: {exc}") from exc
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            return nginx_resolver(words[1])
    raise BadRequest(f"--resolver system: no nameserver in {resolv_conf}")


def nginx_resolver(address: str) -> str:
    """An IP address checked and written as nginx's ``resolver`` takes it."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError as exc:
        raise BadRequest(f"resolver {address!r} is not an IP address") from exc
    return f"[{ip}]" if ip.version == 6 else str(ip)
