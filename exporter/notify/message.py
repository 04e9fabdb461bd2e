"""Notification text: titles and Markdown bodies of whale alerts, follow-ups and digests.

Pure: values in, strings out. Explorer links come from a `link(txid)` function, normally
`Settings.explorer_tx_url`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.core.models import SATS_PER_BTC, Flow, Signal, Status
from exporter.notify.rules import Notice, NoticeKind

Link = Callable[[str], str]

EMOJI = {
    NoticeKind.NEW: "🐋",
    NoticeKind.CONFIRMED: "✅",
    NoticeKind.REPLACED: "🔁",
    NoticeKind.DROPPED: "🗑️",
    NoticeKind.EXPIRED: "⌛",
    NoticeKind.CORRECTED: "↩️",
}
LABEL = {
    NoticeKind.CONFIRMED: "Confirmed",
    NoticeKind.REPLACED: "Replaced",
    NoticeKind.DROPPED: "Dropped",
    NoticeKind.EXPIRED: "Expired",
    NoticeKind.CORRECTED: "Corrected",
}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#>|~])")


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


def btc(sats: int) -> str:
    """`123456789000` -> `1,234.5678` (at most two decimals shown: `1,234.57`)."""
    text = f"{sats / SATS_PER_BTC:,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd(value: float) -> str:
    return f"${value:,.0f}"


def escape(text: str) -> str:
    """Escape Markdown so an entity name shows as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def headline(signal: Signal, *, markdown: bool = False) -> str:
    """`1,234.5 BTC → Binance (inflow)`; outflow `Binance → 1,234.5 BTC (outflow)`."""
    amount = f"{btc(signal.value_sats)} BTC"
    entity = signal.entity and (escape(signal.entity) if markdown else signal.entity)
    flow = signal.flow
    if entity and flow is Flow.INFLOW:
        return f"{amount} → {entity} (inflow)"
    if entity and flow is Flow.OUTFLOW:
        return f"{entity} → {amount} (outflow)"
    if entity and flow is Flow.INTERNAL:
        return f"{amount} within {entity} (internal)"
    if flow is Flow.UNKNOWN:
        return amount
    return f"{amount} ({flow.value})"


def title(notice: Notice) -> str:
    """The notification title: `🐋 1,234.5 BTC → Binance (inflow)` for a new whale."""
    emoji = EMOJI[notice.kind]
    if notice.kind is NoticeKind.NEW and not notice.signal.seen_in_mempool:
        return f"{emoji} Confirmed without a mempool sighting: {headline(notice.signal)}"
    if notice.kind is NoticeKind.NEW:
        return f"{emoji} {headline(notice.signal)}"
    return f"{emoji} {LABEL[notice.kind]}: {headline(notice.signal)}"


def body(notice: Notice, link: Link) -> str:
    """The Markdown body: facts as a list, then the explorer link."""
    signal = notice.signal
    lines = [f"- {line}" for line in _status_lines(notice)]
    lines += [f"- {line}" for line in _facts(signal)]
    lines.append(f"- **Txid:** `{signal.txid}`")
    if signal.chain_id != signal.txid:
        lines.append(f"- **First seen as:** `{signal.chain_id}`")
    if signal.backfilled:
        lines.append("- Found by backfill (in the mempool before the stream saw it)")
    if not signal.seen_in_mempool:
        block = f"block {signal.block_height:,}" if signal.block_height is not None else "a block"
        lines.append(f"- Found by the block audit in {block}: never seen in the mempool")
    if signal.value_is_gross:
        lines.append("- Value counted gross: the instance sent no prevouts, change may be included")
    return "\n".join(lines) + f"\n\n[View transaction]({link(signal.txid)})"


def render(notice: Notice, link: Link) -> Message:
    return Message(title(notice), body(notice, link))


def line(notice: Notice, link: Link) -> str:
    """One digest line: `🐋 1,234.5 BTC → Binance (inflow) · high urgency · [tx](…)`."""
    signal = notice.signal
    label = "" if notice.kind is NoticeKind.NEW else f"{LABEL[notice.kind]}: "
    return (
        f"{EMOJI[notice.kind]} {label}{headline(signal, markdown=True)} · "
        f"{signal.urgency_level.value} urgency · [{signal.txid[:12]}…]({link(signal.txid)})"
    )


def digest(lines: Sequence[str], *, limit: int, window: float, count: int | None = None) -> Message:
    """One message for the alerts folded while a destination was over its rate limit.

    `count` is how many alerts were folded when more than the `lines` shown were.
    """
    count = len(lines) if count is None else count
    noun = "alert" if count == 1 else "alerts"
    minutes = window / 60
    span = "minute" if minutes == 1 else f"{window:g} s"
    head = (
        f"More than {limit} alerts in one {span}; {count} more {noun} were folded into this digest:"
    )
    return Message(f"🐋 Digest: {count} more whale {noun}", head + _list(lines, count))


def outage_digest(lines: Sequence[str], *, count: int) -> Message:
    """One message for the alerts held back while a destination could not be reached."""
    noun = "whale alert" if count == 1 else "whale alerts"
    head = (
        f"{count} {noun} could not be delivered while this destination was down; "
        "they are folded into this digest:"
    )
    return Message(f"🐋 {count} {noun} while the destination was down", head + _list(lines, count))


def digest_of_overflow(lines: Sequence[str], *, count: int) -> Message:
    """One message for the oldest alerts folded out of a destination's full queue."""
    noun = "whale alert" if count == 1 else "whale alerts"
    head = f"The queue of this destination was full; its {count} oldest {noun} were folded:"
    return Message(f"🐋 Digest: {count} older {noun}", head + _list(lines, count))


def _list(lines: Sequence[str], count: int) -> str:
    text = "\n\n" + "\n".join(f"- {entry}" for entry in lines)
    if count > len(lines):
        text += f"\n- … and {count - len(lines)} more"
    return text


def _status_lines(notice: Notice) -> list[str]:
    signal = notice.signal
    kind = notice.kind
    block = f"block {signal.block_height:,}" if signal.block_height is not None else "a block"
    if kind is NoticeKind.CONFIRMED:
        text = f"**Confirmed** in {block}"
        if signal.status is Status.REPLACED:
            text += " through a replacement transaction"
        waited = signal.confirmation_blocks
        if waited is not None:
            text += f" after {_blocks(waited)}"
            if signal.predicted_blocks is not None:
                text += f" (predicted {_blocks(signal.predicted_blocks)})"
        return [text]
    if kind is NoticeKind.REPLACED:
        if signal.replaced_out:
            return [
                "**Replaced** by a transaction below the whale threshold "
                f"(chain of {len(signal.chain)})"
            ]
        if signal.status is Status.REPLACED:
            return [f"**Replaced** by a conflicting transaction mined in {block}"]
        return [f"**Replaced (RBF)**: the chain now has {len(signal.chain)} transactions"]
    if kind is NoticeKind.DROPPED:
        return ["**Dropped** from the mempool without confirming"]
    if kind is NoticeKind.EXPIRED:
        return ["**Expired**: pending longer than the maximum"]
    if kind is NoticeKind.CORRECTED:
        state = signal.status.value
        where = f" in {block}" if signal.block_height is not None else ""
        return [f"**Corrected**: the outcome is now {state}{where}"]
    return []


def _facts(signal: Signal) -> list[str]:
    value = f"**Value:** {btc(signal.value_sats)} BTC"
    if signal.value_usd is not None:
        value += f" (≈ {usd(signal.value_usd)})"
    entity = escape(signal.entity) if signal.entity else None
    flow = signal.flow.value
    if entity and signal.flow is Flow.INFLOW:
        flow += f" to {entity}"
    elif entity and signal.flow is Flow.OUTFLOW:
        flow += f" from {entity}"
    elif entity:
        flow += f" ({entity})"
    fee = f"**Fee rate:** {signal.fee_rate:,.1f} sat/vB"
    if abs(signal.effective_fee_rate - signal.fee_rate) >= 0.05:
        fee += f" (effective {signal.effective_fee_rate:,.1f} sat/vB)"
    urgency = f"**Urgency:** {signal.urgency_level.value} (score {signal.urgency_score:.2f})"
    if signal.urgency_fallback:
        urgency += ", fee picture unknown"
    if signal.predicted_blocks is None:
        predicted = "**Predicted confirmation:** unknown"
    elif signal.predicted_blocks <= 1:
        predicted = "**Predicted confirmation:** next block"
    else:
        predicted = f"**Predicted confirmation:** within {signal.predicted_blocks} blocks"
    rbf = "**RBF (BIP125):** " + ("signalled" if signal.bip125 else "not signalled")
    return [value, f"**Flow:** {flow}", fee, urgency, predicted, rbf]


def _blocks(count: int) -> str:
    return "1 block" if count == 1 else f"{count} blocks"
