"""The event contracts: versioned, frozen pydantic models, one per fact the services exchange.

Each event class states its CloudEvents `type`, its topic and its Kafka key. The body on the wire
is the model's JSON; the CloudEvents attributes travel as Kafka headers (binary content mode, see
`shared.cloudevents`). A breaking change to a model is a new class with `version = 2` and a new
topic (`...v2`); additive optional fields keep the version.

Keys: every application-scoped event is keyed by `application_id`, so all events of one
application land on one partition, in order (received -> decided -> committed -> notified).
`CeilingReset` is keyed by programme, so the resets of one programme stay in order.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from shared.money import Currency, Money
from shared.topics import Topic

SchemeId = Literal[
    "vlaio.spearhead-cluster",
    "vlaio.business-network",
    "vlaio.spearhead-project",
    "vlaio.cluster-pact",
    "ttc.innovation-voucher",
    "ttc.innovation-fund",
    "s3.platform",
    "s3.financing",
    "nic.cluster",
]
"""Schemes the backend runs (see ../shared/SCHEMES.md); one folder each under services/eligibility."""

Language = Literal["nl", "sv", "nb", "en", "de", "fr"]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
ApplicationId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=EMAIL.pattern)]

OrgId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z][A-Z_]*-[A-Za-z0-9-]{1,64}$")]
"""An organisation's identity: its org-id.guide list code and its number in that register, compact,
e.g. 'BE-BCE_KBO-0521749439', 'NL-KVK-41202535', 'DE-CR-RA000197-HRB12345', 'SE-ON-5560912148',
'NO-BRC-972417920' (see services/eligibility/registers)."""

MemberRole = Literal["enterprise", "sme", "large_enterprise", "knowledge_institution", "public_actor", "other"]


class Contract(BaseModel):
    """Base of every model in a contract: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Contract):
    """Base of every event; subclasses set the class variables."""

    type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[Topic]
    key_field: ClassVar[str] = "application_id"

    def key(self) -> str:
        """The Kafka key: what the event must stay ordered with (the `key_field`)."""
        return str(getattr(self, self.key_field))

    def subject(self) -> str:
        """The CloudEvents `subject`: what the event is about."""
        return self.key()

    @classmethod
    def cloudevents_type(cls) -> str:
        return f"{cls.type}.v{cls.version}"


class ApplicationScoped(Event):
    application_id: ApplicationId = Field(description="The portal's identifier of the application; idempotency key.")


# --- the application, as an agency portal sends it -------------------------------------------


class Contact(Contract):
    """The applicant's contact person. Personal data: it never appears in logs."""

    name: Text
    email: Email


class Applicant(Contract):
    organisation_name: Text = Field(examples=["Flanders Make vzw"])
    organisation_number: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Company or association register number."
    )
    country: CountryCode = Field(examples=["BE"])
    region: Text | None = Field(default=None, examples=["Vlaanderen"])
    is_cluster_organisation: bool = Field(description="The applicant leads and coordinates a cluster.")
    legal_person: bool = Field(description="The applicant is itself a legal person.")
    represented_by_legal_person: bool = Field(
        default=False, description="The applicant is represented by a legal person (S3 accepts either)."
    )
    is_sme: bool | None = Field(default=None, description="Small or medium-sized enterprise (TTC instruments).")
    mandated_by_members: bool | None = Field(
        default=None, description="The member enterprises mandated this cluster organisation (VLAIO)."
    )


class Member(Contract):
    name: Text
    role: MemberRole
    country: CountryCode
    region: Text | None = None
    leads_cluster: bool = Field(default=False, description="Sits in the driver's seat of the cluster (Norway).")


class RegionRecommendation(Contract):
    region: Text
    strategy_reference: Text = Field(description="Reference to the regional smart-specialisation strategy.")
    status: Literal["prioritised", "becoming_prioritised"]


class Document(Contract):
    kind: Literal["application", "region_recommendation", "strategy", "budget", "annex"]
    pages: int = Field(strict=True, ge=1, le=10_000)


class BudgetYear(Contract):
    year: int = Field(strict=True, ge=2000, le=2100, description="Budget (calendar) year.")
    eligible_costs: Money = Field(description="Eligible costs of that year (e.g. cluster coordination).")
    requested: Money = Field(description="Grant requested for that year.")


class CoFinancing(Contract):
    source: Text = Field(examples=["own funds", "region"])
    amount: Money
    secured: bool = True


class FundingRequest(Contract):
    currency: Currency
    years: list[BudgetYear] = Field(min_length=1, max_length=20)
    co_financing: list[CoFinancing] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_currency_and_distinct_years(self) -> FundingRequest:
        amounts = [m for y in self.years for m in (y.eligible_costs, y.requested)]
        amounts += [c.amount for c in self.co_financing]
        if any(m.currency != self.currency for m in amounts):
            raise ValueError(f"every amount must be in the request's currency {self.currency}")
        years = [y.year for y in self.years]
        if len(set(years)) != len(years):
            raise ValueError("each budget year may appear only once")
        return self


class Application(Contract):
    """An application as an agency portal submits it."""

    application_id: ApplicationId = Field(description="The portal's identifier; idempotency key.", examples=["VLAIO-2020-0042"])
    scheme: SchemeId = Field(description="The scheme applied to.")
    level: Literal["arena", "arena-pro", "gce", "nce"] | None = Field(
        default=None, description="Norwegian Innovation Clusters: the level applied for."
    )
    project_type: Literal["o-and-o", "coock", "csbo", "icon", "cooperative", "other"] | None = Field(
        default=None, description="VLAIO spearhead innovation projects: the project type."
    )
    via_cluster: Text | None = Field(
        default=None, description="Spearhead innovation projects: the spearhead cluster the project is submitted through."
    )
    call_id: Text | None = Field(default=None, description="The call or competitive round applied to.")
    title: Text | None = Field(
        default=None, description="Short title of the project, published in open data (360Giving, EU list)."
    )
    summary: Text | None = Field(default=None, description="Purpose of the project in a few sentences, published in open data.")
    submitted_at: AwareDatetime = Field(description="When the applicant submitted; the rules' reference time.")
    language: Language = Field(default="en", description="The applicant's language for every message.")
    applicant: Applicant
    contact: Contact
    members: list[Member] = Field(default_factory=list, max_length=5_000)
    region_recommendation: RegionRecommendation | None = None
    prior_funding: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")]] = Field(
        default_factory=list, description="Programme codes already funding the applicant, e.g. 'vinnvaxt'.", max_length=20
    )
    sectors: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")]] = Field(default_factory=list, max_length=20)
    documents: list[Document] = Field(default_factory=list, max_length=100)
    funding: FundingRequest | None = Field(default=None, description="Absent where no money is asked (S3 platform).")
    selected_for: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")]] | None = Field(
        default=None,
        description="Competitive selections the applicant already won, e.g. 's3-platform' (S3 step 2 is open only "
        "to organisations selected in step 1). Absent when the portal does not know.",
        max_length=20,
    )
    cluster_support_decided_on: date | None = Field(
        default=None,
        description="VLAIO cluster pact: the day support was granted to the spearhead cluster; the pact is "
        "negotiated in the first year after it.",
    )


class ApplicationSubmitted(Application, Event):
    """What an agency portal publishes (or POSTs) to submit an application."""

    type = "org.clustergrants.application.submitted"
    topic = Topic.APPLICATION_SUBMITTED


# --- intake ----------------------------------------------------------------------------------


class FieldError(Contract):
    loc: list[str | int] = Field(description="Path to the offending field; [] for the whole message.")
    type: str = Field(description="Stable machine-readable error type, e.g. 'missing', 'money_negative'.")
    message: str


class ApplicationReceived(ApplicationScoped):
    type = "org.clustergrants.application.received"
    topic = Topic.APPLICATION_RECEIVED

    received_at: AwareDatetime
    channel: Literal["http", "kafka"]
    application: Application


class ApplicationRejected(Event):
    """Input that could not become an application, with every error found.

    A rejection is about the input that was refused, never about an application that was received:
    a resubmission whose id is already taken by a different application is rejected with
    `reason="conflict"`, its own `rejection_id` (also its key), that id in `conflicts_with`, and
    neither `application_id` nor `contact` (so it is never told as the received one's fate, nor
    e-mailed to an address the conflicting body names).
    """

    type = "org.clustergrants.application.rejected"
    topic = Topic.APPLICATION_REJECTED

    rejection_id: str = Field(description="Unique id of this rejection.")
    application_id: str | None = Field(default=None, description="The application id, when it could be read.")
    rejected_at: AwareDatetime
    channel: Literal["http", "kafka"]
    source_reference: str | None = Field(default=None, description="topic:partition:offset of the input, for Kafka.")
    reason: Literal["invalid", "conflict"]
    errors: list[FieldError] = Field(min_length=1)
    language: Language | None = Field(default=None, description="The applicant's language, when it could be read.")
    contact: Contact | None = Field(default=None, description="The contact, when it could be read (for notify).")
    conflicts_with: str | None = Field(
        default=None,
        description="reason 'conflict': the id of the application already received, which this input tried to "
        "replace with different content (that application is unaffected).",
    )

    def key(self) -> str:
        return self.application_id or self.rejection_id


# --- eligibility -----------------------------------------------------------------------------


class Figure(Contract):
    """A figure a criterion used, typed so that notify can format it per locale."""

    unit: Literal["money", "percent", "count", "pages", "years", "date", "datetime", "text", "bool"]
    value: str | int | bool = Field(description="money: minor units (int); percent: exact decimal string; date: ISO.")
    currency: Currency | None = None


class CriterionResult(Contract):
    criterion: str = Field(description="Stable criterion id, e.g. 'coordination_share'.")
    outcome: Literal["passed", "failed", "not_decidable"]
    message_key: str = Field(description="Stable key of the explanation text, e.g. 'vlaio.ceiling.exceeded'.")
    figures: dict[str, Figure] = Field(default_factory=dict)
    decided_by: str = Field(
        default="rules",
        description="Who decided this criterion: 'rules' (the scheme's rules as code) or 'officer:<opaque id>' "
        "(a case handler's recorded finding; never a name).",
        pattern=r"^(rules|officer:[A-Za-z0-9._:-]{1,64})$",
    )


class ScheduledAmount(Contract):
    budget_year: int
    amount: Money = Field(description="What is granted for that year (the budget reserves this).")
    requested: Money | None = Field(default=None, description="What the application asked for that year.")
    limited_by: str | None = Field(
        default=None,
        description="The limit that cut the request to `amount`, e.g. 'yearly_ceiling', 'coordination_share', "
        "'max_years' (a scheme parameter) or an operator key; none when granted as asked.",
        examples=["yearly_ceiling"],
    )


class FundShare(Contract):
    fund: str = Field(description="Fund source, e.g. 'erdf', 'co-financing', 'hermes', 'agency'.")
    numerator: int = Field(ge=0)
    denominator: int = Field(ge=1)


class ProposedGrant(Contract):
    programme: str = Field(description="The budget programme whose pots the grant draws on.")
    instrument: str = Field(description="E.g. 'coordination-subsidy', 'voucher', 'innovation-fund-grant'.")
    currency: Currency
    schedule: list[ScheduledAmount] = Field(min_length=1)
    fund_shares: list[FundShare] = Field(min_length=1, description="How each amount splits over fund sources.")
    conditional: bool = Field(
        default=False,
        description="A conditional commitment (VLAIO cluster pact Hermes earmark): each year's amount is reserved "
        "subject to that year's conditions and yearly maximum.",
    )
    not_granted: list[ScheduledAmount] = Field(
        default_factory=list,
        description="Budget years asked for but granted nothing, beyond a limit of years the scheme grants "
        "(amount zero, what was asked, the limit): shown to the applicant, never reserved by the budget.",
    )
    beneficiary_id: OrgId | None = Field(
        default=None,
        description="Who receives the grant: the applicant's register identity (org-id.guide list code + "
        "number), the key the budget keeps a beneficiary's ceilings under. Set on every grant of a scheme "
        "that pays money (such an application without a valid register number is referred, never granted).",
        examples=["BE-BCE_KBO-0521749439"],
    )

    @property
    def total(self) -> Money:
        total = Money.zero(self.currency)
        for slice_ in self.schedule:
            total = total + slice_.amount
        return total


class Recipient(Contract):
    """Who to tell about the outcome (personal data: never logged)."""

    language: Language
    contact: Contact
    organisation_name: str


class EligibilityDecided(ApplicationScoped):
    type = "org.clustergrants.eligibility.decided"
    topic = Topic.ELIGIBILITY_DECIDED

    scheme: SchemeId
    decided_at: AwareDatetime
    reference_date: date = Field(description="The application's submission day in the scheme's time zone.")
    time_zone: str = Field(examples=["Europe/Brussels"])
    outcome: Literal["eligible", "ineligible", "needs_review"]
    parameter_version: str = Field(description="The dated parameter set the rules used.")
    criteria: list[CriterionResult] = Field(min_length=1)
    proposed_grant: ProposedGrant | None = None
    recipient: Recipient
    beneficiary_id: OrgId | None = Field(
        default=None,
        description="The applicant's register identity (org-id.guide list code + number, e.g. "
        "'BE-BCE_KBO-0521749439'), read from its country and organisation_number; None when the number is "
        "missing or invalid (an application of a scheme that pays money is then referred to a case handler).",
        examples=["BE-BCE_KBO-0521749439"],
    )
    revision: int = Field(
        default=1,
        ge=1,
        description="1 for the first decision of an application; each later decision (a case handler's "
        "finding, a correction, an appeal, a re-decision under new parameters) is the next revision. "
        "Consumers apply a revision only if it is newer than the one they applied.",
    )
    supersedes: str | None = Field(
        default=None, description="The CloudEvents id of the revision this one replaces (None for revision 1)."
    )
    decided_by: str = Field(
        default="rules",
        description="'rules', or 'officer:<opaque id>' when a case handler's finding made this revision.",
        pattern=r"^(rules|officer:[A-Za-z0-9._:-]{1,64})$",
    )


# --- budget ----------------------------------------------------------------------------------


class GrantCommitted(ApplicationScoped):
    type = "org.clustergrants.grant.committed"
    topic = Topic.GRANT_COMMITTED

    grant_id: str
    committed_at: AwareDatetime
    scheme: SchemeId
    grant: ProposedGrant
    recipient: Recipient


class GrantRefused(ApplicationScoped):
    type = "org.clustergrants.grant.refused"
    topic = Topic.GRANT_REFUSED

    refused_at: AwareDatetime
    scheme: SchemeId
    limit: str = Field(description="The limit that refused, e.g. 'pot:ttc/erdf', 'count:ttc/vouchers'.")
    message_key: str
    budget_year: int | None = None
    available: Money | None = None
    requested: Money | None = None
    recipient: Recipient
    available_count: int | None = Field(default=None, description="Counted limits: how many were left.")
    requested_count: int | None = Field(default=None, description="Counted limits: how many were asked.")


class CeilingReset(Event):
    """A new budget year opens for a programme."""

    type = "org.clustergrants.budget.ceiling-reset"
    topic = Topic.CEILING_RESET

    reset_id: str = Field(description="'<programme>/<year>': one reset per programme and year.")
    programme: str
    budget_year: int
    opened_at: AwareDatetime
    yearly_maximum: Money | None = Field(default=None, description="A yearly maximum the agency set for this year.")

    key_field = "programme"


class ReleasedAmount(Contract):
    budget_year: int
    fund: str = Field(description="The fund source the amount returns to, e.g. 'erdf'.")
    amount: Money


class GrantReleased(ApplicationScoped):
    """Future (not yet opened) slices of a committed grant returned to their pots."""

    type = "org.clustergrants.grant.released"
    topic = Topic.GRANT_RELEASED

    grant_id: str
    released_at: AwareDatetime
    scheme: SchemeId
    programme: str
    reason: Literal["withdrawn", "reduced", "revoked", "not_continued", "capped"] = Field(
        description="withdrawn or reduced (an operator's release), revoked (the eligible decision was revised to "
        "ineligible before the grant was paid out: every slice not yet paid returns), not_continued (the annual "
        "evaluation found the cluster does not continue: the slices of later budget years return), capped (the "
        "opening of a budget year capped a conditional grant's amount for that year at the yearly maximum the "
        "agency set: the excess returns)."
    )
    released: list[ReleasedAmount] = Field(description="What returned, per budget year and fund.")
    remaining: list[ScheduledAmount] = Field(description="The grant's schedule after the release.")


# --- competitive calls ---------------------------------------------------------------------------


CriterionName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Score = Annotated[int, Field(strict=True, ge=0, le=1000)]


class AssessmentSubmitted(ApplicationScoped):
    """One assessor's scores for one application in a competitive call (S3 step 1, Norway)."""

    type = "org.clustergrants.assessment.submitted"
    topic = Topic.ASSESSMENT_SUBMITTED

    assessment_id: ApplicationId = Field(description="Unique per assessor and application; idempotency key.")
    call_id: Text
    assessor_id: ApplicationId = Field(description="Opaque assessor reference (never a name).")
    scores: dict[CriterionName, Score] = Field(min_length=1, description="Criterion -> whole-number score.")
    submitted_at: AwareDatetime


class RankedApplication(Contract):
    application_id: str
    rank: int = Field(ge=1)
    total_score: str = Field(description="Exact total (sum of criterion means), as a fraction or integer string.")
    selected: bool


class CallClosed(Event):
    """A competitive call was closed: eligible applications ranked, at most the cap selected."""

    type = "org.clustergrants.call.closed"
    topic = Topic.CALL_CLOSED
    key_field = "call_id"

    call_id: str
    scheme: SchemeId
    closed_at: AwareDatetime
    cap: int = Field(ge=0)
    criteria: list[str]
    tie_rule: str = Field(description="How equal totals are ordered.")
    ranking: list[RankedApplication]
    unscored: list[str] = Field(default_factory=list, description="Eligible applications left out: a criterion had no score.")


# --- case handling: officers' findings, yearly calls, annual evaluations ----------------------

OperatorId = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")]

OfficerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
"""A case handler's opaque reference (a staff number, a directory id; never a name). A decision made by
a person says `decided_by: "officer:<OfficerId>"`."""


class FindingRecorded(ApplicationScoped):
    """A case handler's finding on one criterion of an application (a referral, a correction, an appeal).

    Eligibility applies it to the application's latest decision and publishes the next revision of
    `EligibilityDecided`; the other criteria keep their origin (`rules` or an earlier officer). A later
    finding on the same criterion replaces the earlier one in the next revision; both stay in the history.
    """

    type = "org.clustergrants.case.finding-recorded"
    topic = Topic.FINDING_RECORDED

    finding_id: ApplicationId = Field(description="Unique id of this finding; idempotency key.")
    criterion: CriterionName = Field(
        description="The criterion found on, e.g. 'budget_ceiling' or 's3_step1_selection' (an outside selection).",
        examples=["deadline"],
    )
    outcome: Literal["passed", "failed"]
    reason: Text = Field(description="Why, in the case handler's words (shown to the applicant's case file, not logged).")
    document_reference: Text = Field(
        description="The file or document seen, e.g. a document-management reference.", examples=["DMS-2026-00421"]
    )
    officer: OfficerId = Field(description="The case handler's opaque reference (never a name).", examples=["k-1042"])
    recorded_at: AwareDatetime
    based_on_revision: int | None = Field(
        default=None,
        ge=1,
        description="The decision revision the case handler looked at; intake refuses a finding on a revision "
        "that is no longer the latest (409), so two case handlers do not overwrite each other unseen.",
    )


class CallOpened(Event):
    """A call opened for applications, with the deadline and announcement date the operator set for it.

    Norwegian Innovation Clusters: one call per level and year; the programme's page gives only
    "Søknadsfrist er midten av september hvert år, og nye klynger annonseres én måned senere."
    (../shared/seeds/004_353bc3df9124071f.txt), so both dates are operator-set per year, never derived.
    """

    type = "org.clustergrants.call.opened"
    topic = Topic.CALL_OPENED
    key_field = "call_id"

    call_id: ApplicationId = Field(examples=["nic-arena-2027"])
    scheme: SchemeId
    level: Literal["arena", "arena-pro", "gce", "nce"] | None = Field(default=None, description="Norway: the level.")
    year: int = Field(strict=True, ge=2000, le=2100, description="The call's year.")
    opened_at: AwareDatetime
    deadline: AwareDatetime = Field(description="Application deadline, in the scheme's time zone (operator-set).")
    announcement_on: date = Field(description="When the selected clusters are announced (operator-set).")
    time_zone: str = Field(examples=["Europe/Oslo"])
    opened_by: OperatorId = Field(description="The operator who opened it (CLUSTERGRANTS_OPERATOR).")


class ClusterEvaluated(ApplicationScoped):
    """The annual evaluation of a funded cluster, recorded by a case handler.

    Norway: "Det foretas årlig evaluering av hvorvidt hver enkelt klynge utvikler seg i tråd med strategi
    og målsetting, og hvorvidt de tilfredsstiller kravene til å være en del av programmet."
    (../shared/seeds/004_353bc3df9124071f.txt). `continues` is both together. A cluster that
    does not continue keeps what was paid for `year` and earlier; the budget releases the slices of later
    budget years, and notify tells the cluster. `application_id` is the application of the grant evaluated
    (the key of its grant events, so the evaluation stays in order with them).
    """

    type = "org.clustergrants.cluster.evaluated"
    topic = Topic.CLUSTER_EVALUATED

    evaluation_id: str = Field(description="'<application_id>/<year>': one evaluation per cluster grant and year.")
    scheme: SchemeId
    programme: str = Field(description="The budget programme of the grant, e.g. 'nic'.")
    beneficiary_id: OrgId = Field(description="The cluster organisation's register identity.", examples=["NO-BRC-972417920"])
    year: int = Field(strict=True, ge=2000, le=2100, description="The year evaluated.")
    in_line_with_strategy: bool = Field(description="The cluster develops in line with its strategy.")
    meets_requirements: bool = Field(description="The cluster still meets the programme's requirements.")
    continues: bool = Field(description="Both of the above: the cluster keeps its funding after `year`.")
    reason: Text
    document_reference: Text | None = None
    decided_by: str = Field(pattern=r"^officer:[A-Za-z0-9._:-]{1,64}$", examples=["officer:k-1042"])
    evaluated_at: AwareDatetime
    recipient: Recipient = Field(description="Whom notify tells (the cluster's contact, from its application).")

    @model_validator(mode="after")
    def _continues_is_both(self) -> ClusterEvaluated:
        if self.continues != (self.in_line_with_strategy and self.meets_requirements):
            raise ValueError("continues must equal in_line_with_strategy and meets_requirements")
        return self


# --- notify ----------------------------------------------------------------------------------


class NotificationSent(Event):
    type = "org.clustergrants.notification.sent"
    topic = Topic.NOTIFICATION_SENT

    notification_id: str
    application_id: str | None = None
    source_event_id: str
    source_event_type: str
    channel: Literal["email", "webhook"]
    recipient_ref: str = Field(
        description="Opaque reference to the recipient: a keyed hash of the address the e-mail went to, or the "
        "webhook's subscription id."
    )
    template: str
    language: Language
    sent_at: AwareDatetime

    def key(self) -> str:
        return self.application_id or self.source_event_id


# --- operator audit trail ------------------------------------------------------------------------

ServiceName = Literal["intake", "eligibility", "budget", "notify"]


class AuditRecorded(Event):
    """An operator command changed a service's state: the audit record, written in the same transaction."""

    type = "org.clustergrants.audit.recorded"
    topic = Topic.AUDIT_RECORDED
    key_field = "service"

    audit_id: UUID = Field(description="Unique id of the audit record: the row in `<service>.audit`.")
    service: ServiceName = Field(description="The service whose state the command changed (its schema holds the row).")
    recorded_at: AwareDatetime = Field(description="When: the database's clock in the transaction of the change.")
    operator: OperatorId = Field(
        description="Who ran the command: CLUSTERGRANTS_OPERATOR, else the operating-system user.", examples=["a.peeters"]
    )
    command: str = Field(description="The command, e.g. 'budget open-year'.", examples=["budget release"])
    arguments: dict[str, JsonValue] = Field(description="Its arguments and options as given (no secrets).")
    outcome: str = Field(description="What happened, e.g. 'requested', 'released', 'closed', 'unchanged'.")
    changes: dict[str, JsonValue] = Field(description="What changed; money as integer minor units with a currency.")

    def subject(self) -> str:
        return str(self.audit_id)


EVENTS: tuple[type[Event], ...] = (
    ApplicationSubmitted,
    ApplicationReceived,
    ApplicationRejected,
    EligibilityDecided,
    GrantCommitted,
    GrantRefused,
    CeilingReset,
    NotificationSent,
    GrantReleased,
    AssessmentSubmitted,
    CallClosed,
    AuditRecorded,
    FindingRecorded,
    CallOpened,
    ClusterEvaluated,
)
EVENTS_BY_TYPE: dict[str, type[Event]] = {e.cloudevents_type(): e for e in EVENTS}
