"""Run the SFTP server of one peer (``mydrive serve sftp PEER_DIR``) until signalled.

It listens on peer.json's ``sftp_host`` (loopback by default) and ``sftp_port``. One process
holds every connection's unlocked keys in memory, like the UI. On start it sweeps the
spool files a crashed predecessor left; SIGTERM or SIGINT stops it, discarding uploads that
were not closed yet.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress
from pathlib import Path

from mydrive.errors import BadRequest
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import PeerDir
from mydrive.node.sftp_address import sftp_host, sftp_port
from mydrive.runtime.clock import SystemClock
from mydrive.sftp.hostkey import load_or_create_host_key, sftp_dir
from mydrive.sftp.keyring import KEYRING_NAME, KeyRing
from mydrive.sftp.ratelimit import LoginLimiter
from mydrive.sftp.spool import spool_dir, sweep
from mydrive.sftp.ssh import SftpService, start_server

log = logging.getLogger("mydrive.sftp")


def run(peer_dir: Path, *, host: str | None = None, port: int | None = None) -> None:
    peer = PeerDir(peer_dir)
    config = peer.config
    bind_host = host if host is not None else sftp_host(config)
    bind_port = port if port is not None else sftp_port(config)
    if not bind_port:
        raise BadRequest(f"peer {config.name} has no sftp_port in its peer.json; add one "
                         f"(e.g. \"sftp_port\": 2222) or pass --port")
    asyncio.run(_serve(peer_dir, bind_host, bind_port))


async def _serve(peer_dir: Path, host: str, port: int) -> None:
    peer = PeerDir(peer_dir)
    root = sftp_dir(peer_dir)
    spool = spool_dir(root)
    swept = sweep(spool)
    if swept:
        log.info("removed %d upload spool file(s) left by a crash", swept)
    client = open_client(peer_dir)
    service = SftpService(client=client, keyring=KeyRing(root / KEYRING_NAME),
                          limiter=LoginLimiter(SystemClock()), spool_dir=spool)
    server = await start_server(service, host=host, port=port,
                                host_key=load_or_create_host_key(peer_dir),
                                peer_id=peer.config.peer_id)
    log.info("SFTP of peer %s on %s:%d", peer.config.name, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        service.close()
        client.close()
        log.info("SFTP of peer %s stopped", peer.config.name)
