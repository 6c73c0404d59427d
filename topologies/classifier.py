"""Classifier agent: ``chat.messages`` (key: conversation_id) → decisions on ``chat.commands``.

Offensive language, scored after delivery by a model that ships in a package
(``alt-profanity-check``: a linear SVM over word n-grams, calibrated, in its wheel; nothing is
downloaded at run time). It runs behind the pipeline, never in front of it: a message is
delivered first, and a verdict that follows hides it for everyone (docs/moderation.md#classifier).

    chat.messages ──▶ classifier ──▶ chat.commands   (moderation.decision: flag, or redact + strike)

No table: a decision is a pure function of the message and the model, and a repeat (a
replayed batch) is applied once by the router.

The package's own ``predict_prob`` costs 5 ms a call, almost all of it scikit-learn checking its
inputs five times over (the model is five calibrated linear SVMs); the arithmetic is a few
dot products. :class:`Model` reads the fitted numbers out of the package once and does that
arithmetic itself: ~10 us a message, the same probabilities (a unit test compares them).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from topologies import decisions
from topologies.batch import Batch, Event

SOURCE = "classifier"
MODEL_PACKAGE = "alt-profanity-check"


@dataclass(frozen=True)
class Model:
    """alt-profanity-check's model as numbers: TF-IDF over the words (l2-normalized), then
    five linear SVMs, each calibrated by a sigmoid; the probability is the mean of the five."""

    analyzer: Callable[[str], list[str]]  # the vectorizer's tokenizer (lowercase, stop words)
    # term -> (idf, the five SVMs' weights for it)
    terms: dict[str, tuple[float, tuple[float, ...]]]
    intercepts: tuple[float, ...]
    # Each SVM's calibration: p = 1 / (1 + exp(a * decision + b)).
    slopes: tuple[float, ...]
    offsets: tuple[float, ...]
    version: str

    def probability(self, text: str) -> float:
        counts = Counter(t for t in self.analyzer(text) if t in self.terms)
        dots = [0.0] * len(self.intercepts)
        norm = 0.0
        for term, count in counts.items():
            idf, weights = self.terms[term]
            value = count * idf
            norm += value * value
            for k, weight in enumerate(weights):
                dots[k] += value * weight
        scale = 1.0 / math.sqrt(norm) if norm else 0.0
        total = 0.0
        for dot, intercept, a, b in zip(
            dots, self.intercepts, self.slopes, self.offsets, strict=True
        ):
            total += _expit(-(a * (dot * scale + intercept) + b))
        return total / len(self.intercepts)

    def scores(self, texts: Sequence[str]) -> list[float]:
        return [self.probability(text) for text in texts]


def _expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@functools.cache
def model() -> Model:
    """The packaged model, read once per process on first use: importing it loads scikit-learn
    (~1.5 s), which only the workers that classify should pay."""
    from profanity_check import profanity_check as packaged

    vectorizer: Any = packaged.vectorizer
    calibrated: Any = packaged.model
    if (vectorizer.ngram_range, vectorizer.norm, vectorizer.sublinear_tf) != ((1, 1), "l2", False):
        raise RuntimeError(f"{MODEL_PACKAGE}: a vectorizer this reading does not know")
    if calibrated.method != "sigmoid":
        raise RuntimeError(f"{MODEL_PACKAGE}: a calibration this reading does not know")
    parts = calibrated.calibrated_classifiers_
    weights = [part.estimator.coef_[0] for part in parts]
    index = vectorizer.vocabulary_
    idf = vectorizer.idf_
    return Model(
        analyzer=vectorizer.build_analyzer(),
        terms={
            term: (float(idf[i]), tuple(float(w[i]) for w in weights)) for term, i in index.items()
        },
        intercepts=tuple(float(part.estimator.intercept_[0]) for part in parts),
        slopes=tuple(float(part.calibrators[0].a_) for part in parts),
        offsets=tuple(float(part.calibrators[0].b_) for part in parts),
        version=f"{MODEL_PACKAGE} {metadata.version(MODEL_PACKAGE)}",
    )


def classify(batch: Batch, events: list[Event]) -> None:
    messages = [event.value for event in events if decisions.judged(event.value)]
    if not messages:
        return
    judge = model()
    scores = judge.scores([m["body"] for m in messages])
    flag = batch.settings.moderation_flag_threshold
    redact = batch.settings.moderation_redact_threshold
    for message, score in zip(messages, scores, strict=True):
        if score < flag:
            continue
        evidence = {"score": round(score, 4), "threshold": flag, "model": judge.version}
        if score >= redact:
            decisions.send(batch, message, "redact", "offensive", SOURCE, evidence, strike=True)
        else:
            decisions.send(batch, message, "flag", "offensive", SOURCE, evidence, strike=False)
