"""What the spam detector compares across conversations: signatures of a message's text and links.

A campaign sends the same or nearly the same text, or the same link, to many users. Each message
gets a few short strings that near-duplicates share:

- ``t<band>:<hash>``: MinHash LSH bands of the text (links removed, case, accents and
  punctuation folded). Two texts with character-5-gram Jaccard similarity s share a given band
  with probability s**ROWS, and at least one of the BANDS with 1 - (1 - s**ROWS)**BANDS: 0.99
  at s = 0.9, 0.88 at s = 0.8, 0.23 at s = 0.5 — a campaign that swaps a name per recipient
  still lands in the same buckets, ordinary messages rarely do;
- ``l:<url>``: each link, normalized (host without ``www.``, path, query without tracking
  parameters; no scheme or fragment), so that ``HTTPS://www.Spam.io/x?utm_source=a`` and
  ``spam.io/x`` are one link.

Texts shorter than ``min_chars`` after folding get no text signature: greetings and "ok" are
sent everywhere by everyone. Pure and deterministic (no ``hash()``, whose seed differs per
process): the same text gives the same signatures in every worker and in a replay.

Our own MinHash rather than datasketch's: a message needs 16 hash values, computed for the whole
batch in a few numpy expressions over its 5-byte windows (a few microseconds a message, see
docs/performance.md#moderation); datasketch hashes each shingle in Python and defaults to 128
permutations.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode

import numpy as np

BANDS = 4
ROWS = 4
SHINGLE = 5  # bytes: a shingle is its own 40-bit number, no hashing needed
_PAD = b"\0" * (SHINGLE - 1)  # keeps a text's windows from reaching the next text


def _coefficients(salt: bytes) -> np.ndarray:
    """BANDS * ROWS fixed odd 64-bit multipliers (or addends), derived from their index: the
    same in every process and every numpy version (a seeded generator promises neither)."""
    values = [
        int.from_bytes(hashlib.blake2b(salt + bytes([i]), digest_size=8).digest(), "big") | 1
        for i in range(BANDS * ROWS)
    ]
    return np.array(values, dtype=np.uint64).reshape(-1, 1)


# Multiply-shift hashing (a * x + b mod 2**64, high 32 bits): a universal family, and uint64
# arithmetic wraps exactly so in numpy.
_A = _coefficients(b"minhash-a")
_B = _coefficients(b"minhash-b")
_SHIFT = np.uint64(32)
_C = _coefficients(b"minhash-band")[:ROWS].reshape(1, ROWS, 1)

URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|io|co|ru|cn|info|xyz|top|biz|app|dev|me|ly|gg"
    r"|link|click|site|online|shop)\b(?:[/?][^\s<>\"']*)?",
    re.IGNORECASE,
)
_NOT_WORD = re.compile(r"[\W_]+")
# Query parameters that only say where a click came from: a campaign varies them per recipient.
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|ref|mc_\w+)$", re.IGNORECASE)


def analyse(body: str) -> tuple[str, list[str]]:
    """The folded text (links removed, case, accents and punctuation folded, whitespace
    collapsed) and the normalized links, in order, without repeats: one scan for both."""
    found: list[str] = []
    text = body
    if "." in body:
        pieces: list[str] = []
        last = 0
        for match in URL_RE.finditer(body):
            url = normalize_url(match.group(0))
            if url and url not in found:
                found.append(url)
            pieces.append(body[last : match.start()])
            last = match.end()
        if found:
            text = " ".join([*pieces, body[last:]])
    text = text.casefold()
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    return _NOT_WORD.sub(" ", text).strip(), found


def normalize_url(url: str) -> str:
    url = url.rstrip(".,;:!?)]}")
    url = re.sub(r"^https?://", "", url, flags=re.IGNORECASE)
    url = url.split("#", 1)[0]
    rest, _, query = url.partition("?")
    host, _, path = rest.partition("/")
    host = host.lower().split("@")[-1].split(":")[0].removeprefix("www.")
    if not host:
        return ""
    kept = sorted(
        (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _TRACKING.match(k)
    )
    out = host + ("/" + path.rstrip("/") if path.strip("/") else "")
    return out + ("?" + urlencode(kept) if kept else "")


def is_link_only(folded: str, found_links: list[str]) -> bool:
    """Links and nothing else worth reading (at most two short words): the analysed message."""
    return bool(found_links) and len(folded) <= 16 and len(folded.split()) <= 2


def text_signatures(folded: list[str], min_chars: int) -> list[list[str]]:
    """For each folded text, its LSH band signatures (none for a text below ``min_chars``).

    The batch's texts are joined, each padded with SHINGLE - 1 zero bytes (a text's windows
    are those starting in it, the last ones ending in its pad), and hashed in one pass; each
    text's minima come from one ``reduceat``."""
    out: list[list[str]] = [[] for _ in folded]
    present = [i for i, text in enumerate(folded) if len(text) >= min_chars]
    if not present:
        return out
    encoded = [folded[i].encode() + _PAD for i in present]
    data = np.frombuffer(b"".join(encoded) + _PAD, dtype=np.uint8).astype(np.uint64)
    windows = len(data) - SHINGLE + 1
    shingles = data[:windows].copy()
    for k in range(1, SHINGLE):
        shingles |= data[k : k + windows] << np.uint64(8 * k)
    hashed = (_A * shingles + _B) >> _SHIFT  # (BANDS * ROWS, windows)
    sizes = [len(e) for e in encoded]
    starts = np.cumsum([0, *sizes[:-1]])
    # Windows starting in a pad reach into the next text: they must never be a minimum.
    pads = (starts + np.array(sizes) - len(_PAD))[:, None] + np.arange(len(_PAD))
    hashed[:, pads.ravel()] = np.iinfo(np.uint64).max
    minima = np.minimum.reduceat(hashed, starts, axis=1).reshape(BANDS, ROWS, -1)
    # A band's key: its ROWS minima (32-bit each) combined by fixed odd multipliers, mod 2**64.
    keys = (minima * _C).sum(axis=1, dtype=np.uint64).tolist()  # (BANDS, texts)
    for column, index in enumerate(present):
        out[index] = [f"t{band}:{keys[band][column]:016x}" for band in range(BANDS)]
    return out
