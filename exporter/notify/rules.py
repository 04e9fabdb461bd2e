"""Routing rules for whale notifications: which Apprise tag hears about which event.

Pure: parse the rules file text, turn an event into a notice, and decide per tag. The notifier
does the I/O. The rules file maps an Apprise tag to a rule; `default` means URLs without a tag
and `"*"` any tag not listed:

    traders:
      min_btc: 500
      min_usd: 25000000
      flows: [inflow, outflow]
      min_urgency: medium
      follow_ups: [confirmed, replaced]
    default: {}

Without a rules file every destination hears about every new whale (no follow-ups), except
`oncall`, which is kept for Alertmanager pages unless a rules file lists it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import yaml

from exporter.core.models import Event, EventKind, Flow, Signal, Status, Urgency

UNTAGGED = "default"  # the destination name of URLs that carry no Apprise tag
ANY_TAG = "*"
RELAY_TAG = "oncall"
URGENCY_ORDER = {Urgency.LOW: 0, Urgency.MEDIUM: 1, Urgency.HIGH: 2}
E = TypeVar("E", bound=StrEnum)
RULE_KEYS = ("min_btc", "min_usd", "flows", "min_urgency", "follow_ups")


class NoticeKind(StrEnum):
    """What one notification says; also the `kind` stored with its dedup key."""

    NEW = "new"
    CONFIRMED = "confirmed"
    REPLACED = "replaced"
    DROPPED = "dropped"
    EXPIRED = "expired"
    CORRECTED = "corrected"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification an event calls for, before routing.

    `key` identifies it within its chain: a tag never receives two notices with the same
    `(kind, chain_id, key)`, across restarts too.
    """

    kind: NoticeKind
    signal: Signal
    key: str = ""

    @property
    def is_follow_up(self) -> bool:
        return self.kind is not NoticeKind.NEW


@dataclass(frozen=True, slots=True)
class Rule:
    """The filter of one tag. Every condition given must hold; `min_usd` is skipped while the
    USD value is unknown."""

    min_btc: float = 0.0
    min_usd: float | None = None
    flows: frozenset[Flow] = frozenset(Flow)
    min_urgency: Urgency = Urgency.LOW
    follow_ups: frozenset[NoticeKind] = frozenset()

    def accepts(self, signal: Signal) -> bool:
        """Whether a new whale passes this rule."""
        if signal.value_btc < self.min_btc:
            return False
        usd = signal.value_usd
        if self.min_usd is not None and usd is not None and usd < self.min_usd:
            return False
        if signal.flow not in self.flows:
            return False
        return URGENCY_ORDER[signal.urgency_level] >= URGENCY_ORDER[self.min_urgency]


@dataclass(frozen=True, slots=True)
class Rules:
    """Rules per tag; `fallback` applies to tags not listed (never to `oncall`)."""

    routes: Mapping[str, Rule] = field(default_factory=dict)
    fallback: Rule | None = None

    @classmethod
    def default(cls) -> Rules:
        """No rules file: every destination but `oncall` gets every new whale."""
        return cls({}, Rule())

    def rule(self, tag: str) -> Rule | None:
        """The rule of `tag`, or None when whale notifications never go there."""
        found = self.routes.get(tag)
        if found is not None or tag == RELAY_TAG:
            return found
        return self.fallback


class Verdict(StrEnum):
    SEND = "send"
    FILTER = "filter"  # the rule rejects it: counted as suppressed{reason="filter"}
    SKIP = "skip"  # nothing to say to this tag (not routed, or a follow-up of an unsent whale)


def notice_for(event: Event) -> Notice | None:
    """The notice an event calls for, or None when it calls for none."""
    signal = event.signal
    if event.kind is EventKind.DETECTED:
        return Notice(NoticeKind.NEW, signal)
    if event.kind is EventKind.REPLACED:
        # Replaced below the threshold: a RESOLVED(replaced) event follows at once and says it.
        if signal.replaced_out:
            return None
        return Notice(NoticeKind.REPLACED, signal, signal.txid)
    if event.kind is EventKind.RESOLVED:
        if signal.status is Status.CONFIRMED:
            return Notice(NoticeKind.CONFIRMED, signal)
        if signal.status is Status.REPLACED:
            if signal.block_height is not None and not signal.replaced_out:
                # The chain was mined through a replacement: the whale's coins did move.
                return Notice(NoticeKind.CONFIRMED, signal)
            return Notice(NoticeKind.REPLACED, signal, "final")
        if signal.status is Status.DROPPED:
            return Notice(NoticeKind.DROPPED, signal)
        if signal.status is Status.EXPIRED:
            return Notice(NoticeKind.EXPIRED, signal)
        return None
    if event.kind is EventKind.CORRECTED:
        return Notice(
            NoticeKind.CORRECTED, signal, f"{signal.status.value}@{signal.block_hash or ''}"
        )
    return None


def decide(rule: Rule | None, notice: Notice, *, new_was_sent: bool) -> Verdict:
    """Whether `notice` goes to a tag with `rule`.

    `new_was_sent`: the tag was told about this whale when it was new. Follow-ups only go to
    tags that heard about the whale in the first place.
    """
    if rule is None:
        return Verdict.SKIP
    if not notice.is_follow_up:
        return Verdict.SEND if rule.accepts(notice.signal) else Verdict.FILTER
    if not new_was_sent:
        return Verdict.SKIP
    return Verdict.SEND if notice.kind in rule.follow_ups else Verdict.FILTER


def dedup_key(tag: str, kind: NoticeKind, chain_id: str, key: str = "") -> str:
    """The persisted key of one notice at one tag."""
    return f"{tag}|{kind.value}|{chain_id}|{key}"


# --- the rules file ----------------------------------------------------------------------


def parse_rules(text: str, source: str = "rules") -> Rules:
    """Parse the YAML text of a rules file.

    Raises ValueError whose message holds one line per problem, each naming `source`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: must map Apprise tags to rules")
    problems: list[str] = []
    routes: dict[str, Rule] = {}
    fallback: Rule | None = None
    for raw_tag, raw_rule in data.items():
        tag = str(raw_tag).strip().lower()
        if not tag:
            problems.append(f"{source}: empty tag")
            continue
        rule = _parse_rule(raw_rule, f"{source}: {tag}", problems)
        if rule is None:
            continue
        if tag == ANY_TAG:
            fallback = rule
        else:
            routes[tag] = rule
    if problems:
        raise ValueError("\n".join(problems))
    return Rules(routes, fallback)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the parser found and where (its own text spans several lines)."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _parse_rule(raw: Any, where: str, problems: list[str]) -> Rule | None:
    if raw is None:
        return Rule()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping of {', '.join(RULE_KEYS)}")
        return None
    found = len(problems)
    for key in raw:
        if key not in RULE_KEYS:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(RULE_KEYS)})")
    min_btc = _number(raw.get("min_btc", 0.0), f"{where}: min_btc", problems)
    min_usd = raw.get("min_usd")
    if min_usd is not None:
        min_usd = _number(min_usd, f"{where}: min_usd", problems)
    flows = _choices(raw.get("flows"), Flow, f"{where}: flows", problems)
    if raw.get("flows") is not None and not flows and len(problems) == found:
        problems.append(f"{where}: flows: list at least one flow, or leave it out for all")
    follow_ups = _choices(raw.get("follow_ups", ()), NoticeKind, f"{where}: follow_ups", problems)
    if NoticeKind.NEW in follow_ups:
        problems.append(f"{where}: follow_ups: 'new' is not a follow-up")
    urgency = Urgency.LOW
    raw_urgency = raw.get("min_urgency")
    if raw_urgency is not None:
        try:
            urgency = Urgency(str(raw_urgency).lower())
        except ValueError:
            problems.append(f"{where}: min_urgency must be one of low, medium, high")
    if len(problems) > found:
        return None
    return Rule(
        min_btc=float(min_btc or 0.0),
        min_usd=None if min_usd is None else float(min_usd),
        flows=frozenset(flows) if raw.get("flows") is not None else frozenset(Flow),
        min_urgency=urgency,
        follow_ups=frozenset(follow_ups),
    )


def _number(value: Any, where: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        problems.append(f"{where}: must be a number >= 0")
        return None
    return float(value)


def _choices(value: Any, kind: type[E], where: str, problems: list[str]) -> list[E]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        problems.append(f"{where}: must be a list")
        return []
    chosen: list[E] = []
    for item in items:
        try:
            chosen.append(kind(str(item).lower()))
        except ValueError:
            names = ", ".join(member.value for member in kind)
            problems.append(f"{where}: unknown value {item!r} (known: {names})")
    return chosen
