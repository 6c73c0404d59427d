"""Work-arounds for faust-streaming defects this project hits, applied once at import.

Keep each one small, explained, and removable when the upstream fix ships.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from faust.tables.recovery import Recovery
from faust.types import TP

_original_seek_offsets = Recovery._seek_offsets


async def _seek_offsets_clamped(
    self: Recovery, consumer: Any, tps: set[TP], offsets: Counter[TP], title: str
) -> None:
    """Faust computes recovery start offsets as ``earliest - 1`` and only maps -1 to 0; after a
    broker restart it can come up with None (no earliest offset known yet) or -2, and the whole
    worker crashes with "Offset must be a positive integer" (faust-streaming issue #176 has the
    same root). Reading a changelog from offset 0 is always correct, only slower."""
    clamped: Counter[TP] = Counter({tp: max(offsets[tp] or 0, 0) for tp in tps})
    await _original_seek_offsets(self, consumer, tps, clamped, title)


def apply() -> None:
    Recovery._seek_offsets = _seek_offsets_clamped  # type: ignore[method-assign]
