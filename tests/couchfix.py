"""Real pouchdb-server processes for tests, on free loopback ports; stopped by their PID."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mydrive.metadata import couchserver
from mydrive.metadata.couchdb import CouchStore
from mydrive.node.peerdir import free_port

USER = "mydrive"
PASSWORD = "test-" + uuid.uuid4().hex


@dataclass
class PouchServer:
    data_dir: Path
    port: int = 0
    user: str = USER
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PouchServer:
        assert self.process is None or self.process.poll() is not None
        if not self.port:
            self.port = free_port()
        self.process = couchserver.start(self.data_dir, host="127.0.0.1", port=self.port,
                                         user=self.user, password=self.password,
                                         log_path=self.data_dir / "server.log")
        couchserver.wait_ready(self.url, process=self.process)
        return self

    def stop(self, *, hard: bool = False) -> None:
        """Stop the server this fixture started (its PID only) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def store(self, db: str = "mydrive", **kwargs: object) -> CouchStore:
        return CouchStore(self.url, db, user=self.user, password=self.password,
                          **kwargs)  # type: ignore[arg-type]
