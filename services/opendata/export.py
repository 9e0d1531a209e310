"""Open data of committed grants: the 360Giving Data Standard (JSON package and CSV) and the EU list
of operations (Regulation (EU) 2021/1060, Article 49(3)).

    grants = await OpenDataRepository(conn).committed()       # the projection (services/opendata/handlers.py)
    config = load_config(os.environ.get("OPENDATA_FILE"))     # operator-set identifiers and names
    write_360giving(grants, config, Path("grants.json"), fmt="json")
    write_360giving(grants, config, Path("grants.csv"), fmt="csv")
    write_eu_operations(grants, config, Path("operations.csv"))

Everything here is pure: `to_360giving`, `threesixtygiving_package`, `threesixtygiving_rows` and
`eu_operation_rows` turn records into dicts and rows; the records come from the open-data read model,
a projection of the events agency systems receive too (ApplicationReceived, GrantCommitted,
GrantReleased), never from another service's tables.

What a grant says (its GrantCommitted, its GrantReleased events and its ApplicationReceived):

- amount: what is committed to the grant now: its schedule minus every release (a withdrawal, a
  reduction, a revocation, a discontinuation, a yearly-maximum cap), which is what the ledger holds;
  a grant with nothing left is not published. Decimal major units with exactly two decimals, never
  a float (money is integer minor units everywhere else).
- award date: the day the ledger committed the grant (UTC).
- planned dates: 1 January of the first and 31 December of the last budget year with money left.
- recipient and location: the applicant organisation, its region and country (ISO 3166-1 alpha-2,
  and the English country name where the format has a name). Members are not published.
- title / description: the application's optional `title` and `summary`; where the portal did not
  send them, a plain description is derived from the instrument, the organisation and the
  programme ("Innovation voucher to MedTech Aachen GmbH"), never invented.
- Personal data stays out: the contact person (name, e-mail) is not even kept by the projection.

Identifiers and names the documents do not give are operator-set in the YAML file named by
OPENDATA_FILE (`opendata.example.yaml` documents every key). An export that needs an unset key is
refused with an `OpenDataError` naming every missing key; nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import string
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import yaml
from babel import Locale
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError, field_validator

from shared.events import Applicant, Application, FundShare, ProposedGrant
from shared.money import MINOR_UNITS

#: The 360Giving Data Standard version the package declares (schemas 1.4.x; the package wants major.minor).
THREESIXTYGIVING_VERSION = "1.4"

#: Fund sources of the ledger that are EU funds under Regulation (EU) 2021/1060, with the name the
#: EU list of operations gives the fund. Only grants with a share of one of these are EU operations.
#: Add a fund here when a programme draws on another CPR fund (CF, ESF+, JTF, EMFAF, ...).
EU_FUNDS: dict[str, str] = {"erdf": "ERDF"}

#: Readable names of the ledger's instruments, for derived titles and descriptions.
INSTRUMENT_LABELS: dict[str, str] = {
    "coordination-subsidy": "Cluster coordination subsidy",
    "hermes-earmark": "Hermes earmark (cluster pact)",
    "innovation-voucher": "Innovation voucher",
    "innovation-fund-grant": "Innovation fund grant",
    "s3-pilot-financing": "S3 pilot financing",
    "cluster-arena": "Cluster support, level Arena",
    "cluster-arena-pro": "Cluster support, level Arena Pro",
    "cluster-gce": "Cluster support, level GCE",
}

#: Where the operator file is named (an environment variable, like BUDGET_POTS_FILE).
ENV_FILE = "OPENDATA_FILE"


class OpenDataError(ValueError):
    """An export that cannot be made as asked (unset operator keys, missing records); nothing written."""

    def __init__(self, message: str, missing_keys: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing_keys = tuple(missing_keys)


# --- the operator file -----------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
OrgId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200, pattern=r"^\S+$")]
OPERATION_CODE_FIELDS = frozenset({"cci", "application_id", "grant_id", "programme", "award_year"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(_Strict):
    id: OrgId | None = Field(default=None, description="Org-id (org-id.guide scheme + register number).")
    name: Name | None = None


class Publisher(_Strict):
    name: Name | None = None
    identifier: OrgId | None = None


class ThreeSixtyGivingSettings(_Strict):
    identifier_prefix: Annotated[str, StringConstraints(pattern=r"^360G-[A-Za-z0-9][A-Za-z0-9._-]*$")] | None = None
    publisher: Publisher = Publisher()
    license: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    #: 360Giving `dataSource`: "A web link pointing to the source of this data" (the agency's page
    #: where the file is published). Optional; every grant carries it when set.
    data_source: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None


class GeoCode(_Strict):
    """A region's code in an established gazetteer (e.g. Eurostat NUTS), for 360Giving's
    `beneficiaryLocation.geoCode` / `geoCodeType`."""

    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    type: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class EuSettings(_Strict):
    cci: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._-]{1,40}$")] | None = None
    operation_code: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @field_validator("operation_code")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = _template_fields(value)
        unknown = fields - OPERATION_CODE_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(OPERATION_CODE_FIELDS)}")
        if not fields & {"application_id", "grant_id"}:
            raise ValueError("must contain {application_id} or {grant_id}: each operation needs its own code")
        return value


class ProgrammeSettings(_Strict):
    title: Name | None = None
    funding_organisation: Organisation = Organisation()
    eu: EuSettings = EuSettings()


class OpenDataConfig(_Strict):
    threesixtygiving: ThreeSixtyGivingSettings = ThreeSixtyGivingSettings()
    recipient_org_id_schemes: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")],
        Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9_]{2,40}$")] | None,
    ] = Field(default_factory=dict)
    programmes: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,119}$")], ProgrammeSettings] = Field(
        default_factory=dict
    )
    #: Per applicant country, the region names applicants give (as written in the application) and
    #: their gazetteer code. A region not listed is published by name only.
    region_codes: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")],
        dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], GeoCode],
    ] = Field(default_factory=dict)

    @field_validator("recipient_org_id_schemes", "region_codes", mode="before")
    @classmethod
    def _quoted_country_codes(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(isinstance(k, bool) for k in value):
            raise ValueError("quote the country codes: YAML reads an unquoted NO as false")
        return value

    _source: str = PrivateAttr(default="(no operator file: OPENDATA_FILE unset)")

    @property
    def source(self) -> str:
        return self._source


def _template_fields(template: str) -> set[str]:
    fields: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"not a valid template: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}}} must be a bare name, without format or conversion")
        fields.add(name)
    return fields


def load_config(path: str | Path | None) -> OpenDataConfig:
    """The operator file (None: nothing set, every export that needs a key refuses). Unknown keys are
    refused; errors name the file and the key."""
    if path is None or str(path) == "":
        return OpenDataConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise OpenDataError(f"{path}: {error}") from None
    try:
        config = OpenDataConfig.model_validate(data or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise OpenDataError(f"{path}: {problems}") from None
    config._source = str(path)
    return config


# --- the records -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommittedGrant:
    """A grant as the exports read it: the committed ProposedGrant, the money it holds now per budget
    year, and what is published of the application it was committed for (no contact person)."""

    grant_id: str
    application_id: str
    scheme: str
    programme: str
    instrument: str
    currency: str
    status: str
    fund_shares: tuple[FundShare, ...]
    amounts: tuple[tuple[int, int], ...]
    """(budget year, minor units) with money left, ascending years; never empty."""
    committed_at: datetime
    updated_at: datetime
    applicant: Applicant
    title: str | None = None
    summary: str | None = None

    @property
    def total_minor(self) -> int:
        return sum(amount for _, amount in self.amounts)

    @classmethod
    def from_proposed(
        cls,
        grant_id: str,
        application: Application,
        proposed: ProposedGrant,
        committed_at: datetime,
        *,
        scheme: str | None = None,
        updated_at: datetime | None = None,
        status: str = "committed",
        amounts: Mapping[int, int] | None = None,
    ) -> CommittedGrant:
        """A record from the committed ProposedGrant (amounts: as committed unless given)."""
        if amounts is None:
            amounts = scheduled_amounts(proposed)
        return cls(
            grant_id=grant_id,
            application_id=application.application_id,
            scheme=scheme or application.scheme,
            programme=proposed.programme,
            instrument=proposed.instrument,
            currency=proposed.currency,
            status=status,
            fund_shares=tuple(proposed.fund_shares),
            amounts=tuple(sorted((y, a) for y, a in amounts.items() if a > 0)),
            committed_at=committed_at,
            updated_at=updated_at or committed_at,
            applicant=application.applicant,
            title=application.title,
            summary=application.summary,
        )


def scheduled_amounts(proposed: ProposedGrant) -> dict[int, int]:
    """Budget year -> minor units of a grant's schedule, as committed."""
    summed: dict[int, int] = {}
    for item in proposed.schedule:
        summed[item.budget_year] = summed.get(item.budget_year, 0) + item.amount.amount_minor
    return summed


# --- figures and words -----------------------------------------------------------------------------------

CENT = Decimal("0.01")


def major_units(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units as a Decimal of major units with exactly two decimals (exact: no rounding)."""
    value = Decimal(amount_minor) / Decimal(MINOR_UNITS[currency])
    exact = value.quantize(CENT)
    if exact != value:  # a currency with more than two decimals would need another rule
        raise ValueError(f"{amount_minor} minor units of {currency} are not a whole number of cents")
    return exact


def percent(share: Fraction) -> Decimal:
    """A share as a percentage with two decimals, half up (2497011/4994022 -> 50.00)."""
    return (Decimal(share.numerator) * 100 / Decimal(share.denominator)).quantize(CENT, rounding=ROUND_HALF_UP)


def country_name(code: str) -> str:
    return str(Locale("en").territories.get(code, code))


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _instrument_label(instrument: str) -> str:
    return INSTRUMENT_LABELS.get(instrument) or instrument.replace("-", " ").capitalize()


def _programme(config: OpenDataConfig, programme: str) -> ProgrammeSettings:
    return config.programmes.get(programme, ProgrammeSettings())


def title_of(grant: CommittedGrant) -> str:
    if grant.title:
        return grant.title
    return f"{_instrument_label(grant.instrument)} to {grant.applicant.organisation_name}"


def description_of(grant: CommittedGrant, config: OpenDataConfig) -> str:
    if grant.summary:
        return grant.summary
    programme = _programme(config, grant.programme).title or grant.programme
    return f"{_instrument_label(grant.instrument)} under {programme} (scheme {grant.scheme})."


def planned_dates(grant: CommittedGrant) -> tuple[date, date]:
    return date(grant.amounts[0][0], 1, 1), date(grant.amounts[-1][0], 12, 31)


def eu_share(grant: CommittedGrant) -> Fraction:
    return sum((Fraction(s.numerator, s.denominator) for s in grant.fund_shares if s.fund in EU_FUNDS), Fraction(0))


def is_eu_operation(grant: CommittedGrant) -> bool:
    return eu_share(grant) > 0


class _Missing:
    """Collects unset operator keys, so one refusal names them all."""

    def __init__(self, config: OpenDataConfig) -> None:
        self.config = config
        self.keys: dict[str, str] = {}

    def need(self, value: str | None, key: str, why: str) -> str:
        if value is None:
            self.keys.setdefault(key, why)
            return ""
        return value

    def check(self, what: str) -> None:
        if self.keys:
            listed = "; ".join(f"{key} ({why})" for key, why in sorted(self.keys.items()))
            raise OpenDataError(
                f"{what} refused: operator key(s) not set in {self.config.source} (the file named by {ENV_FILE}): {listed}",
                missing_keys=sorted(self.keys),
            )


def recipient_org_id(grant: CommittedGrant, config: OpenDataConfig, prefix: str) -> str:
    """The applicant's org-id: the operator's org-id.guide list code for its country plus its register
    number (upper case, without spaces, dots, hyphens, slashes); otherwise an identifier under the
    publisher's 360Giving prefix, as the 360Giving identifier guidance allows."""
    applicant = grant.applicant
    number = re.sub(r"[\s./-]", "", applicant.organisation_number or "").upper()
    scheme = config.recipient_org_id_schemes.get(applicant.country)
    if scheme and number:
        return f"{scheme}-{number}"
    if number:
        return f"{prefix}-org-{applicant.country}-{number}"
    return f"{prefix}-app-{grant.application_id}"


# --- 360Giving ---------------------------------------------------------------------------------------------


def _grant_360(grant: CommittedGrant, config: OpenDataConfig, missing: _Missing) -> dict[str, Any]:
    settings = _programme(config, grant.programme)
    base = f"programmes.{grant.programme}"
    prefix = missing.need(
        config.threesixtygiving.identifier_prefix,
        "threesixtygiving.identifier_prefix",
        "360Giving prefix of every grant identifier",
    )
    funder_id = missing.need(
        settings.funding_organisation.id,
        f"{base}.funding_organisation.id",
        f"Funding Org:Identifier of programme {grant.programme}",
    )
    funder_name = missing.need(
        settings.funding_organisation.name,
        f"{base}.funding_organisation.name",
        f"Funding Org:Name of programme {grant.programme}",
    )
    applicant = grant.applicant
    start, end = planned_dates(grant)
    recipient: dict[str, Any] = {
        "id": recipient_org_id(grant, config, prefix),
        "name": applicant.organisation_name,
    }
    if applicant.region:
        recipient["addressRegion"] = applicant.region
    recipient["addressCountry"] = country_name(applicant.country)
    programme: dict[str, Any] = {"code": grant.programme}
    if settings.title:
        programme["title"] = settings.title
    location: dict[str, Any] = {"name": applicant.region or country_name(applicant.country), "countryCode": applicant.country}
    geo = config.region_codes.get(applicant.country, {}).get(applicant.region) if applicant.region else None
    if geo is not None:
        location["geoCode"] = geo.code
        location["geoCodeType"] = geo.type
    item = {
        "id": f"{prefix}-{grant.application_id}",
        "title": title_of(grant),
        "description": description_of(grant, config),
        "currency": grant.currency,
        "amountAwarded": major_units(grant.total_minor, grant.currency),
        "awardDate": _utc(grant.committed_at).date().isoformat(),
        "plannedDates": [{"startDate": start.isoformat(), "endDate": end.isoformat()}],
        "recipientOrganization": [recipient],
        "beneficiaryLocation": [location],
        "fundingOrganization": [{"id": funder_id, "name": funder_name}],
        "grantProgramme": [programme],
        "dateModified": _utc(grant.updated_at).isoformat(timespec="seconds"),
    }
    if config.threesixtygiving.data_source:
        item["dataSource"] = config.threesixtygiving.data_source
    return item


def to_360giving(grants: Iterable[CommittedGrant], config: OpenDataConfig) -> list[dict[str, Any]]:
    """360Giving grant objects (schema 1.4.3), amounts as Decimal; refuses naming every unset key."""
    missing = _Missing(config)
    result = [_grant_360(g, config, missing) for g in grants]
    missing.check("360Giving export")
    return result


def threesixtygiving_package(
    grants: Iterable[CommittedGrant], config: OpenDataConfig, *, issued: datetime | None = None
) -> dict[str, Any]:
    """The 360Giving package (the JSON form): metadata plus the grants. A package needs one grant."""
    missing = _Missing(config)
    settings = config.threesixtygiving
    license_url = missing.need(settings.license, "threesixtygiving.license", "licence URL of the published data")
    publisher_name = missing.need(
        settings.publisher.name, "threesixtygiving.publisher.name", "name of the publishing organisation"
    )
    items = [_grant_360(g, config, missing) for g in grants]
    missing.check("360Giving export")
    if not items:
        raise OpenDataError("360Giving export refused: no committed grant to publish (a package needs at least one)")
    publisher: dict[str, Any] = {"name": publisher_name}
    if settings.publisher.identifier:
        publisher["identifier"] = settings.publisher.identifier
    return {
        "version": THREESIXTYGIVING_VERSION,
        "issued": _utc(issued or datetime.now(UTC)).isoformat(timespec="seconds"),
        "publisher": publisher,
        "license": license_url,
        "grants": items,
    }


#: The CSV form: the standard's flattened column titles (parent title ':' field title, as the
#: 360Giving templates and flatten-tool write them) and where each value sits in a grant object.
#: tests/unit/test_opendata.py derives every heading from the published schema's titles.
THREESIXTYGIVING_COLUMNS: tuple[tuple[str, tuple[str | int, ...]], ...] = (
    ("Identifier", ("id",)),
    ("Title", ("title",)),
    ("Description", ("description",)),
    ("Currency", ("currency",)),
    ("Amount Awarded", ("amountAwarded",)),
    ("Award Date", ("awardDate",)),
    ("Planned Dates:Start Date", ("plannedDates", 0, "startDate")),
    ("Planned Dates:End Date", ("plannedDates", 0, "endDate")),
    ("Recipient Org:Identifier", ("recipientOrganization", 0, "id")),
    ("Recipient Org:Name", ("recipientOrganization", 0, "name")),
    ("Recipient Org:County", ("recipientOrganization", 0, "addressRegion")),
    ("Recipient Org:Country", ("recipientOrganization", 0, "addressCountry")),
    ("Beneficiary Location:Name", ("beneficiaryLocation", 0, "name")),
    ("Beneficiary Location:Country Code", ("beneficiaryLocation", 0, "countryCode")),
    ("Beneficiary Location:Geographic Code", ("beneficiaryLocation", 0, "geoCode")),
    ("Beneficiary Location:Geographic Code Type", ("beneficiaryLocation", 0, "geoCodeType")),
    ("Funding Org:Identifier", ("fundingOrganization", 0, "id")),
    ("Funding Org:Name", ("fundingOrganization", 0, "name")),
    ("Grant Programme:Code", ("grantProgramme", 0, "code")),
    ("Grant Programme:Title", ("grantProgramme", 0, "title")),
    ("Last Modified", ("dateModified",)),
    ("Data Source", ("dataSource",)),
)


def _at(value: Any, path: Sequence[str | int]) -> Any:
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("a float in an export")
    return str(value)


def threesixtygiving_rows(grant_objects: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """The CSV form of 360Giving grant objects: the header row, then one row per grant."""
    rows = [[heading for heading, _ in THREESIXTYGIVING_COLUMNS]]
    rows += [[_cell(_at(g, path)) for _, path in THREESIXTYGIVING_COLUMNS] for g in grant_objects]
    return rows


# --- the EU list of operations (CPR 2021/1060 Article 49(3)) -------------------------------------------------

EU_OPERATION_COLUMNS: tuple[str, ...] = (
    "Operation code",  # unique code of the operation (operator scheme)
    "Beneficiary name",  # (a) legal entity's name
    "Operation name",  # (d)
    "Operation purpose",  # (e)
    "Start date",  # (f)
    "End date",  # (g) expected date of completion
    "Total cost",  # (h)
    "Currency",
    "Fund",  # (i)
    "Union co-financing rate (%)",  # (k)
    "Location",  # (l) location indicator
    "Country code",  # (l) the country concerned, ISO 3166-1 alpha-2
    "Country",
)


def eu_operation_rows(grants: Iterable[CommittedGrant], config: OpenDataConfig) -> list[list[str]]:
    """The header row, then one row per grant with an EU fund share (others are not EU operations)."""
    missing = _Missing(config)
    rows = [list(EU_OPERATION_COLUMNS)]
    for grant in grants:
        if not is_eu_operation(grant):
            continue
        eu = _programme(config, grant.programme).eu
        base = f"programmes.{grant.programme}.eu"
        template = missing.need(
            eu.operation_code, f"{base}.operation_code", f"operation code scheme of programme {grant.programme}"
        )
        code = ""
        if template:
            fields = _template_fields(template)
            cci = eu.cci
            if "cci" in fields:
                cci = missing.need(eu.cci, f"{base}.cci", f"CCI code used by {base}.operation_code")
            code = template.format(
                **{
                    k: v
                    for k, v in {
                        "cci": cci or "",
                        "application_id": grant.application_id,
                        "grant_id": grant.grant_id,
                        "programme": grant.programme,
                        "award_year": str(_utc(grant.committed_at).year),
                    }.items()
                    if k in fields
                }
            )
        applicant = grant.applicant
        start, end = planned_dates(grant)
        funds = sorted({EU_FUNDS[s.fund] for s in grant.fund_shares if s.fund in EU_FUNDS})
        rows.append(
            [
                code,
                applicant.organisation_name,
                title_of(grant),
                description_of(grant, config),
                start.isoformat(),
                end.isoformat(),
                _cell(major_units(grant.total_minor, grant.currency)),
                grant.currency,
                "; ".join(funds),
                _cell(percent(eu_share(grant))),
                applicant.region or country_name(applicant.country),
                applicant.country,
                country_name(applicant.country),
            ]
        )
    missing.check("EU list of operations")
    codes = [row[0] for row in rows[1:]]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise OpenDataError(f"EU list of operations refused: operation codes not unique: {', '.join(duplicates[:10])}")
    return rows


# --- writing -----------------------------------------------------------------------------------------------


def dumps_json(value: Any, indent: int = 2) -> str:
    """JSON with Decimal amounts written as exact numbers (5000.00); a float is refused."""

    def encode(item: Any, level: int) -> str:
        inner, outer = " " * (indent * (level + 1)), " " * (indent * level)
        if isinstance(item, Mapping):
            if not item:
                return "{}"
            members = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {encode(v, level + 1)}" for k, v in item.items()]
            return "{\n" + ",\n".join(members) + f"\n{outer}}}"
        if isinstance(item, list | tuple):
            if not item:
                return "[]"
            return "[\n" + ",\n".join(f"{inner}{encode(v, level + 1)}" for v in item) + f"\n{outer}]"
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise ValueError("a non-finite number in an export")
            return format(item, "f")
        if isinstance(item, float):
            raise TypeError("a float in an export: amounts are Decimal")
        if item is None or isinstance(item, bool | int | str):
            return json.dumps(item, ensure_ascii=False)
        raise TypeError(f"cannot write {type(item).__name__} as JSON")

    return encode(value, 0) + "\n"


def dumps_csv(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _write(text: str, output: Path | TextIO) -> None:
    """To a stream, or to a file replaced at once (a refused or failed export leaves no partial file)."""
    if not isinstance(output, Path):
        output.write(text)
        output.flush()
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_360giving(
    grants: Sequence[CommittedGrant],
    config: OpenDataConfig,
    output: Path | TextIO,
    *,
    fmt: Literal["json", "csv"] = "json",
    issued: datetime | None = None,
) -> int:
    """Write the 360Giving JSON package or CSV; returns the number of grants written."""
    if fmt == "json":
        package = threesixtygiving_package(grants, config, issued=issued)
        _write(dumps_json(package), output)
        return len(package["grants"])
    if fmt == "csv":
        rows = threesixtygiving_rows(to_360giving(grants, config))
        _write(dumps_csv(rows), output)
        return len(rows) - 1
    raise ValueError(f"unknown format {fmt!r}: json or csv")


def write_eu_operations(grants: Sequence[CommittedGrant], config: OpenDataConfig, output: Path | TextIO) -> int:
    """Write the EU list of operations (CSV); returns the number of operations written."""
    rows = eu_operation_rows(grants, config)
    _write(dumps_csv(rows), output)
    return len(rows) - 1
