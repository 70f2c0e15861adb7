"""How a simulated run is told to a person: verdicts, trace hash, and on failure the replay."""

from __future__ import annotations

from chaos.checkers import MAX_PROBLEMS_LISTED
from sim.runner import SimReport


def format_report(report: SimReport) -> str:
    lines = [f"sim scenario {report.scenario}  peers {report.peers}  seed {report.seed}  "
             f"owner {report.owner}  victim {report.victim}"
             + (f"  plant {report.plant}" if report.plant else ""),
             f"rates: upload corruption {report.rates.get('corrupt_upload_rate', 0):.2%}, "
             f"serve corruption {report.rates.get('corrupt_serve_rate', 0):.2%}",
             "operations:"]
    for op in report.ops:
        t = op["totals"]
        lines.append(
            f"  {op['op']:<18} {op['outcome']:<7} {op['duration_ms']:>8} ms  "
            f"sent={t.get('segments_sent', 0)} resent={t.get('segments_resent', 0)} "
            f"fetched={t.get('segments_fetched', 0)} bad={t.get('segments_bad', 0)} "
            f"failures={t.get('failures', 0)}" + (f"  [{op['error'][:120]}]" if op["error"]
                                                  else ""))
    if not report.ops:
        lines.append("  (none)")
    lines.append("checkers" + (f" ({report.violation.after}):" if report.violation
                               else " (at the end, healed):"))
    for v in report.verdicts:
        lines.append(f"  {v.verdict.upper():<4}  {v.checker}: {v.detail}")
        lines.extend(f"          - {p}" for p in v.problems[:MAX_PROBLEMS_LISTED])
    lines.append(f"trace {report.trace_hash}  {report.events} events  virtual "
                 f"{report.virtual_ms / 1000:.3f} s  wall {report.wall_s:.2f} s  CPU "
                 f"{report.cpu_s:.2f} s  ({report.events_per_s:,.0f} events/s wall)")
    if report.ok:
        lines.append("result: OK")
    else:
        assert report.violation is not None
        lines.append(f"result: FAILED {report.violation.after}: "
                     f"{', '.join(report.violation.checkers)}")
        lines.append(f"replay with: {report.replay}")
        lines.append(f"the {len(report.violation.events_before)} events before it:")
        lines.extend(f"  {line}" for line in report.violation.events_before)
    return "\n".join(lines)
