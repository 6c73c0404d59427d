"""The patches of topologies/faust_fixes.py that keep Faust from committing input records no agent
processed, on Faust's own consumer (never started): what a commit would cover.

The situations come from rebalances, where they depend on timing; here they are set up
directly. tests/faults/test_table_handover.py moves partitions between two real workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust
import pytest
from faust.types import TP

from topologies import faust_fixes

INPUT = "fixes-test.users"  # an input topic that is not compacted
COMPACTED = "fixes-test.activity"


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    faust_fixes.apply()
    faust_fixes.no_gap_acks_on({INPUT})
    yield faust.App("fixes-test", broker="kafka://127.0.0.1:1", store="memory://")


def acked(consumer: object, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp].extend(offsets)  # type: ignore[attr-defined]
    consumer._acked_index[tp].update(offsets)  # type: ignore[attr-defined]


async def test_a_gap_in_an_input_topic_holds_the_commit(app: faust.App) -> None:
    """After a rebalance a fetch from the old position arrived after the seek: record 13 was
    never handed to a stream, 12 and 14 were processed. The commit must stop at 13."""
    consumer = app.consumer
    tp = TP(INPUT, 0)
    consumer._committed_offset[tp] = 12  # type: ignore[attr-defined]
    await consumer._add_gap(tp, 13, 14)  # type: ignore[attr-defined]
    acked(consumer, tp, [12, 14])
    assert consumer._new_offset(tp) == 13  # type: ignore[attr-defined]


async def test_a_gap_in_a_compacted_topic_is_still_skipped(app: faust.App) -> None:
    """What Faust's gaps are for: offsets compaction removed are not waited for."""
    consumer = app.consumer
    tp = TP(COMPACTED, 0)
    consumer._committed_offset[tp] = 12  # type: ignore[attr-defined]
    await consumer._add_gap(tp, 13, 14)  # type: ignore[attr-defined]
    acked(consumer, tp, [12, 14])
    assert consumer._new_offset(tp) == 15  # type: ignore[attr-defined]


async def test_the_record_at_the_committed_offset_is_not_skipped(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust lets the processed run start one record after the committed offset: record 13,
    fetched but never handed to a stream, was committed with 14 and 15 behind it."""
    consumer = app.consumer
    monkeypatch.setattr(consumer, "assignment", set)  # not started: nothing to seek
    tp = TP(INPUT, 1)
    consumer._committed_offset[tp] = 13  # type: ignore[attr-defined]
    acked(consumer, tp, [14, 15])
    assert consumer._new_offset(tp) is None  # type: ignore[attr-defined]
    acked(consumer, tp, [13])  # fetched again and processed
    assert consumer._new_offset(tp) == 16  # type: ignore[attr-defined]


async def test_a_rebalance_does_not_commit_past_a_record_either(app: faust.App) -> None:
    """A rebalance makes Faust forget the committed offset before it commits the batch in
    flight; the run must still start where the last commit ended."""
    consumer = app.consumer
    tp = TP(INPUT, 2)
    consumer._committed_offset[tp] = 13  # type: ignore[attr-defined]
    acked(consumer, tp, [13])
    assert consumer._new_offset(tp) == 14  # type: ignore[attr-defined]
    del consumer._committed_offset[tp]  # type: ignore[attr-defined]  # revoked
    acked(consumer, tp, [18, 19])  # the batch in flight; 14-17 were never processed
    assert consumer._new_offset(tp) is None  # type: ignore[attr-defined]
