"""Applicant e-mails, composed from the event alone (no rule is re-run), in the applicant's language.

One structure per e-mail (subject, paragraphs, itemised lines) becomes both the plain-text and the
HTML part; every value put into HTML is escaped. Anything that could not be written as the
templates ask (a missing text or placeholder) is reported in `problems` by key, and the message
still goes out with the English or generic text: a missing translation never blocks an applicant.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from string import Template

from services.notify.i18n import TEMPLATES, Catalog, Formatter, locale_for
from shared.events import (
    ApplicationRejected,
    ClusterEvaluated,
    CriterionResult,
    EligibilityDecided,
    Event,
    Figure,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    Language,
    Recipient,
    ScheduledAmount,
)
from shared.money import Money

HTML_LAYOUT = Template((TEMPLATES / "email.html").read_text(encoding="utf-8"))
OUTCOME_MARK = {"passed": "✓", "failed": "✗", "not_decidable": "?"}


@dataclass(frozen=True)
class StoredDecision:
    """What notify keeps of an eligibility decision to explain it in a later grant e-mail."""

    criteria: list[CriterionResult]
    time_zone: str


@dataclass(frozen=True)
class Item:
    label: str
    text: str


@dataclass(frozen=True)
class Block:
    heading: str | None
    paragraphs: Sequence[str] = ()
    items: Sequence[Item] = ()


@dataclass(frozen=True)
class Email:
    template: str
    language: str
    locale: str
    subject: str
    text: str
    html: str
    problems: list[str] = field(default_factory=list)


def _figures(formatter: Formatter, figures: dict[str, Figure]) -> dict[str, str]:
    return {name: formatter.figure(name, figure) for name, figure in figures.items()}


def explain(formatter: Formatter, result: CriterionResult) -> Item:
    """One criterion in the applicant's words: its message key's text filled with its figures."""
    values = _figures(formatter, result.figures)
    text = formatter.section("messages", result.message_key, **values)
    if text is None:
        formatter.problems.append(f"criterion_fallback:{result.message_key}")
        text = formatter.common("criterion_fallback", criterion=result.criterion.replace("_", " "))
    return Item(f"{OUTCOME_MARK[result.outcome]} {formatter.common(f'outcome.{result.outcome}')}", text)


def _money(formatter: Formatter, amount: Money) -> str:
    return formatter.money(amount.amount_minor, amount.currency)


def _criteria_block(formatter: Formatter, criteria: Sequence[CriterionResult]) -> Block:
    return Block(formatter.common("criteria_heading"), items=[explain(formatter, c) for c in criteria])


def revision_template(event: EligibilityDecided) -> str:
    """The first decision's text, or (revision 2 and later) the text saying the decision was revised."""
    return f"eligibility.{event.outcome}" if event.revision == 1 else f"eligibility.revised.{event.outcome}"


def render_email(
    catalog: Catalog, event: Event, decision: StoredDecision | None = None, recipient: Recipient | None = None
) -> Email:
    """The e-mail `event` owes its applicant. `decision`: for grant outcomes, the eligibility decision
    notify stored earlier, whose criteria the e-mail then also explains (None: not known yet).
    `recipient`: for a GrantReleased (it carries none), the recipient of its grant's GrantCommitted."""
    if isinstance(event, GrantReleased) and recipient is None:
        raise ValueError("a release e-mail needs its grant's recipient")
    language, scheme, time_zone = _context(event, recipient)
    if decision is not None and not isinstance(event, EligibilityDecided):
        time_zone = decision.time_zone
    formatter = Formatter(catalog, language, locale_for(language, scheme), time_zone)
    values: dict[str, str] = {"application_id": getattr(event, "application_id", None) or ""}
    if scheme is not None:
        scheme_name, _ = catalog.resolve(language, "schemes", scheme)
        values["scheme"] = scheme_name or scheme
    blocks: list[Block] = []
    if isinstance(event, EligibilityDecided):
        template = revision_template(event)
        values["revision"] = str(event.revision)
        values["organisation"] = event.recipient.organisation_name
        values["name"] = event.recipient.contact.name
        blocks.append(_criteria_block(formatter, event.criteria))
    elif isinstance(event, ClusterEvaluated):
        template = "cluster.continues" if event.continues else "cluster.discontinued"
        values["organisation"] = event.recipient.organisation_name
        values["name"] = event.recipient.contact.name
        values["year"] = str(event.year)
        answer = {True: formatter.common("yes"), False: formatter.common("no")}
        items = [
            Item(formatter.common("evaluation.strategy"), answer[event.in_line_with_strategy]),
            Item(formatter.common("evaluation.requirements"), answer[event.meets_requirements]),
        ]
        blocks.append(Block(formatter.common("evaluation_heading", **values), items=items))
    elif isinstance(event, GrantCommitted):
        template = "grant.committed"
        values["organisation"] = event.recipient.organisation_name
        values["name"] = event.recipient.contact.name
        values["total"] = _money(formatter, event.grant.total)
        lines = _schedule_items(formatter, event.grant.schedule)
        paragraphs = [formatter.common("conditional")] if event.grant.conditional else []
        blocks.append(Block(formatter.common("schedule_heading", **values), paragraphs, lines))
        if decision is not None:
            blocks.append(_criteria_block(formatter, decision.criteria))
    elif isinstance(event, GrantReleased):
        assert recipient is not None  # refused above
        template = f"release.{event.reason}"
        values["organisation"] = recipient.organisation_name
        values["name"] = recipient.contact.name
        blocks += _release_blocks(formatter, event, values)
    elif isinstance(event, GrantRefused):
        template = "grant.refused"
        values["organisation"] = event.recipient.organisation_name
        values["name"] = event.recipient.contact.name
        reason = _refusal_figures(formatter, event)
        text = formatter.section("messages", event.message_key, **reason)
        if text is None:
            formatter.problems.append(f"reason_fallback:{event.message_key}")
            text = formatter.common("budget_fallback")
        blocks.append(Block(formatter.common("reason_heading"), [text]))
        if decision is not None:
            blocks.append(_criteria_block(formatter, decision.criteria))
    elif isinstance(event, ApplicationRejected):
        template = "application.rejected"
        values["name"] = event.contact.name if event.contact else ""
        values["reference"] = event.application_id or event.rejection_id
        items = []
        for error in event.errors:
            where = ".".join(str(part) for part in error.loc) or formatter.common("whole_submission")
            text = formatter.section("intake_errors", error.type)
            if text is None:
                text, _ = catalog.resolve(language, "intake_errors", "*")
            items.append(Item(where, text or error.type))
        blocks.append(Block(formatter.common("errors_heading"), items=items))
    else:
        raise ValueError(f"no e-mail for {type(event).__name__}")

    subject = formatter.section("templates", f"{template}.subject", **values) or template
    intro = formatter.section("templates", f"{template}.intro", **values) or ""
    greeting = formatter.common("greeting", **values) if values.get("name") else formatter.common("greeting_anonymous")
    closing = formatter.common("closing")
    blocks.insert(0, Block(None, [greeting, intro]))
    blocks.append(Block(None, [closing]))
    return Email(
        template=template,
        language=language,
        locale=formatter.locale,
        subject=subject,
        text=_text(blocks),
        html=_html(language, subject, blocks),
        problems=formatter.problems,
    )


def _release_blocks(formatter: Formatter, event: GrantReleased, values: dict[str, str]) -> list[Block]:
    """What returned to the budget per budget year (the funds it returns to are the agency's
    accounting: summed here), and the grant's amounts per budget year after the change. Fills in
    `values`' `released` (the total returned) and `years` (the budget years changed)."""
    per_year: dict[int, Money] = {}
    total: Money | None = None
    for line in event.released:  # one currency per grant: Money refuses to add two
        before = per_year.get(line.budget_year)
        per_year[line.budget_year] = line.amount if before is None else before + line.amount
        total = line.amount if total is None else total + line.amount
    years = sorted(per_year)
    values["years"] = ", ".join(str(year) for year in years)
    if total is not None:
        values["released"] = _money(formatter, total)
    items = [Item(str(year), _money(formatter, per_year[year])) for year in years]
    blocks = [Block(formatter.common("released_heading"), items=items)] if items else []
    if event.remaining:
        blocks.append(Block(formatter.common("remaining_heading"), items=_schedule_items(formatter, event.remaining)))
    return blocks


def _schedule_items(formatter: Formatter, schedule: Sequence[ScheduledAmount]) -> list[Item]:
    """A grant's amount per budget year, in year order."""
    return [Item(str(s.budget_year), _money(formatter, s.amount)) for s in sorted(schedule, key=lambda s: s.budget_year)]


def _refusal_figures(formatter: Formatter, event: GrantRefused) -> dict[str, str]:
    """The figures a refusal carries (only those present): amounts, or counts for counted limits."""
    figures: dict[str, str] = {}
    if event.budget_year is not None:
        figures["budget_year"] = str(event.budget_year)
    for name in ("available", "requested"):
        amount: Money | None = getattr(event, name)
        counted: int | None = getattr(event, f"{name}_count", None)
        if amount is not None:
            figures[name] = _money(formatter, amount)
        elif counted is not None:
            figures[name] = formatter.integer(counted)
    return figures


def _context(event: Event, recipient: Recipient | None = None) -> tuple[Language, str | None, str]:
    if isinstance(event, GrantReleased) and recipient is not None:
        return recipient.language, event.scheme, "UTC"
    if isinstance(event, EligibilityDecided):
        return event.recipient.language, event.scheme, event.time_zone
    if isinstance(event, GrantCommitted | GrantRefused | ClusterEvaluated):
        return event.recipient.language, event.scheme, "UTC"
    if isinstance(event, ApplicationRejected):
        return event.language or "en", None, "UTC"
    return "en", None, "UTC"


def _text(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if block.heading:
            out += [block.heading, ""]
        out += [p for p in block.paragraphs if p]
        out += [f"- {item.label}: {item.text}" for item in block.items]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _html(language: str, subject: str, blocks: Sequence[Block]) -> str:
    e = html.escape
    parts: list[str] = []
    for block in blocks:
        if block.heading:
            parts.append(f"<h2>{e(block.heading)}</h2>")
        parts += [f"<p>{e(p).replace(chr(10), '<br>')}</p>" for p in block.paragraphs if p]
        if block.items:
            rows = "".join(f"<li><strong>{e(i.label)}</strong>: {e(i.text)}</li>" for i in block.items)
            parts.append(f"<ul>{rows}</ul>")
    return HTML_LAYOUT.substitute(lang=e(language), subject=e(subject), body="\n".join(parts))
