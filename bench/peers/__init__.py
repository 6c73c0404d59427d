"""The systems under test: ours and the peers, one module each (see base.py)."""

from __future__ import annotations

import importlib

from bench.peers.base import System

PEERS = ("relay", "seed", "centrifugo")


def load(name: str) -> System:
    """The ``SYSTEM`` of ``bench.peers.<name>`` (imported on demand: a peer's client may need a
    package the others do not)."""
    if name not in ("ours", *PEERS):
        raise ValueError(f"unknown system {name!r}; known: ours, {', '.join(PEERS)}")
    system: System = importlib.import_module(f"bench.peers.{name}").SYSTEM
    return system
