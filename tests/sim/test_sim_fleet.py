"""The fleet level at reduced size: placement by the product, churn, repair, the checks."""

from __future__ import annotations

import pytest

from sim.fleet.churn import ChurnModel
from sim.fleet.model import Fleet, FleetConfig, run_fleet
from sim.fleet.repair import RereplicateAfterGrace
from sim.fleet.table import QUICK, markdown, sweep

SMALL = FleetConfig(peers=150, chunks=6_000, days=120.0, replicas=2, seed=3,
                    churn_scale=3.0)


def _why(config: FleetConfig) -> str:
    return (f"seed {config.seed}; replay: python -m sim fleet --peers {config.peers} "
            f"--chunks {config.chunks} --days {config.days:g} --replicas {config.replicas} "
            f"--churn {config.churn_scale:g} --repair {config.repair} --seed {config.seed}")


def test_fleet_same_seed_same_year() -> None:
    """One config and seed give the same year: losses, repairs, events, samples."""
    a, b = run_fleet(SMALL), run_fleet(SMALL)
    assert (a.lost_files, a.repairs, a.events, a.samples) == \
        (b.lost_files, b.repairs, b.events, b.samples), _why(SMALL)
    other = run_fleet(FleetConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other.events != a.events


def test_fleet_initial_placement_is_the_products() -> None:
    """Before any churn every chunk has R copies, none on its owner, no full file."""
    fleet = Fleet(FleetConfig(peers=60, chunks=2_000, replicas=3, days=0.0))
    result = fleet.run()
    assert result.ok, [c.to_json() for c in result.checks]
    assert (fleet.live == 3).all() and (fleet.online == 3).all()


def test_fleet_repair_beats_no_repair_under_churn() -> None:
    """Under heavy churn R=2 without repair loses files; re-replication loses fewer, and
    the invariants (accounting, no full file, never the owner) hold either way."""
    none = run_fleet(FleetConfig(**{**SMALL.__dict__, "repair": "none"}))
    fixed = run_fleet(SMALL)
    assert none.ok and fixed.ok, _why(SMALL)
    assert none.lost_files > 0, f"no loss without repair; {_why(SMALL)}"
    assert fixed.lost_files < none.lost_files and fixed.repairs > 0, _why(SMALL)
    assert fixed.availability_mean > none.availability_mean


def test_fleet_product_repair_policy_runs_at_fleet_scale() -> None:
    """The product's own plan_repairs (issue 15) drives repair in the fleet: it loses fewer
    files than no repair, and the fleet's invariants hold."""
    none = run_fleet(FleetConfig(**{**SMALL.__dict__, "repair": "none"}))
    product = run_fleet(FleetConfig(**{**SMALL.__dict__, "repair": "product"}))
    assert product.ok, [c.to_json() for c in product.checks]
    assert product.policy == "product" and product.repairs > 0
    assert product.lost_files < none.lost_files, _why(SMALL)


def test_fleet_no_churn_no_loss_no_repair() -> None:
    """Without churn nothing is lost, nothing repaired, everything available."""
    still = ChurnModel(transient_per_day=0.0, leave_per_year=0.0, disk_loss_per_year=0.0,
                       join_per_year=0.0)
    result = run_fleet(FleetConfig(peers=40, chunks=800, days=30.0, churn=still))
    assert result.lost_files == 0 and result.repairs == 0
    assert result.availability_mean == 1.0


def test_fleet_no_full_file_check_fails_on_a_planted_repair_bug() -> None:
    """A repair policy that ignores the no-full-file rule is caught by the fleet's check."""
    config = FleetConfig(peers=12, chunks=1_200, days=200.0, replicas=2, seed=5,
                         churn_scale=6.0)
    bad = run_fleet(config, policy=RereplicateAfterGrace(ignore_no_full_file=True))
    check = next(c for c in bad.checks if c.name == "no-full-file")
    assert not check.ok, f"the planted bug went unnoticed; {_why(config)}"
    good = run_fleet(config)
    assert next(c for c in good.checks if c.name == "no-full-file").ok, _why(config)


@pytest.mark.chaos
@pytest.mark.sim
def test_fleet_quick_sweep_table() -> None:
    """The durability table's sweep at reduced size: every run's checks pass; a table."""
    results = sweep(QUICK)
    assert all(r.ok for r in results)
    table = markdown([r.to_json() for r in results])
    assert table.count("\n") == len(results) + 2
