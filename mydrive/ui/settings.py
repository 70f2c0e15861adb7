"""Limits and switches of the UI; every one has a bound (docs/ui.md)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class UiSettings:
    # Cookies get the Secure flag (and the __Host- prefix) when the browser reaches the UI
    # through TLS, i.e. behind the peer's nginx.
    secure_cookies: bool = False
    idle_timeout_s: float = 15 * 60.0
    max_age_s: float = 12 * 3600.0
    max_upload_bytes: int = 4096 * MIB      # one upload request, all its files together
    upload_timeout_s: float = 3600.0        # receiving one upload request from the browser
    max_upload_files: int = 100             # files in one upload request
    max_basket_items: int = 1000            # files or folders in one user's basket
    max_batch_files: int = 10_000           # files one basket expands to
    max_jobs_per_user: int = 50             # finished jobs kept to show; oldest dropped
    max_queued_jobs: int = 200              # jobs waiting or running, all users together
    transfer_workers: int = 2               # jobs running at once

    def __post_init__(self) -> None:
        assert self.max_upload_bytes > 0 and self.upload_timeout_s > 0
        assert self.max_upload_files >= 1 and self.max_basket_items >= 1
        assert self.max_batch_files >= 1 and self.max_jobs_per_user >= 1
        assert self.max_queued_jobs >= 1 and self.transfer_workers >= 1
