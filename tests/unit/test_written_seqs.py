"""The edge's per-session duplicate filter (``edge.session.WrittenSeqs``)."""

from __future__ import annotations

import random

from edge.session import DEDUP_WINDOW, WrittenSeqs


def test_a_repeated_seq_is_dropped_and_a_new_one_is_not() -> None:
    written = WrittenSeqs()
    assert [written.first_time("c", s) for s in (1, 2, 3)] == [True, True, True]
    assert written.first_time("c", 2) is False
    assert written.first_time("c", 3) is False
    assert written.first_time("c", 4) is True


def test_conversations_are_independent() -> None:
    written = WrittenSeqs()
    assert written.first_time("a", 1) is True
    assert written.first_time("b", 1) is True
    assert written.first_time("a", 1) is False


def test_a_gap_filled_later_is_written_once() -> None:
    # Live 5 before the sync's 3, 4, 5: 3 and 4 are new, 5 is the duplicate.
    written = WrittenSeqs()
    assert written.first_time("c", 5) is True
    assert [written.first_time("c", s) for s in (3, 4, 5)] == [True, True, False]
    assert [written.first_time("c", s) for s in (3, 4)] == [False, False]


def test_below_the_window_is_never_dropped() -> None:
    # Paging an old range after live messages: a possible duplicate, never a loss.
    written = WrittenSeqs()
    top = DEDUP_WINDOW + 10
    assert written.first_time("c", top) is True
    assert written.first_time("c", 1) is True
    assert written.first_time("c", 1) is True


def test_matches_a_set_within_the_window() -> None:
    rng = random.Random(7)
    written = WrittenSeqs()
    seen: set[int] = set()
    highest = 0
    for _ in range(5000):
        seq = max(1, highest + rng.randint(-DEDUP_WINDOW + 1, 3))
        expected = seq not in seen
        assert written.first_time("c", seq) is expected, seq
        seen.add(seq)
        highest = max(highest, seq)
