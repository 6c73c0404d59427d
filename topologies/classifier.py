"""Classifier agent: ``chat.messages`` (key: conversation_id) → decisions on ``chat.commands``.

Offensive language, scored after delivery by a model that ships in a package
(``alt-profanity-check``: a linear SVM over word n-grams, calibrated, in its wheel; nothing is
downloaded at run time). It runs behind the pipeline, never in front of it: a message is
delivered first, and a verdict that follows hides it for everyone (docs/moderation.md#classifier).

    chat.messages ──▶ classifier ──▶ chat.commands   (moderation.decision: flag, or redact + strike)

No table: a decision is a pure function of the message and the model, and a repeat (a
replayed batch) is applied once by the router. The model scores the whole batch in one call:
one message alone costs ~5 ms, in a batch of 1,000 ~15 us each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from topologies import decisions
from topologies.batch import Batch, Event

SOURCE = "classifier"
MODEL_PACKAGE = "alt-profanity-check"

Scorer = Callable[[Sequence[str]], Any]  # texts -> an array of probabilities


@functools.cache
def model() -> tuple[Scorer, str]:
    """The packaged model and its version, loaded once per process on first use: importing it
    loads scikit-learn (~1.5 s), which only the workers that classify should pay."""
    from profanity_check import predict_prob

    return predict_prob, f"{MODEL_PACKAGE} {metadata.version(MODEL_PACKAGE)}"


def classify(batch: Batch, events: list[Event]) -> None:
    messages = [event.value for event in events if decisions.judged(event.value)]
    if not messages:
        return
    predict, version = model()
    scores: list[float] = predict([m["body"] for m in messages]).tolist()
    flag = batch.settings.moderation_flag_threshold
    redact = batch.settings.moderation_redact_threshold
    for message, score in zip(messages, scores, strict=True):
        if score < flag:
            continue
        evidence = {"score": round(score, 4), "threshold": flag, "model": version}
        if score >= redact:
            decisions.send(batch, message, "redact", "offensive", SOURCE, evidence, strike=True)
        else:
            decisions.send(batch, message, "flag", "offensive", SOURCE, evidence, strike=False)
