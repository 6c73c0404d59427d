"""The bench's ratio table and per-recipient bookkeeping, on made-up figures."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.tally import RecvState


def system(rate: float, cpu: float, p50: float, p99: float | None, kib: float) -> dict[str, Any]:
    step = {"rate": 25.0, "latency_ms": {"p50": p50, "p99": p99}, "cpu_ms_per_delivered": cpu}
    return {
        "title": "x",
        "main": {"cpu_ms_per_delivered": cpu},
        "sweep": {"steps": [step], "max_rate_under_100ms_p99": rate},
        "capacity": {"rss_per_connection_kib": kib},
    }


def test_ratios_are_ours_over_each_peer() -> None:
    results = {
        "systems": {
            "ours": system(100.0, 4.0, 20.0, 80.0, 16.0),
            "seed": system(200.0, 2.0, 10.0, 40.0, 32.0),
            "relay": system(0.0, 1.0, 2.0, None, 8.0),
        }
    }
    ratios = report.ratios(results)
    assert ratios["seed"] == {
        "max_rate": 0.5,
        "cpu_ms_per_delivered": 2.0,
        "light_cpu_ms_per_delivered": 2.0,
        "light_p50_ms": 2.0,
        "light_p99_ms": 2.0,
        "rss_per_connection_kib": 0.5,
    }
    # A peer's missing or zero figure gives no ratio rather than a division by zero.
    assert ratios["relay"]["max_rate"] is None
    assert ratios["relay"]["light_p99_ms"] is None
    assert ratios["relay"]["cpu_ms_per_delivered"] == 4.0
    header, rows = report.ratio_rows({**results, "ratios": ratios})
    assert header[1:4] == ["ours", "relay", "seed"]
    assert rows[0][1:4] == ["100.0", "none passed", "200.0"]


def test_recipient_state_counts_gaps_reorders_and_duplicates() -> None:
    st = RecvState()
    assert st.see(1) == "new"
    assert st.see(3) == "new"  # 2 is a gap
    assert st.contiguous() == 1
    assert st.see(2) == "reordered"
    assert st.see(2) == "dup"
    st.mark_own(4)  # the recipient's own message: never delivered to it, not a gap
    assert st.see(5) == "new"
    assert st.contiguous() == 5
