"""The final table on the terminal, ``latest.json`` and the PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.config import TARGETS


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        v = f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def table(results: dict[str, Any]) -> str:
    ours = results.get("ours", {})
    peer = results.get("peer", {})
    rows: list[tuple[str, str, str, str]] = []

    def lat(r: dict[str, Any], key: str, q: str) -> str:
        if not r:
            return "-"
        v = r.get(key, {}).get(q)
        return "undelivered" if v is None else fmt(v, " ms")

    rows.append(
        (
            "clients / offered msg/s",
            f"{fmt(ours.get('clients'))} / {fmt(ours.get('offered_rate'))}" if ours else "-",
            f"{fmt(peer.get('clients'))} / {fmt(peer.get('offered_rate'))}" if peer else "-",
            "2,000 / 1,000",
        )
    )
    for q, target in (("p50", ""), ("p95", ""), ("p99", "<= 50 ms"), ("p999", ""), ("max", "")):
        rows.append(
            (f"latency {q}", lat(ours, "latency_ms", q), lat(peer, "latency_ms", q), target)
        )
    rows.append(
        (
            "ack latency p99",
            lat(ours, "ack_latency_ms", "p99"),
            lat(peer, "ack_latency_ms", "p99"),
            "",
        )
    )
    for key, label in (
        ("throughput_msgs_per_s", "delivered msgs/s"),
        ("sent", "sent"),
        ("delivered", "delivered"),
    ):
        rows.append((label, fmt(ours.get(key)), fmt(peer.get(key)), ""))
    for key in ("lost", "duplicated", "reordered", "send_errors"):
        rows.append(
            (key, fmt(ours.get(key)), fmt(peer.get(key)), "0" if key != "send_errors" else "")
        )
    ours_cpu = sum(ours.get("cpu_s", {}).values()) if ours else None
    peer_cpu = sum(peer.get("cpu_s", {}).values()) if peer else None
    rows.append(("server CPU s (all processes)", fmt(ours_cpu), fmt(peer_cpu), ""))
    ours_rss = sum(ours.get("rss_mib", {}).values()) if ours else None
    peer_rss = sum(peer.get("rss_mib", {}).values()) if peer else None
    rows.append(("server peak RSS MiB (sum)", fmt(ours_rss), fmt(peer_rss), ""))
    gen_cpu = sum(v["cpu_s"] for k, v in ours.get("generator", {}).items() if k.startswith("gen"))
    gen_cpu_p = sum(v["cpu_s"] for k, v in peer.get("generator", {}).items() if k.startswith("gen"))
    rows.append(
        ("generator CPU s", fmt(gen_cpu) if ours else "-", fmt(gen_cpu_p) if peer else "-", "")
    )
    cap = results.get("capacity")
    if cap:
        rows.append(("idle connections (one edge)", fmt(cap["idle_connections"]), "-", ">= 20,000"))
        rows.append(
            ("RSS per connection", fmt(cap["rss_per_connection_kib"], " KiB"), "-", "<= 20 KiB")
        )
    rc = results.get("reconnect")
    if rc:
        rows.append(
            (
                f"reconnect+sync {fmt(rc['clients'])} clients",
                fmt(rc["seconds"], " s") + f" (lost {rc['lost']})",
                "no sync",
                "<= 10 s (2,000)",
            )
        )
    sw = results.get("sweep")
    if sw:
        rows.append(
            ("max msg/s with p99 <= 100 ms", fmt(sw["max_rate_under_100ms_p99"]), "-", ">= 5,000")
        )
    for g in results.get("groups", []):
        rows.append(
            (
                f"groups of {g['group_size']}: p99 @ {fmt(g['offered_rate'])} msg/s",
                f"{lat(g, 'latency_ms', 'p99')}, lost {g['lost']}",
                "-",
                "",
            )
        )
    widths = [max(len(r[i]) for r in [("", "ours", "peer", "target"), *rows]) for i in range(4)]
    lines = []
    header = ("", "ours", "peer (socketio)", "target")
    widths = [max(widths[i], len(header[i])) for i in range(4)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                (c.ljust(w) if i == 0 else c.rjust(w))
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def write_json(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    paths = [out_dir / "latest.json", out_dir / f"{results['meta']['profile']}.json"]
    for p in paths:
        p.write_bytes(data + b"\n")
    return paths


def plots(
    results: dict[str, Any], samples: dict[str, dict[str, np.ndarray]], out_dir: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    colors = {"ours": "tab:blue", "peer": "tab:orange"}
    labels = {"ours": "kchat (ours)", "peer": "python-socketio + Redis (peer)"}

    # Latency CDF: linear body on the left, the tail (1 - F, log) on the right.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in ("ours", "peer"):
        s = samples.get(name)
        if s is None or s["lat_us"].size == 0:
            continue
        lat = np.sort(s["lat_us"]) / 1000
        f = np.arange(1, lat.size + 1) / lat.size
        ax1.plot(lat, f, label=labels[name], color=colors[name])
        ax2.plot(lat, 1 - f + 1 / lat.size, label=labels[name], color=colors[name])
    rate = results.get("ours", {}).get("offered_rate")
    ax1.set_xscale("log")
    ax1.set_xlabel("end-to-end latency (ms, log)")
    ax1.set_ylabel("fraction of deliveries")
    ax1.set_title(f"Latency CDF at {rate:.0f} msg/s" if rate else "Latency CDF")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("end-to-end latency (ms, log)")
    ax2.set_ylabel("fraction slower (1 - CDF)")
    ax2.set_title("Tail")
    for frac in (0.01, 0.001):
        ax2.axhline(frac, color="grey", lw=0.6, ls="--")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    p = out_dir / "latency_cdf.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    # Latency over time: p50 and p99 per second of each run.
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for name in ("ours", "peer"):
        s = samples.get(name)
        if s is None or s["lat_us"].size == 0:
            continue
        # By send time: how latency grows while the run goes on.
        sent_ms = s["recv_ms"] - s["lat_us"] // 1000
        secs = (sent_ms - sent_ms.min()) // 1000
        lat = s["lat_us"] / 1000
        xs, p50, p99 = [], [], []
        order = np.argsort(secs, kind="stable")
        secs, lat = secs[order], lat[order]
        bounds = np.searchsorted(secs, np.arange(secs.max() + 2))
        for t in range(len(bounds) - 1):
            chunk = lat[bounds[t] : bounds[t + 1]]
            if chunk.size:
                xs.append(t)
                p50.append(np.percentile(chunk, 50))
                p99.append(np.percentile(chunk, 99))
        ax.plot(xs, p99, color=colors[name], label=f"{labels[name]} p99")
        ax.plot(xs, p50, color=colors[name], ls="--", label=f"{labels[name]} p50")
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the measured run (by send time)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Latency over time (per-second p50 / p99 of the delivered messages)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p = out_dir / "latency_over_time.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    sweep = results.get("sweep", {}).get("steps", [])
    if sweep:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        rates = [st["rate"] for st in sweep]
        for q, style in (("p50", "--"), ("p99", "-"), ("p999", ":")):
            ax.plot(rates, [st["latency_ms"][q] for st in sweep], style, marker="o", label=q)
        ax.axhline(100, color="red", lw=0.8, label="100 ms")
        ax.set_yscale("log")
        ax.set_xlabel("offered messages/s")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title("Sweep: latency against offered rate (ours)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        p = out_dir / "sweep.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def targets_summary(results: dict[str, Any]) -> list[str]:
    """One line per target: met or not."""
    out = []
    ours = results.get("ours")
    if ours:
        p99 = ours["latency_ms"]["p99"]
        ok = p99 is not None and p99 <= TARGETS["p99_ms_at_1000_msgs"]
        at_scale = ours["offered_rate"] >= 1000 and ours["clients"] >= 2000
        shown = "beyond the run (undelivered)" if p99 is None else f"{p99} ms"
        out.append(
            f"p99 {shown} at {ours['offered_rate']:.0f} msg/s with"
            f" {ours['clients']} clients (target <= 50 ms at 1,000 msg/s, 2,000 clients):"
            f" {verdict(ok, at_scale)}"
        )
        faults = ours["lost"] + ours["duplicated"] + ours["reordered"]
        out.append(
            f"lost/duplicated/reordered {faults} (target 0): {'met' if not faults else 'NOT met'}"
        )
    sw = results.get("sweep")
    if sw:
        best = sw["max_rate_under_100ms_p99"]
        out.append(
            f"highest rate with p99 <= 100 ms: {best:.0f} msg/s (target >= 5,000):"
            f" {'met' if best >= 5000 else 'NOT met'}"
        )
    cap = results.get("capacity")
    if cap:
        # Two targets in one: the memory holds at any scale; the count needs 20,000 file
        # descriptors, which a machine's hard limit may not allow one process.
        memory_ok = cap["rss_per_connection_kib"] <= 20
        count_ok = cap["idle_connections"] >= 20000
        limit = cap.get("edge_nofile_limit")
        capped = not count_ok and limit is not None and limit <= 20000
        count = (
            "met"
            if count_ok
            else f"NOT met: this machine's open-file limit ({limit}) caps one process"
            if capped
            else verdict(False, cap["attempted"] >= 20000)
        )
        out.append(
            f"{cap['idle_connections']} idle connections (target >= 20,000): {count};"
            f" {cap['rss_per_connection_kib']} KiB each (target <= 20 KiB):"
            f" {'met' if memory_ok else 'NOT met'}"
        )
    rc = results.get("reconnect")
    if rc:
        ok = rc["seconds"] is not None and rc["seconds"] <= 10 and rc["clients"] >= 2000
        at_scale = rc["clients"] >= 2000 or rc["seconds"] is None or rc["seconds"] > 10
        out.append(
            f"{rc['clients']} clients reconnected and synced in {rc['seconds']} s"
            f" (target 2,000 in <= 10 s): {verdict(ok, at_scale)}"
        )
    return out


def verdict(ok: bool, at_scale: bool) -> str:
    if ok:
        return "met"
    return (
        "NOT met"
        if at_scale
        else "not met at this (smaller) scale; the target is for the default profile"
    )


def markdown(results: dict[str, Any]) -> str:
    """The figures of one run as Markdown (``python -m bench.report bench-results/x.json``)."""
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"Run `{meta['run_id']}`, profile `{meta['profile']}`, {meta['started']}, commit"
        f" `{meta['commit']}`, {meta['wall_s']:.0f} s; {m['cores']} cores ({m['cpu_model']}),"
        f" {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}.",
        "",
        "| | ours | peer (python-socketio + Redis) | target |",
        "|---|---|---|---|",
    ]
    for line in table(results).splitlines()[2:]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if len(cells) == 4:
            lines.append("| " + " | ".join(cells) + " |")
        elif len(cells) == 3:
            lines.append("| " + " | ".join([*cells, ""]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    data = orjson.loads(
        Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results/latest.json").read_bytes()
    )
    print(markdown(data))
