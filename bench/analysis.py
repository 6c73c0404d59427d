"""Merging what the generators measured: percentiles, throughput and the delivery check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def summary_ms(us: np.ndarray, missing: int = 0) -> dict[str, float | None]:
    """p50/p95/p99/p99.9/max/mean in milliseconds of samples in microseconds.

    ``missing`` samples never arrived (still outstanding when the run's drain ended): they count
    as slower than everything, so a percentile that falls among them is ``None`` ("not within
    the run") rather than a flattering figure computed over the survivors only."""
    n = int(us.size) + max(0, missing)
    if n == 0:
        return {k: None for k in (*PERCENTILES, "max", "mean")}
    ordered = np.sort(us)
    out: dict[str, float | None] = {}
    for k, q in PERCENTILES.items():
        rank = max(0, math.ceil(q / 100 * n) - 1)
        out[k] = round(float(ordered[rank]) / 1000, 2) if rank < ordered.size else None
    out["max"] = round(float(ordered[-1]) / 1000, 2) if ordered.size and not missing else None
    out["mean"] = round(float(ordered.mean()) / 1000, 2) if ordered.size else None
    return out


def load_samples(collected: list[dict[str, Any]], tag: str, name: str) -> np.ndarray:
    parts = [np.load(c["files"][tag][name]) for c in collected if tag in c["files"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def merged_counts(collected: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    keys = (
        "sent",
        "acked",
        "errors",
        "expected",
        "received",
        "duplicated",
        "reordered",
        "unsequenced",
    )
    total: dict[str, Any] = dict.fromkeys(keys, 0)
    total["error_codes"] = {}
    firsts, lasts = [], []
    for c in collected:
        t = c["tallies"].get(tag)
        if t is None:
            continue
        for k in keys:
            total[k] += t.get(k, 0)
        for code, n in t["error_codes"].items():
            total["error_codes"][code] = total["error_codes"].get(code, 0) + n
        if t["first_send_ns"]:
            firsts.append(t["first_send_ns"])
            lasts.append(t["last_send_ns"])
    total["send_span_s"] = (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0
    return total


def check_delivery(
    collected: list[dict[str, Any]],
    members: dict[str, list[str]],
    tags: set[str] | None = None,
) -> dict[str, Any]:
    """Every acknowledged (conversation, seq) must have reached every other member exactly
    once: returns ``lost`` (acked, never received by some member) and ``checked`` deliveries.
    ``tags`` restricts the check to the messages acked in those runs (all when None)."""
    states: dict[tuple[str, str], tuple[int, set[int]]] = {}
    acks: dict[str, dict[int, tuple[str, str]]] = {}
    for c in collected:
        data = orjson.loads(open(c["state"], "rb").read())
        for key, (max_seq, gaps, _dup, _reord) in data["states"].items():
            user, conv = key.split("\t", 1)
            states[(user, conv)] = (max_seq, set(gaps))
        for conv, items in data["acks"].items():
            a = acks.setdefault(conv, {})
            for seq, user, tag in items:
                a[seq] = (user, tag)
    lost = 0
    checked = 0
    examples: list[str] = []
    for conv, items in acks.items():
        conv_members = members.get(conv)
        if conv_members is None:
            continue
        for seq, (sender, tag) in items.items():
            if tags is not None and tag not in tags:
                continue
            for m in conv_members:
                if m == sender:
                    continue
                checked += 1
                st = states.get((m, conv))
                if st is None or seq > st[0] or seq in st[1]:
                    lost += 1
                    if len(examples) < 5:
                        seen = "nothing" if st is None else f"up to seq {st[0]}"
                        examples.append(f"{m} missed {conv} seq {seq} (from {sender}; saw {seen})")
    return {"lost": lost, "checked": checked, "examples": examples}
