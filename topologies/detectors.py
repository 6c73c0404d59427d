"""Detectors agent: ``chat.messages`` (key: conversation_id) → ``chat.commands`` (decisions) and
``chat.spam-signals`` (docs/moderation.md#classifier, #spam-detection).

The classifier and the first stage of spam detection judge the same records in the same order,
so they run as one agent: every agent on a topic has its own stream, batches and publishes, and
at a moderate load that per-batch cost, not the judging, is most of what a detector costs
(docs/performance.md#moderation). Each keeps its own module and can be tested alone.

    chat.messages ──▶ detectors ─┬─▶ chat.commands      (classifier: offensive; spam: link_only)
                                 └─▶ chat.spam-signals  (one event per signature ──▶ spam-campaigns)
"""

from __future__ import annotations

from topologies import classifier, spam
from topologies.batch import Batch, Event


def judge(batch: Batch, events: list[Event]) -> None:
    classifier.classify(batch, events)
    spam.signal_messages(batch, events)
