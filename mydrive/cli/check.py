"""``mydrive check`` (audit, and with ``--repair`` restore, your files' replicas) and
``mydrive durability run`` (the same, spread over time, while you are logged in).

Both act as the owner: they need the passphrase, because audits are owner-signed fetches and
repairs rewrite the owner's signed records (docs/durability.md). Exit codes of ``check``:
0 every chunk has R replicas that count (after the repair, with ``--repair``); 12 some chunk
has fewer; 7 some chunk has none that counts (it can't be downloaded now).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mydrive.errors import BadRequest, DataLoss

from .common import handle_errors, json_option, peer_option, print_json, user_option
from .users import session

if TYPE_CHECKING:
    from mydrive.engine.durability import CheckReport, DurabilitySettings

EXIT_DEGRADED = 12  # some chunk below R (not an error class: the check itself worked)


def _settings(dead_after_s: float | None, segments: int | None,
              max_bytes_per_s: int | None = None,
              audits_per_pass: int | None = None) -> DurabilitySettings:
    from mydrive.engine.durability import DurabilitySettings

    settings = DurabilitySettings()
    if dead_after_s is not None:
        # 0: a peer that does not answer now is dead (one probe is enough).
        settings = replace(settings, dead_after_s=dead_after_s,
                           min_failed_probes=1 if dead_after_s == 0
                           else settings.min_failed_probes)
    if segments is not None:
        settings = replace(settings, audit_segments=segments)
    if max_bytes_per_s is not None:
        settings = replace(settings, repair_bytes_per_s=float(max_bytes_per_s))
    if audits_per_pass is not None:
        settings = replace(settings, audits_per_pass=audits_per_pass)
    return settings


def _print_report(report: CheckReport) -> None:
    for f in report.files:
        doc = f.to_json(report.replicas)
        lost = doc["lost"]
        after = doc.get("after")
        status = "healthy" if doc["healthy"] else "DEGRADED"
        if after is not None and not doc["healthy"]:
            status += " -> " + ("repaired" if after["healthy"] else "STILL DEGRADED")
        click.echo(f"{f.path}: {status}")
        for item in lost:
            click.echo(f"  chunk {item['chunk']:>4}: replica on {item['peer'][:16]} "
                       f"{item['state']}")
        for chunk in doc["chunks"]:
            waiting = [r for r in chunk["replicas"] if r["state"] in ("unreachable",
                                                                       "refused")]
            for r in waiting:
                click.echo(f"  chunk {chunk['index']:>4}: replica on {r['peer'][:16]} "
                           f"{r['state']} (waited for, not replaced yet)")
    s = report.summary()
    a = report.audits.to_json()
    click.echo(f"audited {a['replicas']} replicas ({a['segments']} segments, {a['bytes']} "
               f"bytes): {s['good']} good, {s['missing']} missing, {s['corrupt']} corrupt, "
               f"{s['misbehaving']} misbehaving, {s['unreachable'] + s['refused']} "
               f"unreachable, {s['dead']} on dead peers; {s['chunks_below_r']} of "
               f"{s['chunks']} chunks below R={report.replicas}")
    if report.repair is not None:
        r = report.repair.to_json()
        click.echo(f"repair: {r['replicated']} replicas added, {r['adopted']} adopted, "
                   f"{r['moved']} moved, {r['failed']} failed; {r['bytes_fetched']} bytes "
                   f"fetched, {r['bytes_stored']} stored, {r['bytes_verified']} verified; "
                   f"{r['strays_deleted']} stray copies deleted"
                   + (f"; {r['deferred']} left to a later run" if r["deferred"] else ""))
        for item in r["unplaceable"]:
            click.echo(f"  file {item['file_id'][:16]} chunk {item['chunk']}: "
                       f"{item['reason']}")
        for error in r["errors"]:
            click.echo(f"  note: {error}", err=True)
        after = report.summary(after=True)
        click.echo(f"after repair: {after['chunks_below_r']} of {after['chunks']} chunks "
                   f"below R")


def _exit_code(report: CheckReport) -> int:
    if report.unavailable:
        return DataLoss.exit_code
    return 0 if report.healthy else EXIT_DEGRADED


def _why_not_healthy(report: CheckReport) -> str:
    """One line for stderr when the check ends unhealthy (also under --json)."""
    repaired = report.repair is not None
    s = report.summary(after=repaired)
    text = (f"check: {s['chunks_below_r']} of {s['chunks']} chunks below R={report.replicas}"
            f"{' after the repair' if repaired else ''}, {s['chunks_without_replica']} with "
            f"no replica that counts; waiting for {s['unreachable'] + s['refused']} "
            f"unreachable replica(s)")
    if report.repair is not None:
        r = report.repair
        if r.unplaceable:
            text += f"; {r.unplaceable[0].reason}"
        if r.deferred:
            text += f"; {r.deferred} replica(s) left to a later run"
        if r.errors:
            text += f"; {r.errors[0]}"
    return text


@click.command("check")
@peer_option
@user_option
@click.argument("remote", required=False)
@click.option("--all", "all_files", is_flag=True, help="check every one of your files")
@click.option("--repair", is_flag=True,
              help="restore every chunk to R replicas and update your signed records")
@click.option("--rebalance", is_flag=True,
              help="also move replicas onto peers the placement now prefers (new peers)")
@click.option("--verify", "verify_all", is_flag=True,
              help="audit every segment of every replica (default: a random sample)")
@click.option("--segments", type=click.IntRange(1, 4096),
              help="segments per replica audit when not --verify (default 2)")
@click.option("--dead-after-s", type=click.FloatRange(min=0),
              help="replace replicas on peers unreachable this long (default 3600; 0: "
                   "unreachable now counts as dead)")
@click.option("--max-bytes-per-s", type=click.IntRange(min=1),
              help="pace the repair's transfers (fetched + stored) to this rate")
@json_option
def check(peer_dir: Path, user: str, remote: str | None, all_files: bool, repair: bool,
          rebalance: bool, verify_all: bool, segments: int | None, dead_after_s: float | None,
          max_bytes_per_s: int | None, as_json: bool) -> None:
    """Prove which replicas of REMOTE (a file or folder), or of --all your files, the peers
    still hold, with fresh owner-signed audits; --repair restores R."""
    with handle_errors():
        if (remote is None) == (not all_files):
            raise BadRequest("name a REMOTE file or folder, or give --all (not both)")
        with session(peer_dir, user) as (client, keys):
            report = client.check(keys, remote, verify_all=verify_all,
                                  repair=repair or rebalance, rebalance=rebalance,
                                  settings=_settings(dead_after_s, segments),
                                  max_bytes_per_s=max_bytes_per_s)
        if as_json:
            print_json(report.to_json())
        else:
            _print_report(report)
    code = _exit_code(report)
    if code:
        click.echo(_why_not_healthy(report), err=True)
    sys.exit(code)


@click.group("durability")
def durability() -> None:
    """Background audits and repairs of your files while you are logged in."""


@durability.command("run")
@peer_option
@user_option
@click.option("--once", is_flag=True, help="run one pass and exit")
@click.option("--interval-s", type=click.FloatRange(min=0.0), default=60.0, show_default=True,
              help="pause between passes")
@click.option("--audits-per-pass", type=click.IntRange(min=0),
              help="replicas audited per pass (default 256)")
@click.option("--segments", type=click.IntRange(1, 4096),
              help="segments per replica audit (default 2)")
@click.option("--dead-after-s", type=click.FloatRange(min=0),
              help="replace replicas on peers unreachable this long (default 3600)")
@click.option("--max-bytes-per-s", type=click.IntRange(min=1),
              help="repair bandwidth budget, fetched + stored (default 8 MiB/s)")
@click.option("--metrics-file", type=click.Path(path_type=Path, dir_okay=False),
              help="write Prometheus text here after every pass (node-exporter textfile)")
@json_option
def durability_run(peer_dir: Path, user: str, once: bool, interval_s: float,
                   audits_per_pass: int | None, segments: int | None,
                   dead_after_s: float | None, max_bytes_per_s: int | None,
                   metrics_file: Path | None, as_json: bool) -> None:
    """Audit a few replicas per pass, detect dead peers, repair and rebalance, until
    stopped (SIGTERM or Ctrl-C)."""
    import json
    import signal

    from mydrive.engine.durability import describe_durability_metrics
    from mydrive.runtime.disk import atomic_write_bytes
    from mydrive.runtime.metrics import Metrics

    settings = _settings(dead_after_s, segments, max_bytes_per_s, audits_per_pass)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    metrics = Metrics()
    describe_durability_metrics(metrics)
    with handle_errors(), session(peer_dir, user) as (client, keys):
        try:
            while not stop.is_set():
                report = client.durability_pass(keys, settings=settings, metrics=metrics)
                if metrics_file is not None:
                    atomic_write_bytes(metrics_file, metrics.render().encode())
                if as_json:
                    click.echo(json.dumps({"summary": report.summary(after=True),
                                           "audits": report.audits.to_json(),
                                           "repair": report.repair.to_json()
                                           if report.repair else None,
                                           "totals": report.totals}, sort_keys=True))
                else:
                    s, a = report.summary(after=True), report.audits.to_json()
                    r = report.repair
                    click.echo(f"pass: {a['replicas']} audits ({a['bytes']} bytes), "
                               f"{r.replicated + r.adopted if r else 0} replicas repaired "
                               f"({r.bytes_fetched + r.bytes_stored if r else 0} bytes), "
                               f"{r.moved if r else 0} moved; {s['chunks_below_r']} of "
                               f"{s['chunks']} chunks below R")
                if once:
                    break
                stop.wait(interval_s)
        except KeyboardInterrupt:
            pass
