"""Turn one run's results into PNG plots and a Markdown summary (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.throughput import CPU_FIGURES, FIGURES  # noqa: E402

PLOTS = ("throughput.png", "cpu.png", "memory.png", "faults.png")
# How the plots and tables name benchmarks/throughput.py's timed figures.
LABELS = {"put": "put", "put_durable": "put until durable", "get": "get (from disk)",
          "get_hot": "get (hot)"}


def _title(results: dict[str, Any]) -> str:
    m = results["meta"]
    return (f"{m['machine']['nproc']} cores, {m['machine']['cpu_model']}, {m['date']}, "
            f"commit {m['commit']['head'][:10]}")


def plot_throughput(results: dict[str, Any], path: Path) -> None:
    t = results["throughput"]
    names = list(t["systems"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(FIGURES)
    for k, d in enumerate(FIGURES):
        values = [t["systems"][n][f"{d}_MBps"] for n in names]
        offset = (k - (len(FIGURES) - 1) / 2) * width
        bars = ax.bar([i + offset for i in range(len(names))], values, width, label=LABELS[d])
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("MB/s (median)")
    ax.set_title(f"put/get of {t['size_bytes'] >> 20} MiB, median of {t['runs']}\n"
                 f"{_title(results)}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cpu(results: dict[str, Any], path: Path) -> None:
    t = results["throughput"]["systems"]
    labels, stacks = [], []
    for name, doc in t.items():
        for d in ("put", "get"):
            labels.append(f"{name}\n{d}")
            stacks.append({k: v for k, v in doc[f"{d}_cpu_s_per_gib"].items() if k != "total"})
    kinds = sorted({k for s in stacks for k in s})
    fig, ax = plt.subplots(figsize=(10, 4.8))
    bottom = [0.0] * len(labels)
    for kind in kinds:
        values = [s.get(kind, 0.0) for s in stacks]
        ax.bar(range(len(labels)), values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("CPU seconds per GiB of file")
    ax.set_title(f"CPU per GiB by process kind\n{_title(results)}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(results: dict[str, Any], path: Path) -> None:
    mem = results["memory"]
    sizes = [r["size_mib"] for r in mem["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, d in zip(axes, ("put", "get"), strict=True):
        kinds = mem["rows"][0]["peak_rss_mib"][d].keys()
        for kind in kinds:
            ax.plot(sizes, [r["peak_rss_mib"][d].get(kind, 0) for r in mem["rows"]],
                    marker="o", label=kind)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("file size (MiB)")
        ax.set_title(d)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("peak RSS (MiB), one process")
    fig.suptitle(f"peak RSS, mydrive TLS\n{_title(results)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_faults(results: dict[str, Any], path: Path) -> None:
    rs = results["resend"]["rates"]
    rates = list(rs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    x = range(len(rates))
    a1.bar([i - 0.2 for i in x], [rs[r]["resend_ratio"] or 0 for r in rates], 0.4,
           label="resent bytes / corrupt bytes")
    a1.bar([i + 0.2 for i in x], [rs[r]["slowdown"] for r in rates], 0.4,
           label="put time / put time at 0 %")
    a1.set_xticks(list(x), [f"{float(r):.0%}" for r in rates])
    a1.set_xlabel("corrupt segments")
    a1.axhline(1.0, color="grey", linewidth=0.8)
    a1.legend(fontsize=8)
    a1.set_title("resend efficiency")
    fo = results["failover"]
    a2.bar(["get", "get, replica\nkilled mid-way"],
           [sum(fo["get_s"]) / len(fo["get_s"]),
            sum(fo["get_s_replica_killed"]) / len(fo["get_s_replica_killed"])])
    a2.set_ylabel("seconds (mean)")
    a2.set_title(f"failover: {fo['slowdown']} x (median)")
    fig.suptitle(_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Every plot whose phase ran; returns the file names written."""
    written = []
    for name, phase, draw in (("throughput.png", "throughput", plot_throughput),
                              ("cpu.png", "throughput", plot_cpu),
                              ("memory.png", "memory", plot_memory),
                              ("faults.png", "failover", plot_faults)):
        if phase in results and (phase != "failover" or "resend" in results):
            draw(results, out_dir / name)
            written.append(name)
    return written


def markdown(results: dict[str, Any]) -> str:
    """The summary tables docs/benchmarks.md carries."""
    m = results["meta"]
    mach = m["machine"]
    lines = [f"Measured {m['date']} at commit `{m['commit']['head'][:12]}`"
             f"{' (mydrive/ modified)' if m['commit']['mydrive_modified'] else ''} on "
             f"{mach['nproc']} cores ({mach['cpu_model']}), {mach['ram_gib']} GiB RAM, "
             f"Linux {mach['kernel']}, Python {mach['python']}."
             + (f" Load average (1 min) {m['load_average_at_start'][0]:.1f} at the start, "
                f"{m['load_average_at_end'][0]:.1f} at the end."
                if "load_average_at_end" in m else ""), ""]
    if "throughput" in results:
        t = results["throughput"]
        figures, cpus = FIGURES, CPU_FIGURES
        lines += [f"Throughput, {t['size_bytes'] >> 20} MiB, median of {t['runs']} "
                  f"(MB/s = 10^6 bytes/s); CPU seconds per GiB of file, all processes. "
                  f"Before each get the stored bytes were synced and dropped from the page "
                  f"cache (every system alike); \"get (hot)\" is a second get right after:", "",
                  "| system | " + " | ".join(f"{LABELS[f]} MB/s" for f in figures)
                  + " | " + " | ".join(f"{LABELS[f]} CPU s/GiB" for f in cpus)
                  + " |", "|---" * (1 + len(figures) + len(cpus)) + "|"]
        for name, d in t["systems"].items():
            lines.append(f"| {name} | " + " | ".join(str(d[f"{f}_MBps"]) for f in figures)
                         + " | " + " | ".join(str(d[f"{f}_cpu_s_per_gib"]["total"])
                                              for f in cpus) + " |")
        lines += ["", "| ratio | " + " | ".join(LABELS[f] for f in figures) + " |",
                  "|---" * (1 + len(figures)) + "|"]
        for name, r in t["ratios"].items():
            lines.append(f"| {name} | " + " | ".join(str(r[f]) for f in figures) + " |")
        lines += ["", "CPU seconds per GiB by process kind (in brackets: the part spent in the "
                  "kernel):", "",
                  "| system | direction | " + " | ".join(
                      ["client", "receiver", "sender", "nginx", "sshd", "tahoe nodes"]) + " |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, d in t["systems"].items():
            for direction in ("put", "get"):
                c = d[f"{direction}_cpu_s_per_gib"]
                k = d.get(f"{direction}_kernel_cpu_s_per_gib", {})

                def cell(kind: str, c: dict[str, float] = c, k: dict[str, float] = k) -> str:
                    return f"{c[kind]} ({k[kind]})" if kind in c and kind in k else \
                        str(c.get(kind, ""))

                tahoe = ""
                if "tahoe_client_node" in c:
                    tahoe = (f"{round(c['tahoe_client_node'] + c['tahoe_storage_nodes'], 2)} "
                             f"({round(k['tahoe_client_node'] + k['tahoe_storage_nodes'], 2)})")
                cells = [cell("client"), cell("receiver"), cell("sender"), cell("nginx"),
                         cell("sshd"), tahoe]
                lines.append(f"| {name} | {direction} | " + " | ".join(str(x) for x in cells)
                             + " |")
    if "command_overhead" in results:
        o = results["command_overhead"]
        lines += ["", f"Every mydrive command pays a fixed start-up (imports, passphrase key "
                  f"derivation): `mydrive ls` takes {o['wall_s']} s wall, {o['cpu_s']} CPU s."]
    if "memory" in results:
        mem = results["memory"]
        kinds = ("client", "receiver", "sender", "nginx")
        lines += ["", "Peak RSS (MiB, the largest single process of each kind; mydrive TLS):",
                  "", "| file | " + " | ".join(f"put {k}" for k in kinds) + " | "
                  + " | ".join(f"get {k}" for k in kinds) + " |",
                  "|---" * (1 + 2 * len(kinds)) + "|"]
        for r in mem["rows"]:
            p, g = r["peak_rss_mib"]["put"], r["peak_rss_mib"]["get"]
            lines.append(f"| {r['size_mib']} MiB | "
                         + " | ".join(str(p.get(k, "")) for k in kinds) + " | "
                         + " | ".join(str(g.get(k, "")) for k in kinds) + " |")
        gr = mem["growth_largest_over_smallest"]
        lines += ["", f"Growth of the peak from {mem['sizes_mib'][0]} to "
                  f"{mem['sizes_mib'][-1]} MiB: put client {gr['put'].get('client')} x, "
                  f"get client {gr['get'].get('client')} x, put receiver "
                  f"{gr['put'].get('receiver')} x, get receiver {gr['get'].get('receiver')} x."]
    if "resend" in results:
        rs = results["resend"]
        lines += ["", f"Resends, {rs['size_bytes'] >> 20} MiB put, {rs['runs']} run(s) per "
                  f"rate:", "",
                  "| corrupt | corrupt segments | resent segments | resent bytes / corrupt "
                  "bytes | same set | slowdown |", "|---|---|---|---|---|---|"]
        for rate, d in rs["rates"].items():
            lines.append(f"| {float(rate):.0%} | {d['corrupt_segments']} | "
                         f"{d['resent_segments']} | {d['resend_ratio']} | "
                         f"{d['resent_equals_corrupt']} | {d['slowdown']} x |")
    if "failover" in results:
        fo = results["failover"]
        lines += ["", f"Failover: get of {fo['size_bytes'] >> 20} MiB with the busiest "
                  f"replica's sender killed a third of the way: {fo['slowdown']} x the time "
                  f"without ({fo['killed_mid_transfer']} of {fo['runs']} runs killed it "
                  f"mid-transfer; {fo['fetch_failures_from_killed_peer']} fetches from it "
                  f"failed over)."]
    if "profile" in results:
        pr = results["profile"]
        lines += ["", f"py-spy, {pr['size_bytes'] >> 20} MiB put and get, mydrive TLS "
                  f"(sampled seconds; `gil`: the thread holding the GIL, `active`: every "
                  f"non-idle thread, disk waits included):", "",
                  "| mode | process | sampled s | /proc CPU s | top functions (share of samples) |",
                  "|---|---|---|---|---|"]
        for mode in ("gil", "active"):
            for direction in ("put", "get"):
                for proc, p in pr.get(mode, {}).get(direction, {}).items():
                    top = ", ".join(f"{t['function']} {t['share']:.0%}"
                                    for t in p["top_self"][:4])
                    lines.append(f"| {mode} | {direction} {proc} | {p['cpu_s_sampled']} | "
                                 f"{p.get('cpu_s_measured', '')} | {top} |")
    if results.get("errors"):
        lines += ["", "Phases that failed: " + "; ".join(
            f"{k}: {v}" for k, v in results["errors"].items())]
    return "\n".join(lines) + "\n"
