"""How peers come and go over a simulated year: the rates the fleet draws events from.

Per peer, independent Poisson processes (exponential gaps drawn from the run's seed):
*transient* outages (a crash, a reboot, a laptop closed) that return with the disk intact
after an exponential time; *leaves* for good (the disk goes with the peer); *disk losses*
(the peer comes back empty after ``disk_return_h``); and, for the fleet, *joins* of new
empty peers at a rate that replaces leavers. ``scaled`` multiplies every rate: the "churn
rate" axis of the durability table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

HOURS_PER_DAY = 24.0
DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class ChurnModel:
    transient_per_day: float = 1 / 30      # outages per peer per day (one a month)
    transient_mean_h: float = 4.0          # mean outage length (exponential)
    leave_per_year: float = 0.10           # peers leaving for good, per peer per year
    disk_loss_per_year: float = 0.03       # disks lost, per peer per year
    disk_return_h: float = 24.0            # a peer that lost its disk is back, empty, after
    join_per_year: float = 0.10            # new peers per initial peer per year

    def scaled(self, factor: float) -> ChurnModel:
        """Every rate times ``factor`` (durations unchanged)."""
        assert factor >= 0
        return replace(self, transient_per_day=self.transient_per_day * factor,
                       leave_per_year=self.leave_per_year * factor,
                       disk_loss_per_year=self.disk_loss_per_year * factor,
                       join_per_year=self.join_per_year * factor)

    def describe(self) -> str:
        return (f"outage every {1 / self.transient_per_day:.0f} d for "
                f"{self.transient_mean_h:g} h on average, {self.leave_per_year:.0%}/yr leave, "
                f"{self.disk_loss_per_year:.0%}/yr lose their disk, "
                f"{self.join_per_year:.0%}/yr join") if self.transient_per_day > 0 else \
            "no churn"
