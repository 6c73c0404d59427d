"""The ratio table and the per-system table (terminal and Markdown), ``latest.json``, the plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.config import TARGETS

ORDER = ("ours", "relay", "seed", "centrifugo")


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        v = f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def systems(results: dict[str, Any]) -> list[str]:
    found = results.get("systems", {})
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


# ---------------------------------------------------------------------- figures per system


def light_load(sys: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep's first step (its lowest rate): the light-load latencies."""
    steps = sys.get("sweep", {}).get("steps", [])
    return steps[0] if steps else None


def figures(sys: dict[str, Any]) -> dict[str, float | None]:
    """The figures the ratio table compares."""
    light = light_load(sys)
    sweep = sys.get("sweep")
    cap = sys.get("capacity")
    main = sys.get("main")
    return {
        "max_rate": sweep["max_rate_under_100ms_p99"] if sweep else None,
        "cpu_ms_per_delivered": main.get("cpu_ms_per_delivered") if main else None,
        "light_cpu_ms_per_delivered": light.get("cpu_ms_per_delivered") if light else None,
        "light_p50_ms": light["latency_ms"]["p50"] if light else None,
        "light_p99_ms": light["latency_ms"]["p99"] if light else None,
        "rss_per_connection_kib": cap["rss_per_connection_kib"] if cap else None,
    }


RATIO_ROWS = (
    ("max_rate", "highest rate with p99 <= 100 ms (msg/s)", "higher is better"),
    ("cpu_ms_per_delivered", "server CPU per delivered message (ms)", "lower is better"),
    # At the main run's rate a saturated system also spends CPU on messages still in flight
    # when the window ends; at light load nobody is saturated (but idle work weighs more).
    (
        "light_cpu_ms_per_delivered",
        "server CPU per delivered message at light load (ms)",
        "lower is better",
    ),
    ("light_p50_ms", "light-load p50 (ms)", "lower is better"),
    ("light_p99_ms", "light-load p99 (ms)", "lower is better"),
    ("rss_per_connection_kib", "RSS per idle connection (KiB)", "lower is better"),
)


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ours / peer for each figure of the ratio table (None: a figure is missing or 0)."""
    found = results.get("systems", {})
    if "ours" not in found:
        return {}
    ours = figures(found["ours"])
    out: dict[str, dict[str, float | None]] = {}
    for name in systems(results):
        if name == "ours":
            continue
        peer = figures(found[name])
        out[name] = {
            key: (
                round(ours[key] / peer[key], 2)  # type: ignore[operator]
                if ours[key] is not None and peer[key]
                else None
            )
            for key, _label, _better in RATIO_ROWS
        }
    return out


def ratio_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ratio table: per figure, ours and each peer, then the ratios."""
    found = results.get("systems", {})
    names = systems(results)
    peers = [n for n in names if n != "ours"]
    header = ["", *names, *(f"ours / {p}" for p in peers)]
    rows = []
    rat = results.get("ratios") or ratios(results)
    figs = {n: figures(found[n]) for n in names}
    for key, label, better in RATIO_ROWS:
        row = [f"{label}, {better}"]
        row += [fmt_figure(key, figs[n][key]) for n in names]
        row += [fmt_ratio(rat.get(p, {}).get(key)) for p in peers]
        rows.append(row)
    return header, rows


def fmt_figure(key: str, v: float | None) -> str:
    if v is None:
        return "-"
    if key == "max_rate":
        return fmt(v) if v else "none passed"
    return fmt(float(v))


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}x"


def main_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    found = results.get("systems", {})
    names = systems(results)
    header = ["", *names, "target (ours)"]
    rows: list[list[str]] = []

    def add(label: str, cell: Any, target: str = "") -> None:
        rows.append([label, *(cell(found[n]) for n in names), target])

    def main(s: dict[str, Any], key: str) -> Any:
        return s.get("main", {}).get(key)

    def lat(s: dict[str, Any], key: str, q: str) -> str:
        m = s.get("main")
        if not m:
            return "-"
        v = m.get(key, {}).get(q)
        return "undelivered" if v is None else fmt(v, " ms")

    add(
        "clients / offered msg/s",
        lambda s: f"{fmt(main(s, 'clients'))} / {fmt(main(s, 'offered_rate'))}",
        "2,000 / 1,000",
    )
    for q, target in (("p50", ""), ("p95", ""), ("p99", "<= 50 ms"), ("p999", ""), ("max", "")):
        add(f"latency {q}", lambda s, q=q: lat(s, "latency_ms", q), target)
    add("ack latency p50", lambda s: lat(s, "ack_latency_ms", "p50"))
    add("ack latency p99", lambda s: lat(s, "ack_latency_ms", "p99"))
    add("delivered msg/s", lambda s: fmt(main(s, "throughput_msgs_per_s")))
    add("sent / delivered", lambda s: f"{fmt(main(s, 'sent'))} / {fmt(main(s, 'delivered'))}")
    for key in ("lost", "duplicated", "reordered"):
        add(key, lambda s, key=key: fmt(main(s, key)), "0")
    add("send errors", lambda s: fmt(main(s, "send_errors")))
    add("server CPU s (own + shared)", lambda s: fmt(main(s, "server_cpu_s")))
    add("  of which own processes", lambda s: fmt(main(s, "own_cpu_s")))
    add("cpu_ms_per_delivered", lambda s: fmt(main(s, "cpu_ms_per_delivered")))
    add("peak RSS MiB (own processes)", lambda s: fmt(main(s, "own_peak_rss_mib")))
    add(
        "generator CPU s",
        lambda s: fmt(gen_cpu(s)) if s.get("main") else "-",
    )
    add(
        "light load: p50 / p99",
        lambda s: (
            f"{fmt(ll['latency_ms']['p50'])} / {fmt(ll['latency_ms']['p99'])} ms"
            f" @ {fmt(ll['rate'])}"
            if (ll := light_load(s))
            else "-"
        ),
    )
    add(
        "max msg/s with p99 <= 100 ms",
        lambda s: (
            fmt_figure("max_rate", s["sweep"]["max_rate_under_100ms_p99"])
            if s.get("sweep")
            else "-"
        ),
        ">= 5,000",
    )
    add(
        "idle connections (one node)",
        lambda s: fmt(s["capacity"]["idle_connections"]) if s.get("capacity") else "-",
        ">= 20,000",
    )
    add(
        "RSS per idle connection",
        lambda s: (
            fmt(s["capacity"]["rss_per_connection_kib"], " KiB") if s.get("capacity") else "-"
        ),
        "<= 20 KiB",
    )

    def storm(s: dict[str, Any]) -> str:
        rc = s.get("reconnect")
        if not rc:
            return "no sync" if "main" in s else "-"
        return f"{fmt(rc['seconds'], ' s')} (lost {rc['lost']})"

    clients = next(
        (found[n]["reconnect"]["clients"] for n in names if found[n].get("reconnect")), None
    )
    add(f"reconnect+catch-up {fmt(clients)} clients", storm, "<= 10 s (2,000)")
    for g in found.get("ours", {}).get("groups", []):
        rows.append(
            [
                f"groups of {g['group_size']}: p99 @ {fmt(g['offered_rate'])} msg/s",
                fmt(g["latency_ms"]["p99"], " ms") + f", lost {g['lost']}",
                *("-" for _ in names[1:]),
                "",
            ]
        )
    return header, rows


def gen_cpu(s: dict[str, Any]) -> float:
    """CPU seconds of the load generators in a system's main run (they share the cores)."""
    gens = s.get("main", {}).get("generator", {})
    return float(sum(v["cpu_s"] for k, v in gens.items() if k.startswith("gen")))


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                (c.ljust(w) if i == 0 else c.rjust(w))
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    """The terminal's summary: the ratio table, then every system's figures."""
    return text_table(*ratio_rows(results)) + "\n\n" + text_table(*main_rows(results))


def markdown(results: dict[str, Any]) -> str:
    """The figures of one run as Markdown (``python -m bench.report bench-results/x.json``)."""
    meta = results["meta"]
    m = meta["machine"]
    found = results.get("systems", {})
    lines = [
        f"Run `{meta['run_id']}`, profile `{meta['profile']}`, {meta['started']}, commit"
        f" `{meta['commit']}`, {meta['wall_s']:.0f} s; {m['cores']} cores ({m['cpu_model']}),"
        f" {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}.",
        "",
        "Systems: "
        + "; ".join(f"**{n}** = {found[n]['title']}" for n in systems(results))
        + ". Ratio = ours ÷ peer.",
        "",
        md_table(*ratio_rows(results)),
        "",
        md_table(*main_rows(results)),
    ]
    return "\n".join(lines)


def write_json(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    paths = [out_dir / "latest.json", out_dir / f"{results['meta']['profile']}.json"]
    for p in paths:
        p.write_bytes(data + b"\n")
    return paths


# ---------------------------------------------------------------------- plots

COLORS = {"ours": "tab:blue", "relay": "tab:orange", "seed": "tab:green", "centrifugo": "tab:red"}


def plots(
    results: dict[str, Any], samples: dict[str, dict[str, np.ndarray]], out_dir: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = systems(results)
    found = results["systems"]

    # Latency CDF of the main runs: linear body on the left, the tail (1 - F, log) on the right.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in names:
        s = samples.get(f"{name}/main")
        if s is None or s["lat_us"].size == 0:
            continue
        lat = np.sort(s["lat_us"]) / 1000
        f = np.arange(1, lat.size + 1) / lat.size
        color = COLORS.get(name)
        ax1.plot(lat, f, label=found[name]["title"], color=color)
        ax2.plot(lat, 1 - f + 1 / lat.size, label=found[name]["title"], color=color)
    rate = results["config"].get("rate")
    ax1.set_xscale("log")
    ax1.set_xlabel("end-to-end latency (ms, log)")
    ax1.set_ylabel("fraction of deliveries")
    ax1.set_title(f"Latency CDF at {rate:.0f} msg/s" if rate else "Latency CDF")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
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

    # Sweep: p99 against offered rate, every system.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for name in names:
        steps = found[name].get("sweep", {}).get("steps", [])
        if not steps:
            continue
        drawn = True
        rates = [st["rate"] for st in steps]
        color = COLORS.get(name)
        ax.plot(rates, [st["latency_ms"]["p99"] for st in steps], "-o", color=color, label=name)
        ax.plot(rates, [st["latency_ms"]["p50"] for st in steps], "--", color=color, alpha=0.6)
    if drawn:
        ax.axhline(100, color="black", lw=0.8, label="100 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered messages/s (log)")
        ax.set_ylabel("latency p99 (—) and p50 (--), ms (log)")
        ax.set_title("Sweep: latency against offered rate")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out_dir / "sweep.png"
        fig.savefig(p, dpi=110)
        written.append(p)
    plt.close(fig)
    return written


# ---------------------------------------------------------------------- targets (ours)


def targets_summary(results: dict[str, Any]) -> list[str]:
    """One line per target of ours: met or not."""
    out = []
    found = results.get("systems", {}).get("ours", {})
    ours = found.get("main")
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
    sw = found.get("sweep")
    if sw:
        best = sw["max_rate_under_100ms_p99"]
        out.append(
            f"highest rate with p99 <= 100 ms: {best:.0f} msg/s (target >= 5,000):"
            f" {'met' if best >= 5000 else 'NOT met'}"
        )
    cap = found.get("capacity")
    if cap:
        # Two targets in one: the memory holds at any scale; the count needs 20,000 file
        # descriptors, which a machine's hard limit may not allow one process.
        memory_ok = cap["rss_per_connection_kib"] <= 20
        count_ok = cap["idle_connections"] >= 20000
        limit = cap.get("node_nofile_limit")
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
    rc = found.get("reconnect")
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


if __name__ == "__main__":
    import sys

    data = orjson.loads(
        Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results/latest.json").read_bytes()
    )
    print(markdown(data))
