"""Tables ``moderation_policy`` and ``moderated`` of the router: what the inline rules check,
and which messages of a conversation moderation has hidden.

``moderation_policy`` (key: :func:`chat.records.policy_keys`, one row per partition of
chat.commands): the deployment's rules and the users under a sanction. Every router partition
checks a message against it before giving it a seq, so every partition keeps its own copy,
written by broadcast commands (docs/moderation.md). Copies converge because a change carries
its time and the later one wins.

``moderated`` (key: conversation_id): the seqs hidden in a conversation, so that a decision
repeated (a replay, two detectors agreeing) is applied once and a restore knows what to undo.

Pure functions, no I/O, times from the input: a replay of chat.commands rebuilds both tables.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import TypedDict

from chat.records import PolicyRules, SanctionCommand

POLICY = "moderation_policy"
MODERATED = "moderated"

# Reason codes of a `blocked` error (docs/protocol.md).
BANNED = "banned"
MUTED = "muted"
BLOCKED_TERM = "blocked_term"
BLOCKED_DOMAIN = "blocked_domain"
NEW_ACCOUNT_LINKS = "new_account_links"

MAX_MUTE_S = 7 * 24 * 3600
# Seqs one `moderated` row remembers: beyond it the oldest are forgotten (a restore of one of
# those is then refused as unknown; the store still shows it hidden until a moderator acts).
MAX_MODERATED_PER_CONVERSATION = 1000

# A link is a word holding a dot: with a scheme or www. any domain counts; a bare domain
# (`cheap.example.com/deal`) only with a top-level label links are commonly written with.
# Words are split by str.split (C speed); the regex runs only on words with a dot.
LINK_WORD_RE = re.compile(
    r"(https?://)?(www\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)*\.([a-z]{2,24}))(?::[0-9]{1,5})?(?:[/?#].*)?"
)
COMMON_TLDS = frozenset(
    "com net org io co ru cn info xyz top biz app dev me ly gg link click site online shop "
    "uk de fr nl eu us ca au in br jp tv cc ai".split()
)
WORD_EDGES = "()<>[]{}\"'`,;!?*"


class Sanction(TypedDict):
    kind: str  # "mute", "ban", or "none" (strikes only)
    until: int  # ms; 0 with "ban" = no end
    strikes: int
    at: int  # when decided (ms): a later sanction replaces it


class PolicyRow(TypedDict):
    rules: PolicyRules
    sanctions: dict[str, Sanction]


class ModeratedRow(TypedDict):
    hidden: dict[str, str]  # str(seq) -> reason


def empty_rules() -> PolicyRules:
    return PolicyRules(terms=[], domains=[], new_account_s=0, version=0)


def empty_policy() -> PolicyRow:
    return PolicyRow(rules=empty_rules(), sanctions={})


# --------------------------------------------------------------------------- the inline check


@dataclass(frozen=True, slots=True)
class Blocked:
    reason: str  # one of the reason codes above
    detail: str  # what matched: the term, the domain, until when


def normalize(text: str) -> str:
    """Case- and accent-insensitive; compatibility forms (fullwidth, ligatures) folded."""
    if text.isascii():
        return text.lower()  # most messages: NFKD would change nothing
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@functools.lru_cache(maxsize=64)
def terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One compiled alternation per rule set (the rules change rarely; messages come often)."""
    if not terms:
        return None
    alternatives = sorted({normalize(t) for t in terms if t.strip()}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(t) for t in alternatives) + r")(?!\w)")


_patterns: dict[tuple[int, int, str, str], re.Pattern[str] | None] = {}


def _pattern_of(rules: PolicyRules) -> re.Pattern[str] | None:
    """The compiled terms of a rule set, found by its version: hashing a thousand terms for
    every message would cost more than the scan."""
    if not rules["terms"]:
        return None
    terms = rules["terms"]
    key = (rules["version"], len(terms), terms[0], terms[-1])
    if key not in _patterns:
        if len(_patterns) >= 64:
            _patterns.clear()
        _patterns[key] = terms_pattern(tuple(rules["terms"]))
    return _patterns[key]


def link_domains(body: str) -> list[str]:
    """The domains of the links in a message, lower-case, in order."""
    if "." not in body:
        return []  # no link can be written without a dot
    domains = []
    for word in body.split():
        if "." not in word:
            continue
        match = LINK_WORD_RE.fullmatch(word.strip(WORD_EDGES).lower())
        if match is None:
            continue
        scheme, www, domain, tld = match.groups()
        if scheme or www or tld in COMMON_TLDS:
            domains.append(domain)
    return domains


def domain_blocked(domain: str, blocked: list[str]) -> str | None:
    for rule in blocked:
        if domain == rule or domain.endswith("." + rule):
            return rule
    return None


def sanction_in_force(policy: PolicyRow, user: str, at: int) -> Blocked | None:
    sanction = policy["sanctions"].get(user)
    if sanction is None:
        return None
    if sanction["kind"] == "ban" and (sanction["until"] == 0 or sanction["until"] > at):
        return Blocked(BANNED, "banned" if sanction["until"] == 0 else f"until {sanction['until']}")
    if sanction["kind"] == "mute" and sanction["until"] > at:
        return Blocked(MUTED, f"until {sanction['until']}")
    return None


def check_message(
    policy: PolicyRow, sender: str, body: str, account_created: int | None, at: int
) -> Blocked | None:
    """Why a message may not be sent, or None. ``at`` and ``account_created`` in ms."""
    blocked = sanction_in_force(policy, sender, at)
    if blocked is not None:
        return blocked
    rules = policy["rules"]
    pattern = _pattern_of(rules)
    if pattern is not None:
        match = pattern.search(normalize(body))
        if match is not None:
            return Blocked(BLOCKED_TERM, match.group(1))
    if rules["domains"] or rules["new_account_s"]:
        domains = link_domains(body)
        for domain in domains:
            rule = domain_blocked(domain, rules["domains"])
            if rule is not None:
                return Blocked(BLOCKED_DOMAIN, rule)
        is_new = (
            account_created is not None
            and rules["new_account_s"] > 0
            and at - account_created < rules["new_account_s"] * 1000
        )
        if domains and is_new:
            return Blocked(NEW_ACCOUNT_LINKS, domains[0])
    return None


# --------------------------------------------------------------------------- policy changes


def set_rules(policy: PolicyRow, rules: PolicyRules) -> tuple[PolicyRow, bool]:
    if rules["version"] <= policy["rules"]["version"]:
        return policy, False  # an older or repeated change
    return PolicyRow(rules=rules, sanctions=policy["sanctions"]), True


def apply_sanction(
    policy: PolicyRow, command: SanctionCommand, max_sanctions: int
) -> tuple[PolicyRow, bool]:
    current = policy["sanctions"].get(command["user"])
    if current is not None and command["at"] < current["at"]:
        return policy, False  # a later sanction is already in force on this partition
    if current is not None and command["at"] == current["at"] and _same(current, command):
        return policy, False
    kind = "none" if command["kind"] == "unban" else command["kind"]
    until = 0 if kind == "none" else command["until"]
    sanctions = dict(policy["sanctions"])
    kept = current["strikes"] if current is not None else 0
    strikes = command["strikes"] if command["strikes"] >= 0 else kept
    sanctions[command["user"]] = Sanction(kind=kind, until=until, strikes=strikes, at=command["at"])
    if len(sanctions) > max_sanctions:
        sanctions = _evict(sanctions, max_sanctions, command["at"])
    return PolicyRow(rules=policy["rules"], sanctions=sanctions), True


def _same(current: Sanction, command: SanctionCommand) -> bool:
    kind = "none" if command["kind"] == "unban" else command["kind"]
    strikes = command["strikes"] if command["strikes"] >= 0 else current["strikes"]
    return (current["kind"], current["until"], current["strikes"]) == (
        kind,
        0 if kind == "none" else command["until"],
        strikes,
    )


def _evict(sanctions: dict[str, Sanction], keep: int, at: int) -> dict[str, Sanction]:
    """Keep bans and mutes in force first, then by strikes, then by recency."""

    def weight(item: tuple[str, Sanction]) -> tuple[int, int, int]:
        s = item[1]
        in_force = s["kind"] == "ban" or (s["kind"] == "mute" and s["until"] > at)
        return (1 if in_force else 0, s["strikes"], s["at"])

    return dict(sorted(sanctions.items(), key=weight, reverse=True)[:keep])


def escalation(policy: PolicyRow, user: str, at: int, mute_base_s: int) -> tuple[int, str, int]:
    """A strike against ``user`` at ``at``: (strikes after it, "mute" or "none", until ms).

    The first strike is a warning; the second mutes for ``mute_base_s``, each further one six
    times longer, up to a week. A ban in force stays (the strike is only counted)."""
    current = policy["sanctions"].get(user)
    strikes = (current["strikes"] if current else 0) + 1
    if current is not None and current["kind"] == "ban":
        return strikes, "ban", current["until"]
    muted_until = current["until"] if current and current["kind"] == "mute" else 0
    if strikes < 2:
        # A warning; a mute a moderator set stays as it was.
        return (strikes, "mute", muted_until) if muted_until > at else (strikes, "none", 0)
    seconds = min(mute_base_s * 6 ** (strikes - 2), MAX_MUTE_S)
    return strikes, "mute", max(at + seconds * 1000, muted_until)


# --------------------------------------------------------------------------- hidden messages


def empty_moderated() -> ModeratedRow:
    return ModeratedRow(hidden={})


def hide(row: ModeratedRow, seq: int, reason: str) -> tuple[ModeratedRow, bool]:
    key = str(seq)
    if key in row["hidden"]:
        return row, False
    hidden = dict(row["hidden"])
    hidden[key] = reason
    if len(hidden) > MAX_MODERATED_PER_CONVERSATION:
        for old in sorted(hidden, key=int)[: len(hidden) - MAX_MODERATED_PER_CONVERSATION]:
            del hidden[old]
    return ModeratedRow(hidden=hidden), True


def unhide(row: ModeratedRow, seq: int) -> tuple[ModeratedRow, bool]:
    key = str(seq)
    if key not in row["hidden"]:
        return row, False
    hidden = {k: v for k, v in row["hidden"].items() if k != key}
    return ModeratedRow(hidden=hidden), True
